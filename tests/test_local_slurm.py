"""Checks against a real SLURM cluster started by studyspec/local_slurm/start.sh.

Run them with the cluster up:

    studyspec/local_slurm/start.sh /tmp/studyspec-slurm
    STUDYSPEC_SLURM_DIR=/tmp/studyspec-slurm pytest tests/test_local_slurm.py

Without STUDYSPEC_SLURM_DIR the tests are skipped. SLURM_CONF is read from
$STUDYSPEC_SLURM_DIR/env.sh (falling back to SLURM_CONF in the environment).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SLURM_DIR = os.environ.get("STUDYSPEC_SLURM_DIR")

pytestmark = pytest.mark.skipif(
    not SLURM_DIR,
    reason="STUDYSPEC_SLURM_DIR is not set: start a cluster with "
    "studyspec/local_slurm/start.sh DIR and set STUDYSPEC_SLURM_DIR=DIR",
)

WAIT_S = 40.0
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE")


def _slurm_conf() -> str:
    env_sh = Path(SLURM_DIR or "") / "env.sh"
    if env_sh.is_file():
        m = re.search(r"""^\s*export\s+SLURM_CONF=["']?([^"'\s]+)""", env_sh.read_text(), re.M)
        if m:
            return m.group(1)
    conf = os.environ.get("SLURM_CONF")
    if conf:
        return conf
    pytest.fail(f"no SLURM_CONF in {env_sh} nor in the environment")


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    if shutil.which("sbatch") is None:
        pytest.fail("STUDYSPEC_SLURM_DIR is set but sbatch is not on PATH")
    env = dict(os.environ, SLURM_CONF=_slurm_conf())
    ping = subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=30)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        pytest.fail(f"cluster in {SLURM_DIR} is not up (scontrol ping: {ping.stdout}{ping.stderr}); run start.sh")
    return env


def _run(env: dict[str, str], *args: str) -> str:
    res = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"{' '.join(args)} failed: {res.stderr}"
    return res.stdout


def _sbatch(env: dict[str, str], workdir: Path, *opts: str, wrap: str) -> str:
    out = _run(env, "sbatch", "--parsable", f"--chdir={workdir}", "--output=slurm-%j.out", *opts, "--wrap", wrap)
    return out.strip().split(";")[0]


def _sacct(env: dict[str, str], job_ids: list[str]) -> dict[str, tuple[str, str]]:
    out = _run(env, "sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode")
    rows = {}
    for line in out.splitlines():
        if line.strip():
            jid, state, code = line.split("|")
            rows[jid] = (state.split()[0], code)  # "CANCELLED by 0" -> "CANCELLED"
    return rows


def _wait_terminal(env: dict[str, str], job_ids: list[str], expected: set[str]) -> dict[str, tuple[str, str]]:
    """Polls sacct until every row in `expected` is in a terminal state."""
    deadline = time.monotonic() + WAIT_S
    rows: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        rows = _sacct(env, job_ids)
        if expected <= rows.keys() and all(rows[j][0] in TERMINAL for j in expected):
            return rows
        time.sleep(0.5)
    subprocess.run(["scancel", *job_ids], env=env, capture_output=True)
    pytest.fail(f"jobs {sorted(expected)} not finished after {WAIT_S:.0f}s; sacct: {rows}")


def test_array_tasks_complete_and_share_the_node(slurm_env: dict[str, str], tmp_path: Path) -> None:
    # CPUs of the partition, over its nodes (one, or several virtual nodes: STUDYSPEC_SLURM_NODES)
    nodes = dict(line.split() for line in _run(slurm_env, "sinfo", "-h", "-N", "-p", "debug", "-o", "%N %c").splitlines())
    ncpu = sum(int(c) for c in nodes.values())
    wrap = 'echo "$SLURM_ARRAY_TASK_ID $(date +%s.%N)" > start_$SLURM_ARRAY_TASK_ID; sleep 2; date +%s.%N > end_$SLURM_ARRAY_TASK_ID'
    job = _sbatch(slurm_env, tmp_path, "--array=0-3", "--cpus-per-task=1", "--mem=500M", wrap=wrap)
    tasks = {f"{job}_{i}" for i in range(4)}
    rows = _wait_terminal(slurm_env, [job], tasks)
    assert {t: rows[t] for t in tasks} == {t: ("COMPLETED", "0:0") for t in tasks}

    spans = []
    for i in range(4):
        tid, start = (tmp_path / f"start_{i}").read_text().split()
        assert tid == str(i)
        spans.append((float(start), float((tmp_path / f"end_{i}").read_text())))
    # Most tasks running at the same moment: one per CPU (1 CPU, 500M each).
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert most == min(ncpu, 4), f"expected {min(ncpu, 4)} tasks at once on {ncpu} CPUs, saw {most}: {spans}"


def test_failing_head_cancels_its_dependants(slurm_env: dict[str, str], tmp_path: Path) -> None:
    dep = ("--kill-on-invalid-dep=yes",)
    head = _sbatch(slurm_env, tmp_path, wrap="exit 3")
    child = _sbatch(slurm_env, tmp_path, f"--dependency=afterok:{head}", *dep, wrap="touch child_ran")
    grandchild = _sbatch(slurm_env, tmp_path, f"--dependency=afterok:{child}", *dep, wrap="touch grandchild_ran")
    ok_head = _sbatch(slurm_env, tmp_path, wrap="true")
    ok_child = _sbatch(slurm_env, tmp_path, f"--dependency=afterok:{ok_head}", *dep, wrap="touch ok_child_ran")

    ids = [head, child, grandchild, ok_head, ok_child]
    rows = _wait_terminal(slurm_env, ids, set(ids))
    assert rows[head] == ("FAILED", "3:0")
    assert rows[child][0] == "CANCELLED"
    assert rows[grandchild][0] == "CANCELLED"
    assert rows[ok_head] == ("COMPLETED", "0:0")
    assert rows[ok_child] == ("COMPLETED", "0:0")
    assert not (tmp_path / "child_ran").exists()
    assert not (tmp_path / "grandchild_ran").exists()
    assert (tmp_path / "ok_child_ran").exists()
