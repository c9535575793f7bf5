"""Long-lived local workers vs a fresh process per job (issue 14, target 3).

Runs, side by side in one invocation, on the quick-start's MLP and data (mnist1d, 300-100,
batch 256): a study of N dense jobs of S steps (one per seed) on 2 workers, with the
long-lived workers (default) and with a fresh process per job (STUDYSPEC_JOBS_PER_WORKER=0),
against one such job alone; each a whole `studyspec launch` command in a fresh store, wall
and CPU (the launch and every worker, children included). Target: the N-job study on the
workers in at most 2.5x the time of one job alone. Each store starts with the mnist1d data
already cached (copied from one cache made first, not timed), as in any store after its first
job; --cold leaves the stores empty, so that each launch also generates the data (~4 s of CPU).

    .venv/bin/python bench/worker_pool.py --jobs 24 --steps 50 [--repeats 1] [--cold]
    .venv/bin/python bench/worker_pool.py --quickstart     # the quick-start's total CPU, both ways

With --quickstart: specs/quickstart.yaml launched in a fresh store with the long-lived
workers and with a fresh process per job; total CPU of each (target: -15%).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
study: pool_bench
data:  {{dataset: mnist1d, batch_size: 256}}
model: {{arch: mlp, hidden: [300, 100]}}
train: {{steps: {steps}, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}, schedule: {{name: cosine}}, eval_every: {steps}}}
sweep: {{seed: {seeds}}}
runs:
  dense: {{regime: dense}}
"""


def launch(spec: Path, store: Path, jobs_per_worker: int, workers: int, cache: Path | None = None) -> tuple[float, float]:
    if cache is not None:  # the store's dataset cache, filled beforehand
        shutil.copytree(cache, store / "_cache")
    env = dict(os.environ, STUDYSPEC_JOBS_PER_WORKER=str(jobs_per_worker))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "studyspec", "launch", str(spec), "--store", str(store), "-j", str(workers)],
                   check=True, env=env, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--quickstart", action="store_true")
    ap.add_argument("--cold", action="store_true", help="empty stores: each launch generates the dataset too")
    args = ap.parse_args()
    if args.quickstart:
        tmp = Path(tempfile.mkdtemp(prefix="bench-pool-qs-"))
        print(f"uptime: {os.popen('uptime').read().strip()}")
        spec = ROOT / "specs" / "quickstart.yaml"
        pool = launch(spec, tmp / "pool", 50, args.workers)
        fresh = launch(spec, tmp / "fresh", 0, args.workers)
        print(f"quick-start, long-lived workers:     wall {pool[0]:7.1f} s  CPU {pool[1]:7.1f} s")
        print(f"quick-start, fresh process per job:  wall {fresh[0]:7.1f} s  CPU {fresh[1]:7.1f} s")
        print(f"CPU: {100 * (pool[1] / fresh[1] - 1):+.1f}% (target <= -15%)")
        print(f"uptime: {os.popen('uptime').read().strip()}")
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    one, many = tmp / "one.yaml", tmp / "many.yaml"
    one.write_text(SPEC.format(steps=args.steps, seeds=[0]))
    many.write_text(SPEC.format(steps=args.steps, seeds=list(range(args.jobs))))
    cache = None
    if not args.cold:  # the dataset cache is per store: fill one, copied into every store before its launch
        cache = tmp / "cache"
        subprocess.run([sys.executable, "-c", "import sys; from runners.data import batches; "
                        "batches({'dataset': 'mnist1d', 'batch_size': 256}, sys.argv[1])", str(cache)],
                       check=True, cwd=ROOT)
    print(f"uptime: {os.popen('uptime').read().strip()}")
    rows = {"one job alone": [], f"{args.jobs} jobs, long-lived workers": [],
            f"{args.jobs} jobs, fresh process per job": []}
    for r in range(args.repeats):  # interleaved
        rows["one job alone"].append(launch(one, tmp / f"one{r}", 50, args.workers, cache))
        rows[f"{args.jobs} jobs, long-lived workers"].append(launch(many, tmp / f"pool{r}", 50, args.workers, cache))
        rows[f"{args.jobs} jobs, fresh process per job"].append(launch(many, tmp / f"fresh{r}", 0, args.workers, cache))
    alone = min(w for w, _ in rows["one job alone"])
    for name, v in rows.items():
        wall, cpu = min(v)
        print(f"{name:40s} wall {wall:6.2f} s  CPU {cpu:6.2f} s  ({wall / alone:.2f}x one job's wall)")
    print(f"uptime: {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
