"""Overhead of studyspec's training runner, run by hand (figures go to docs/performance.md).

On the quick-start MLP (300-100) and data (mnist1d, batch 256, SGD momentum 0.9, cosine):

1. runner vs hand loop: ``runners.train.train`` (dense) against a hand-written PyTorch
   loop doing the same steps: same init, same data order, same lr schedule, the same
   evaluations (train/test loss and accuracy at step 0, every ``eval_every`` steps and at
   the end) and final.pt. The two must end with bit-identical weights (checked), so they
   do the same work; the runner additionally records the masked gradient norm at each
   evaluation and writes init.pt. Target: runner <= 1.05x hand loop.
2. masked vs dense: the runner with ``fixed_mask`` (random mask at 95% sparsity: zero the
   pruned gradients, step, re-apply the mask) against ``dense``. Target: <= 1.10x.

Each measurement is repeated and the minimum kept (others may be using the machine).
One torch thread. Usage::

    .venv/bin/python bench/train_overhead.py [--steps 3000] [--eval-every 100] [--repeats 5]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from runners import data, models, train  # noqa: E402
from runners.evaluate import evaluate  # noqa: E402
from runners.regimes import derive_seed  # noqa: E402


def config(steps: int, eval_every: int, regime: dict) -> dict:
    return {
        "kind": "train", "seed": 0,
        "data": {"dataset": "mnist1d", "batch_size": 256},
        "model": {"arch": "mlp", "hidden": [300, 100]},
        "train": {"steps": steps, "epochs": None,
                  "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False,
                                "weight_decay": 0.0, "betas": [0.9, 0.999]},
                  "schedule": {"name": "cosine", "warmup": 0, "milestones": [], "gamma": 0.1},
                  "label_smoothing": 0.0, "eval_every": eval_every, "checkpoints": [],
                  "checkpoint_every": 0, "device": "cpu"},
        "regime": regime,
    }


DENSE = {"regime": "dense"}
MASKED = {"regime": "fixed_mask", "mask": "random", "sparsity": 0.95, "distribution": "uniform",
          "shuffle": False, "init": "fresh", "scale_init": False}


def hand_loop(cfg: dict, run_dir: Path, cache: Path) -> dict:
    """What a user would write by hand for the same dense run."""
    steps, eval_every = cfg["train"]["steps"], cfg["train"]["eval_every"]
    x, y, xt, yt = data.load(cfg["data"], cache)
    torch.manual_seed(cfg["seed"])
    model = models.build(cfg["model"], tuple(x.shape[1:]), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(derive_seed(cfg["seed"], "data"))
    bs, n, perm, pos = 256, len(y), None, 0
    log = []

    def train_eval_and_grad_norm():  # full-set loss/accuracy and gradient norm, one pass
        model.eval()
        out = model(x)
        loss = F.cross_entropy(out, y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        model.train()
        return float(loss.detach()), float((out.argmax(1) == y).float().mean()), math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))

    for t in range(steps + 1):
        if t % eval_every == 0 or t == steps:
            log.append((t, train_eval_and_grad_norm(), evaluate(model, xt, yt), sum(int((p == 0).sum()) for p in model.parameters())))
        if t == steps:
            break
        if perm is None or pos >= n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + bs]
        pos += bs
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = 0.05 * 0.5 * (1.0 + math.cos(math.pi * t / steps))
        opt.step()
    torch.save(model.state_dict(), run_dir / "final.pt")
    return {"log": log}


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    cache = tmp / "cache"
    data.load({"dataset": "mnist1d", "batch_size": 256}, cache)  # generate once
    dense, masked = config(args.steps, args.eval_every, DENSE), config(args.steps, args.eval_every, MASKED)
    run = lambda cfg, name: train.train(cfg, tmp / name, {}, cache)
    for d in ("runner", "hand", "masked"):
        (tmp / d).mkdir()

    # warm-up (first calls pay one-off costs), and the same-steps check
    run(dense, "runner"), hand_loop(dense, tmp / "hand", cache), run(masked, "masked")
    a = torch.load(tmp / "runner" / "final.pt", weights_only=True)
    b = torch.load(tmp / "hand" / "final.pt", weights_only=True)
    same = all(torch.equal(a[k], b[k]) for k in a)

    times = {"runner": [], "hand": [], "masked": []}
    for _ in range(args.repeats):  # interleaved, so load changes hit all three alike
        times["runner"].append(timed(run, dense, "runner"))
        times["hand"].append(timed(hand_loop, dense, tmp / "hand", cache))
        times["masked"].append(timed(run, masked, "masked"))
    best = {k: min(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f}; steps {args.steps}, eval_every {args.eval_every}, "
          f"repeats {args.repeats} (min)")
    print(f"runner and hand loop end bit-identical: {same}")
    for k, v in times.items():
        print(f"  {k:7s} min {best[k]:7.3f} s   all: {' '.join(f'{x:.3f}' for x in v)}")
    print(f"runner / hand loop   = {best['runner'] / best['hand']:.3f}x  (target <= 1.05)")
    print(f"masked / dense (runner) = {best['masked'] / best['runner']:.3f}x  (target <= 1.10)")


if __name__ == "__main__":
    main()
