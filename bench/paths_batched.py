"""Batched path evaluation vs one model per point (runners/paths.py).

The quick-start MLP (40-300-100-10) on mnist1d (4000 train / 1000 test), a 41-point
linear path on [-0.2, 1.2] between two 95%-sparse points with one mask (as
scratch.final -> prune.final), train and test sets both evaluated at every point.
Checks that both give the same numbers (loss to 1e-5 relative, accuracy to one
sample) and prints the best and the median time of each over --repeat runs.

    .venv/bin/python bench/paths_batched.py [--threads 2] [--points 41] [--repeat 5] [--device cuda]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runners import data, masks as M, models, paths  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points", type=int, default=41)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU the jobs use the batched pass)")
    ap.add_argument("--max-elements", type=int, default=None, help="chunk size of the batched pass")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cache = Path(tempfile.gettempdir()) / "studyspec-bench-cache"
    dev = torch.device(args.device)
    x_tr, y_tr, x_te, y_te = (a.to(dev) for a in data.load({"dataset": "mnist1d"}, cache))
    ends = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = models.build({"arch": "mlp", "hidden": [300, 100]}, 40, 10).to(dev)
        if seed == 0:
            mask = M.magnitude_masks(model, M.layer_sparsities(model, 0.95))
        M.apply(model, mask)
        ends.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    pmask = paths.policy_mask("shared", ends, model)
    ts = paths.grid(args.points, -0.2, 1.2)
    coeffs = torch.tensor([paths.Linear().coeffs(t) for t in ts], dtype=torch.float64)
    kw = {} if args.max_elements is None else {"max_elements": args.max_elements}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def loop():
        stacked, fixed = paths.stack_points(ends, coeffs, pmask)
        return [paths.evaluate_loop(model, stacked, fixed, x, y) for x, y in ((x_tr, y_tr), (x_te, y_te))]

    def batched():
        stacked, fixed = paths.stack_points(ends, coeffs, pmask)
        return [paths.evaluate_batched(model, stacked, fixed, x, y, **kw) for x, y in ((x_tr, y_tr), (x_te, y_te))]

    ref, out = loop(), batched()  # warm-up, and the check
    for (l_ref, a_ref), (l, a), n in zip(ref, out, (len(y_tr), len(y_te))):
        worst = max(abs(u - v) / max(abs(u), 1e-12) for u, v in zip(l_ref, l))
        assert worst < 1e-5, f"loss differs by {worst:.2e} (relative)"
        assert max(abs(u - v) for u, v in zip(a_ref, a)) <= 1.0 / n + 1e-12, "accuracy differs by more than one sample"
    times = {"loop": [], "batched": []}
    for _ in range(args.repeat):
        for name, f in (("loop", loop), ("batched", batched)):
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[name].append(time.perf_counter() - t0)
    t_loop, t_b = min(times["loop"]), min(times["batched"])  # min: robust to other load on the machine
    m_loop, m_b = statistics.median(times["loop"]), statistics.median(times["batched"])
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} thread(s)"
    print(f"torch {torch.__version__}, {where}, {args.points} points, "
          f"train {len(y_tr)} + test {len(y_te)} samples")
    print(f"numbers agree: loss to {worst:.1e} relative, accuracy to one sample")
    print(f"best of {args.repeat}: one model per point {t_loop:.3f} s, batched {t_b:.3f} s, speed-up {t_loop / t_b:.2f}x")
    print(f"median:    one model per point {m_loop:.3f} s, batched {m_b:.3f} s, speed-up {m_loop / m_b:.2f}x")


if __name__ == "__main__":
    main()
