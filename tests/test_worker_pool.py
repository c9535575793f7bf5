"""Long-lived local workers (runners.worker.serve, studyspec/executors/local.py): each job
runs in a child forked from a worker that imported torch once. Real jobs, tiny trainings:
results bit-identical to a fresh process per job, a killed job or one that runs out of
memory (an rlimit keeps this machine safe) fails alone, the worker is replaced."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import torch
from rich.console import Console

from studyspec.executors.local import run_local
from studyspec.load import loads
from studyspec.plan import build
from studyspec.store import Store

SPEC = """\
study: pool
data: {dataset: digits, batch_size: 64}
model: {arch: mlp, hidden: [32]}
train: {steps: 40, eval_every: 20}
sparsity: 0.9
sweep: {seed: [0, 1]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.5, every: 5}}
  scratch: {regime: fixed_mask, mask: prune.final, init: fresh}
"""


def launch(text, root, **kw):
    plan = build(loads(text).study)
    return plan, run_local(plan, Store(root), workers=2, console=Console(quiet=True), **kw)


def numbers(root: Path, jid: str) -> dict:
    shard = json.loads((root / jid / "shard.json").read_text())
    return {k: shard[k] for k in ("coord", "vars", "scalars")}


def test_pool_results_bit_identical_to_fresh_processes(tmp_path):
    text = SPEC.replace("seed: [0, 1]", "seed: [0]")
    plan, fresh = launch(text, tmp_path / "fresh", jobs_per_worker=0)
    _, pooled = launch(text, tmp_path / "pool", jobs_per_worker=1)  # a worker replaced after each job
    assert fresh.ok and pooled.ok and len(pooled.started) == len(plan.jobs) == 2
    for jid in plan.jobs:
        assert numbers(tmp_path / "fresh", jid) == numbers(tmp_path / "pool", jid)
        a = torch.load(tmp_path / "fresh" / jid / "final.pt", weights_only=True)
        b = torch.load(tmp_path / "pool" / jid / "final.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)
        log = (tmp_path / "pool" / jid / "log.txt").read_text()  # each job its own log, one thread
        assert f"job {jid} (train) starting" in log and "1 thread(s)" in log and log.count("starting") == 1


def _children(store: Path) -> list[int]:
    """pids of forked job children of this store's workers (a child's parent is a worker)."""
    serving = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if b"--serve" in cmd and str(store).encode() in cmd:
            serving[int(proc.name)] = ppid
    return [pid for pid, ppid in serving.items() if ppid in serving]


def test_killed_job_fails_alone_and_its_worker_is_replaced(tmp_path):
    store = tmp_path / "store"
    plan = build(loads(SPEC).study)
    prune0 = next(c.job for c in plan.cells if c.name == "prune" and c.index["seed"] == 0)
    killed = []

    def kill_prune0():
        deadline = time.time() + 300
        log = store / prune0 / "log.txt"
        while time.time() < deadline and not killed:
            for pid in _children(store):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/1")  # a job child's stdout is its log
                except OSError:
                    continue
                if target == str(log) and "starting" in log.read_text():
                    os.kill(pid, signal.SIGKILL)  # as the OOM killer would
                    killed.append(pid)
                    break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_prune0)
    killer.start()
    _, out = launch(SPEC, store, jobs_per_worker=5)
    killer.join()
    assert killed, "no job child was seen"
    # the killed job failed (its dependant scratch not started); the other seed's jobs ran
    assert list(out.failed) == [prune0] and list(out.blocked) == [
        next(c.job for c in plan.cells if c.name == "scratch" and c.index["seed"] == 0)]
    assert len(out.started) == 2
    assert not _children(store)
    again = run_local(plan, Store(store), workers=2, console=Console(quiet=True))  # a relaunch runs the rest
    assert again.ok and set(again.started) == set(out.failed) | set(out.blocked)


def test_job_out_of_memory_fails_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDYSPEC_JOB_MEMORY_MB", "512")  # the child's address space: + 512 MiB at most
    text = SPEC.replace("sweep: {seed: [0, 1]}", "sweep: {model.hidden: [[16], [30000, 30000]]}")
    text = text.replace("  scratch: {regime: fixed_mask, mask: prune.final, init: fresh}\n", "")
    plan, out = launch(text, tmp_path / "store")
    big = next(c.job for c in plan.cells if c.index["hidden"] == 1)
    small = next(c.job for c in plan.cells if c.index["hidden"] == 0)
    assert list(out.failed) == [big] and out.started == [small]
    log = (tmp_path / "store" / big / "log.txt").read_text()
    assert "memory" in log.lower()  # torch: "DefaultCPUAllocator: can't allocate memory"
