"""Each job records the environment it ran under; collect summarises it and flags a study
whose jobs ran under different package versions. Real jobs (a few steps on digits); the
second job runs with one more installed distribution (a tiny package built and installed
here with pip, offline) on its PYTHONPATH, as a job of a study resumed in another
environment would."""

import json
import os
import subprocess
import sys

import xarray as xr
from rich.console import Console

from studyspec.collect import collect
from studyspec.executors.local import run_local
from studyspec.load import loads
from studyspec.plan import build
from studyspec.store import Store

SPEC = """\
study: env
data: {dataset: digits, batch_size: 128}
model: {arch: mlp, hidden: [8]}
train: {steps: 4, eval_every: 2}
sweep: {seed: [0]}
runs:
  dense: {regime: dense}
"""


def _probe_package(tmp_path) -> str:
    """Build and install (pip, no index, no build isolation) a distribution `studyspec-probe` 0.1
    into a folder of its own; the folder."""
    src = tmp_path / "probe"
    (src / "studyspec_probe").mkdir(parents=True)
    (src / "studyspec_probe" / "__init__.py").write_text("")
    (src / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                        'build-backend = "setuptools.build_meta"\n'
                                        '[project]\nname = "studyspec-probe"\nversion = "0.1"\n')
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(src)], check=True,
                   capture_output=True)
    return str(target)


def _run(text, root):
    loaded = loads(text)
    plan = build(loaded.study)
    assert run_local(plan, Store(root), workers=2, console=Console(quiet=True)).ok
    return plan


def test_jobs_record_their_environment_and_collect_flags_mixed_versions(tmp_path, monkeypatch):
    import torch

    root = tmp_path / "store"
    one = _run(SPEC, root)
    (job_a,) = one.jobs
    store = Store(root)
    rec = json.loads((store.run_dir(job_a) / "environment.json").read_text())
    assert rec["python"] == ".".join(map(str, sys.version_info[:3]))
    assert rec["torch"]["version"] == torch.__version__ and rec["packages"]["torch"] == torch.__version__.split("+")[0]
    assert rec["packages"]["xarray"] == xr.__version__ and rec["host"] and rec["slurm"] == {}
    assert rec["env"]["STUDYSPEC_THREADS"] == "1"  # set by the local executor for its workers
    shard = store.read_shard(job_a)
    assert shard["versions"] == {"python": rec["python"], "torch": torch.__version__,
                                 "packages": rec["packages_hash"],
                                 **({"cuda": rec["torch"]["cuda"]} if rec["torch"]["cuda"] else {}),
                                 **({"cudnn": str(rec["torch"]["cudnn"])} if rec["torch"].get("cudnn") else {})}
    ds = collect(one, store)
    assert ds.attrs["environment_mixed"] == 0 and ds.attrs["environment_differences"] == ""
    assert ds.attrs["torch_version"] == torch.__version__
    assert ds.attrs["environment_packages"] == f"{rec['packages_hash']} (1 job)"

    # the second seed runs with one more package installed: same torch, another package set
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [_probe_package(tmp_path),
                                                                   os.environ.get("PYTHONPATH")])))
    two = _run(SPEC.replace("seed: [0]", "seed: [0, 1]"), root)
    (job_b,) = set(two.jobs) - {job_a}
    rec_b = json.loads((store.run_dir(job_b) / "environment.json").read_text())
    assert rec_b["packages"]["studyspec-probe"] == "0.1" and "studyspec-probe" not in rec["packages"]
    assert rec_b["packages_hash"] != rec["packages_hash"]
    ds = collect(two, store)
    assert ds.attrs["environment_mixed"] == 1
    assert ds.attrs["environment_differences"] == "studyspec-probe: 0.1 (1 job), absent (1 job)"
    assert ds.attrs["torch_version"] == torch.__version__  # the same torch: not listed twice
    assert sorted(ds.attrs["environment_packages"].split("; ")) == sorted(
        [f"{rec['packages_hash']} (1 job)", f"{rec_b['packages_hash']} (1 job)"])
