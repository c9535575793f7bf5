"""Per-kind `setup` (shell lines run before the worker) and `python` (interpreter or wrapper
command) of SLURM jobs: validated with located errors, resolved per kind, and carried into
the jobs on a real local cluster (skipped without STUDYSPEC_SLURM_DIR, see tests/test_slurm.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from studyspec.errors import UserError
from studyspec.executors.slurm import overrides as _overrides, settings as _settings
from studyspec.load import load, loads
from studyspec.plan import build
from test_e2e import SPEC


def test_setup_and_python_resolve_per_kind_and_from_the_command_line():
    text = SPEC + ("launch:\n  executor: slurm\n  slurm:\n    setup: ['module load cuda/12.4']\n"
                   "    python: apptainer exec --nv img.sif python\n"
                   "    train: {setup: ['export NCCL_DEBUG=WARN']}\n    path: {python: /opt/env/bin/python}\n")
    launch = loads(text).study.launch.slurm
    train, path = _settings.settings(launch, "train"), _settings.settings(launch, "path")
    assert train["setup"] == ["module load cuda/12.4", "export NCCL_DEBUG=WARN"]
    assert train["python"] == "apptainer exec --nv img.sif python"
    assert path["setup"] == ["module load cuda/12.4"] and path["python"] == "/opt/env/bin/python"
    assert _settings.settings(loads(SPEC).study.launch.slurm, "train")["setup"] == []
    # the command line: setup lines add up (common, then per kind), python replaces
    common, kind = _overrides.overrides({}, ["setup=source /opt/env/bin/activate", "train.setup=export A=1=2",
                                        "path.python=python3 -X utf8", "setup=true"])
    t = _settings.settings(launch, "train", common, kind["train"])
    assert t["setup"] == ["module load cuda/12.4", "export NCCL_DEBUG=WARN", "source /opt/env/bin/activate",
                          "true", "export A=1=2"]
    assert t["python"] == "apptainer exec --nv img.sif python"
    assert _settings.settings(launch, "path", common, kind["path"])["python"] == "python3 -X utf8"


@pytest.mark.parametrize("value, message", [
    ("['if true; then']", r"launch.slurm.train.setup\[0\]: 'if true; then' is not a complete shell command \(bash -n: syntax error: unexpected end of file\)"),
    ("['echo \"unclosed']", r"launch.slurm.train.setup\[0\]: .* is not a complete shell command"),
    ("['module load x', '  ']", r"launch.slurm.train.setup\[1\]: an empty setup line"),
    ("module load x", r"launch.slurm.train.setup: Input should be a valid list"),
])
def test_bad_setup_lines_are_located_errors(value, message):
    with pytest.raises(UserError) as e:
        loads(SPEC + f"launch:\n  slurm:\n    train:\n      setup: {value}\n")
    assert re.search(r"<spec>:\d+:\d+: " + message, str(e.value)), str(e.value)


def test_bad_python_commands_are_located_errors():
    with pytest.raises(UserError) as e:
        loads(SPEC + "launch:\n  slurm: {python: \"apptainer exec 'img.sif python\"}\n")
    assert re.search(r"<spec>:\d+:\d+: launch.slurm.python: .* is not a command line \(No closing quotation\)",
                     str(e.value)), str(e.value)
    with pytest.raises(UserError) as e:
        loads(SPEC + "launch:\n  slurm: {path: {python: ' '}}\n")
    assert re.search(r"<spec>:\d+:\d+: launch.slurm.path.python: an empty python command", str(e.value))
    with pytest.raises(UserError) as e:  # the command line: located at the setting
        _overrides.overrides({}, ["train.python=env 'A=1"])
    assert "command line" in str(e.value) and "launch setting train.python" in str(e.value)
    with pytest.raises(UserError) as e:
        _overrides.overrides({}, ["setup=for x in"])
    assert "launch setting setup.0" in str(e.value) and "not a complete shell command" in str(e.value)


# --- on a real cluster ---------------------------------------------------------------------

SLURM_DIR = os.environ.get("STUDYSPEC_SLURM_DIR")
needs_cluster = pytest.mark.skipif(not SLURM_DIR, reason="STUDYSPEC_SLURM_DIR is not set: start a cluster with "
                                   "bash studyspec/local_slurm/start.sh DIR and set STUDYSPEC_SLURM_DIR=DIR")

STUDY = """\
study: setup_probe
data: {dataset: digits, batch_size: 64}
model: {arch: mlp, hidden: [8]}
train: {steps: 4, eval_every: 2}
runs:
  dense: {regime: dense}
paths:
  init_to_final: {kind: linear, from: dense.init, to: dense.final, points: 3}
launch:
  executor: slurm
  slurm:
    time: 10
    setup: ['export STUDYSPEC_PROBE_SETUP="from the spec"', 'cd "$STUDYSPEC_PROBE_DIR"']
    path: {python: WRAPPER}
"""
WRAPPER = """\
#!/bin/bash
# stands for a container runtime: `WRAPPER PYTHON ARGS...` runs PYTHON ARGS... inside it
export STUDYSPEC_PROBE_WRAPPER="ran through $(basename "$0")"
echo "$(basename "$0"): $*" >> "$STUDYSPEC_PROBE_DIR/wrapper.log"
exec "$@"
"""


@needs_cluster
def test_setup_lines_and_a_python_wrapper_reach_the_jobs_on_a_real_cluster(tmp_path):
    """The spec's setup lines run in every job (the variable they export is in the job's
    environment record), the command line adds a line for training jobs only, and path jobs
    run through a wrapper script given as their python command."""
    conf = re.search(r"""export\s+SLURM_CONF=["']?([^"'\s]+)""", (Path(SLURM_DIR) / "env.sh").read_text()).group(1)
    wrapper = tmp_path / "wrap.sh"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    spec = tmp_path / "spec.yaml"
    spec.write_text(STUDY.replace("WRAPPER", f"{wrapper} {sys.executable}"))
    env = dict(os.environ, SLURM_CONF=conf, STUDYSPEC_PROBE_DIR=str(tmp_path), COLUMNS="200")
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "studyspec", "run", str(spec), "--store", str(store),
                           "--out", str(tmp_path / "r.nc"), "--slurm", "train.setup=export STUDYSPEC_PROBE_CLI=1"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = build(load(spec).study)
    records = {plan.jobs[j].kind: json.loads((store / j / "environment.json").read_text()) for j in plan.jobs}
    train, path = records["train"]["env"], records["path"]["env"]
    assert records["train"]["slurm"]["job_id"] and records["path"]["slurm"]["job_id"]
    assert train["STUDYSPEC_PROBE_SETUP"] == path["STUDYSPEC_PROBE_SETUP"] == "from the spec"
    assert train["STUDYSPEC_PROBE_CLI"] == "1" and "STUDYSPEC_PROBE_CLI" not in path
    assert path["STUDYSPEC_PROBE_WRAPPER"] == "ran through wrap.sh" and "STUDYSPEC_PROBE_WRAPPER" not in train
    assert (tmp_path / "wrapper.log").read_text().count("wrap.sh: ") == 1
    assert records["path"]["executable"] == records["train"]["executable"]
