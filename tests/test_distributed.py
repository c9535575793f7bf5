"""Data-parallel training (runners/distributed.py) without SLURM: two worker processes
on this machine, joined with the gloo backend through the environment variables a
SLURM task of a two-task job step gets, train one model and must end where one
process does (to float rounding), with the same masks, and only rank 0 writes files.
The same on a real two-node cluster: tests/test_slurm.py::test_two_node_ddp_job_*."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from studyspec.load import loads
from studyspec.plan import build
from studyspec.store import Store

SPEC = """\
study: ddp
data: {dataset: mnist1d, batch_size: 256}
model: {arch: mlp, hidden: [300, 100]}
train: {steps: 60, eval_every: 20, checkpoint_every: 20,
        optimizer: {name: sgd, lr: 0.05, momentum: 0.9}, schedule: {name: cosine}}
sparsity: 0.9
runs:
"""
RUNS = {
    "prune": "  prune: {regime: prune, schedule: {begin: 0.1, end: 0.5, every: 10}}\n",
    # RigL grows by gradient: every rank must decide from the all-reduced one
    "rigl": "  rigl: {regime: rigl, mask: random, every: 10, drop_fraction: 0.3}\n",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WORLD_SIZE", "RANK", "MASTER_"))}
    return dict(env, OMP_NUM_THREADS="1", STUDYSPEC_THREADS="1", **extra)


def run_ranks(run_dir: Path, n: int = 2, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """The worker as n tasks of one SLURM job step (what srun starts), on this machine."""
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "runners.worker", str(run_dir)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=worker_env(SLURM_NTASKS=str(n), SLURM_STEP_NUM_TASKS=str(n), SLURM_PROCID=str(r),
                                             SLURM_LOCALID=str(r), SLURMD_NODENAME=f"n{r + 1}",
                                             MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(n)]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout))
    return out


def prepare(spec: str, root: Path) -> Path:
    (job,) = build(loads(spec).study).jobs.values()
    return Store(root).prepare(job)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow  # 15-20 s each on 2 CPUs (three or five worker starts)
@pytest.mark.parametrize("regime", ["prune", "rigl"])
def test_two_processes_train_like_one(regime, tmp_path):
    spec = SPEC + RUNS[regime]
    one, two = prepare(spec, tmp_path / "one"), prepare(spec, tmp_path / "two")
    assert one.name == two.name  # one job: launch settings are not part of its id
    single = subprocess.run([sys.executable, "-m", "runners.worker", str(one)], cwd=ROOT, env=worker_env(),
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stdout + single.stderr

    if regime == "prune":
        # first attempt: fails when rank 0 writes final.pt (a directory is in the way), after the
        # resume checkpoint of step 40; rank 1 must not hang in the end-of-job barrier
        (two / "final.pt" / "blocker").mkdir(parents=True)
        first = run_ranks(two)
        assert [p.returncode != 0 for p in first] == [True, True], [p.stdout for p in first]
        assert "IsADirectoryError" in first[0].stdout and (two / "resume.pt").exists()
        assert not (two / "shard.json").exists()
        (two / "final.pt" / "blocker").rmdir()
        (two / "final.pt").rmdir()
    ranks = run_ranks(two)
    for r, p in enumerate(ranks):
        assert p.returncode == 0, p.stdout
        assert f"(node n{r + 1}), rank {r} of 2" in p.stdout, p.stdout
        if regime == "prune":  # every rank resumed from the checkpoint rank 0 wrote
            assert "resuming from step 40 of 60" in p.stdout, p.stdout

    # the same model as one process, to float rounding; the same masks exactly
    a, b = load(one / "final.pt"), load(two / "final.pt")
    assert a.keys() == b.keys()
    for k in a:  # measured: at most 6e-8 apart (weights of size ~0.3)
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-5), (k, (a[k] - b[k]).abs().max())
    ma, mb = load(one / "mask.pt"), load(two / "mask.pt")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    for k, m in mb.items():  # pruned weights are exactly zero, and the sparsity is the target
        assert (b[k][~m] == 0).all()
        assert abs(1 - m.float().mean().item() - 0.9) < 0.01

    # rank 0 alone wrote the files: one shard, no temporary files, no resume checkpoint left
    sa, sb = json.loads((one / "shard.json").read_text()), json.loads((two / "shard.json").read_text())
    assert sb["tasks"] == 2 and sa["coord"] == sb["coord"] == [0, 20, 40, 60]
    if regime == "rigl":
        assert sa["scalars"]["mask_updates"] == sb["scalars"]["mask_updates"] == 4  # at steps 10, 20, 30, 40
    for var in ("train_loss", "test_acc", "weight_sparsity"):
        assert torch.allclose(torch.tensor(sa["vars"][var]), torch.tensor(sb["vars"][var]), atol=1e-4), var
    assert sorted(p.name for p in two.iterdir()) == ["environment.json", "final.pt", "init.pt", "job.json", "lock",
                                                     "mask.pt", "shard.json"]
    assert torch.equal(load(one / "init.pt")["net.1.weight"], load(two / "init.pt")["net.1.weight"])

    # launched again: rank 0 finds the shard and tells rank 1; neither trains
    again = run_ranks(two)
    assert all(p.returncode == 0 and "is already done" in p.stdout and "starting" not in p.stdout for p in again)


DIVERGE = """\
import torch
from runners import distributed
w = distributed.init()
model = torch.nn.Linear(3, 2)
distributed.broadcast_state(model)
distributed.check_identical(model, None)  # same weights: passes
if w.rank == 1:
    with torch.no_grad():
        model.weight[0, 0] += 1e-7
