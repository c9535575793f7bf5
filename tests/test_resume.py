"""Kill-and-resume, for real: a worker process is killed with SIGKILL after it wrote a
resume checkpoint; rerunning the worker finishes the job with final.pt bit-identical to
an uninterrupted run (and the same metrics)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runners import checkpoint, job
from studyspec.load import loads
from studyspec.plan import build
from studyspec.store import Store

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

SPEC = """\
study: resume
data: {dataset: mnist1d, batch_size: 128}
model: {arch: mlp, hidden: [128, 64]}
train: {steps: 400, eval_every: 100, checkpoint_every: 25, checkpoints: [100],
        optimizer: {name: OPT, lr: LR, momentum: MOM, weight_decay: 1.0e-4},
        schedule: {name: cosine, warmup: 20}, label_smoothing: 0.1}
sparsity: 0.9
runs:
  run: RUN
"""
CASES = {
    # mask changes every 10 steps, SET draws from its own generator, momentum buffers are reset
    "set": ("{regime: set, every: 10, stop: 0.9}", "sgd", 0.05, 0.9),
    # three trainings (2 prune rounds): the optimizer is rebuilt and the weights rewound between them
    "imp": ("{regime: imp, rounds: 2, rewind: 50}", "adam", 0.001, 0.0),
}


def the_job(case):
    regime, opt, lr, mom = CASES[case]
    text = SPEC.replace("RUN", regime).replace("OPT", opt).replace("LR", str(lr)).replace("MOM", str(mom))
    plan = build(loads(text).study)
    (j,) = plan.jobs.values()
    return j


def worker(run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, STUDYSPEC_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "runners.worker", str(run_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("case", list(CASES))
def test_killed_job_resumes_bit_identical(tmp_path, case):
    j = the_job(case)
    store = Store(tmp_path / "store")
    run_dir = store.prepare(j)
    resume = run_dir / checkpoint.FILE

    proc = worker(run_dir)
    deadline = time.time() + 120
    while not resume.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, "no resume checkpoint appeared"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "final.pt").exists() and not store.is_done(j.id), "the job finished before the kill"
    killed_at = torch.load(resume, weights_only=True)["step"]

    # the uninterrupted reference, in this process (one thread, like the worker)
    ref_dir = tmp_path / "ref"
    ref = job.run({"id": j.id, "kind": "train", "config": j.config}, ref_dir, {}, store.cache_dir)
    assert 0 < killed_at < ref["scalars"]["steps"]

    again = worker(run_dir)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert f"resuming from step {killed_at} of" in out, out
    assert not resume.exists()  # removed once final.pt is written

    a = torch.load(run_dir / "final.pt", weights_only=True)
    b = torch.load(ref_dir / "final.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit for bit
    for f in ("mask.pt", "init.pt", "step_100.pt"):
        x, y = torch.load(run_dir / f, weights_only=True), torch.load(ref_dir / f, weights_only=True)
        assert all(torch.equal(x[k], y[k]) for k in x), f
    shard = json.loads(store.shard(j.id).read_text())
    assert shard["coord"] == ref["coord"]
    assert shard["vars"] == ref["vars"] and shard["scalars"] == ref["scalars"]


def test_stale_checkpoint_of_another_config_is_ignored(tmp_path):
    j = the_job("set")
    cfg = json.loads(json.dumps(j.config))
    cfg["train"].update(steps=60, checkpoint_every=20, eval_every=20, checkpoints=[])
    cache = tmp_path / "cache"
    # a resume checkpoint left by a run that was killed at step 40
    first = job.run({"id": "x", "kind": "train", "config": dict(cfg, train=dict(cfg["train"], steps=80))},
                    tmp_path / "other", {}, cache)
    assert first["coord"][-1] == 80
    state = torch.load(tmp_path / "other" / "final.pt", weights_only=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"config": "something else", "step": 40, "model": state}, run_dir / checkpoint.FILE)
    m = job.run({"id": "y", "kind": "train", "config": cfg}, run_dir, {}, cache)
    ref = job.run({"id": "z", "kind": "train", "config": cfg}, tmp_path / "ref", {}, cache)
    assert m == ref


@pytest.mark.parametrize("case", list(CASES))
def test_checkpoint_of_the_older_names_resumes(tmp_path, monkeypatch, case):
    """A resume checkpoint written before the measured sparsity was named weight_sparsity
    (shard format 1: `sparsity`, imp's `round<r>_sparsity`) resumes, and the job ends as an
    uninterrupted run does."""
    j = the_job(case)
    cfg = json.loads(json.dumps(j.config))
    cfg["train"].update(steps=60, checkpoint_every=20, eval_every=20, checkpoints=[])
    if case == "imp":
        cfg["regime"].update(rounds=1, rewind=20)  # 60 + 40 steps: round 0 ends before the last checkpoint (80)
    cache = tmp_path / "cache"
    ref = job.run({"id": "z", "kind": "train", "config": cfg}, tmp_path / "ref", {}, cache)
    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "remove", lambda run_dir: None)  # keep the last checkpoint (step 40)
        job.run({"id": "y", "kind": "train", "config": cfg}, run_dir, {}, cache)
    state = torch.load(run_dir / checkpoint.FILE, weights_only=False)
    assert state["step"] == ref["coord"][-2] and "weight_sparsity" in state["rec"]
    state["rec"]["sparsity"] = state["rec"].pop("weight_sparsity")  # as the older version wrote it
    if case == "imp":
        results = state["regime"]["results"]
        results["round0_sparsity"] = results.pop("round0_weight_sparsity")
    torch.save(state, run_dir / checkpoint.FILE)
    again = job.run({"id": "y", "kind": "train", "config": cfg}, run_dir, {}, cache)
    assert not (run_dir / checkpoint.FILE).exists()
    assert again == ref and "sparsity" not in again["vars"]
