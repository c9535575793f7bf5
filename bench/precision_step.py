"""Step time of the training runner in fp32 / bf16 / fp16 against a hand-written AMP loop
(issue 14, targets 4 and 5), on a CIFAR ResNet-20 with CIFAR-shaped random data.

The runner (``runners.train.train``, dense, CIFAR-10 read from a folder of random images
in the real CIFAR-10 format, augmentation off) and a hand loop (same model, the same
batches' shapes, ``torch.autocast`` + ``GradScaler`` for fp16, SGD with momentum) each run
twice, with --short and --long steps; the time per step is the difference divided by the
step difference, so start-up, the two evaluations and the saves cancel out. Minimum over
--repeats interleaved repeats. Target on a GPU: runner <= 1.05x the hand loop at each
precision.

    .venv/bin/python bench/precision_step.py --device cpu --precisions fp32 bf16 --batch 64 --short 4 --long 12
    .venv/bin/python bench/precision_step.py --device cuda --precisions fp32 bf16 fp16 --channels-last
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from runners import data, models, train  # noqa: E402
from runners.precision import DTYPES  # noqa: E402


def fake_cifar(root: Path, n_train: int, n_test: int) -> Path:
    """A CIFAR-10 folder (python pickles, 5 training batches + test batch) of random images."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per = n_train // 5
    for name, n in [(f"data_batch_{i}", per) for i in range(1, 6)] + [("test_batch", n_test)]:
        entry = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        with open(d / name, "wb") as f:
            pickle.dump(entry, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [str(i).encode() for i in range(10)]}, f)
    return root


def config(root: Path, steps: int, batch: int, precision: str, channels_last: bool, device: str) -> dict:
    return {
        "kind": "train", "seed": 0,
        "data": {"dataset": "cifar10", "root": str(root), "batch_size": batch, "augment": False,
                 "train_eval_examples": 256},
        "model": {"arch": "resnet", "depth": 20, "width": 16},
        "train": {"steps": steps, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
                  "schedule": {"name": "constant"}, "eval_every": steps, "checkpoint_every": 0,
                  "device": device, "precision": precision, "channels_last": channels_last},
        "regime": {"regime": "dense"},
    }


def hand_loop(cfg: dict, cache: Path) -> None:
    """What a user writes by hand: autocast forward, (scaled) backward, step."""
    device = torch.device(cfg["train"]["device"])
    b = data.batches(cfg["data"], cache, device)
    x, y = b.arrays()[:2]
    torch.manual_seed(0)
    model = models.build(cfg["model"], b.input_shape, 10).to(device)  # the dataset's example shape (never a flat count for a conv net)
    precision, cl = cfg["train"]["precision"], cfg["train"]["channels_last"]
    if cl:
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    bs, gen = cfg["data"]["batch_size"], torch.Generator().manual_seed(0)
    for _ in range(cfg["train"]["steps"]):
        idx = torch.randint(0, len(y), (bs,), generator=gen).to(device)
        xb, yb = x[idx], y[idx]
        if cl:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=DTYPES.get(precision, torch.float32), enabled=precision != "fp32"):
            loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--short", type=int, default=20)
    ap.add_argument("--long", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-precision-"))
    root = fake_cifar(tmp / "cifar", n_train=5 * max(args.batch, 256), n_test=256)
    cache = tmp / "cache"
    per_step: dict[tuple[str, str], float] = {}
    runs = []
    for p in args.precisions:
        for who in ("runner", "hand"):
            def go(steps, p=p, who=who):
                cfg = config(root, steps, args.batch, p, args.channels_last, args.device)
                if who == "runner":
                    out = tmp / f"{who}-{p}-{steps}"
                    out.mkdir(exist_ok=True)
                    train.train(cfg, out, {}, cache)
                else:
                    hand_loop(cfg, cache)
            runs.append(((who, p), go))
    for _, go in runs:  # warm-up: one-off costs (first kernels, cudnn.benchmark's search)
        go(args.short)
    times: dict[tuple[str, str], list[float]] = {k: [] for k, _ in runs}
    for _ in range(args.repeats):  # interleaved, so load changes hit every variant alike
        for k, go in runs:
            times[k].append((timed(lambda: go(args.long)) - timed(lambda: go(args.short))) / (args.long - args.short))
    print(f"torch {torch.__version__}, device {args.device}"
          f"{' (' + torch.cuda.get_device_name(0) + ')' if args.device == 'cuda' else ''}, "
          f"{torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f}; ResNet-20, batch "
          f"{args.batch}, channels_last {args.channels_last}; per step = (T({args.long}) - T({args.short})) / "
          f"{args.long - args.short}, min of {args.repeats}")
    for k, v in times.items():
        per_step[k] = min(v)
        print(f"  {k[0]:6s} {k[1]}: {1000 * per_step[k]:8.2f} ms/step   all: "
              f"{' '.join(f'{1000 * x:.2f}' for x in v)}")
    for p in args.precisions:
        print(f"runner / hand loop, {p}: {per_step[('runner', p)] / per_step[('hand', p)]:.3f}x (target <= 1.05)")
    for p in args.precisions:
        if p != "fp32" and "fp32" in args.precisions:
            print(f"runner {p} / fp32: {per_step[('runner', p)] / per_step[('runner', 'fp32')]:.3f}x")


if __name__ == "__main__":
    main()