try:
    distributed.check_identical(model, None)
except RuntimeError as e:
    print("caught:", e)
distributed.close()
"""


def test_ranks_that_diverge_are_caught(tmp_path):
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", DIVERGE], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=worker_env(WORLD_SIZE="2", RANK=str(r), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                                             MASTER_PORT=port)) for r in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all("caught: ranks [1] hold other weights or masks than rank 0" in o for o in outs), outs


def test_world_from_the_environment(monkeypatch):
    from runners import distributed

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_PROCID",
                "SLURM_LOCALID", "MASTER_PORT", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.world() == distributed.World(0, 1, 0)
    # the batch script of a 2-task job is one process: SLURM_NTASKS alone is not a step of 2
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert distributed.world().size == 1
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert distributed.world() == distributed.World(3, 4, 1) and not distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's variables win
    monkeypatch.setenv("RANK", "1")
    assert distributed.world() == distributed.World(1, 2, 0)
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    assert distributed.master_port() == 20000 + 123456 % 20000
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert distributed.master_port() == 29500


def test_an_input_refused_by_rank_0_stops_every_rank(tmp_path):
    """Rank 0 alone checks the job's inputs against the hashes their jobs recorded; when it
    refuses one, every rank must stop with its reason at once, not wait in the first
    collective for a rank 0 that is gone (gloo's timeout: 30 minutes)."""
    spec = SPEC.replace("steps: 60", "steps: 20").replace("checkpoint_every: 20", "checkpoint_every: 0") + (
        RUNS["prune"] + "  scratch: {regime: fixed_mask, mask: prune.final, init: fresh}\n")
    plan = build(loads(spec).study)
    store = Store(tmp_path / "store")
    prune, scratch = (next(j for j in plan.jobs.values() if run in plan.names_of(j.id)) for run in ("prune", "scratch"))
    done = subprocess.run([sys.executable, "-m", "runners.worker", str(store.prepare(prune))], cwd=ROOT,
                          env=worker_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    final = store.run_dir(prune.id) / "final.pt"
    state = load(final)
    torch.save({k: v + 1 for k, v in state.items()}, final)  # a valid file, not the one the job wrote
    ranks = run_ranks(store.prepare(scratch), timeout=120)
    for r, p in enumerate(ranks):
        assert p.returncode != 0, p.stdout
        assert "an input is not the one its job wrote" in p.stdout and "final.pt: content differs" in p.stdout, (r, p.stdout)
        assert "starting" not in p.stdout, p.stdout
    assert not store.shard(scratch.id).exists()
