"""Planning at scale (issue 14, target 1): `studyspec plan` of 10^4 and 10^5 jobs and
`studyspec validate` of a 10^5-point sweep, each a whole command in a fresh process
(wall, CPU, peak memory), side by side in one run; --profile prints where build() spends
its time (cProfile, in-process), --profile-command where the whole `studyspec plan` command
does (cProfile of a fresh process: imports, load and checks, build, table, estimate).

    .venv/bin/python bench/plan_scale.py [--sizes 10000 100000] [--profile 10000] [--profile-command 100000]

The study: one dense run and one prune run per sweep point (seed x sparsity), so N jobs
need N / 2 points; launch.max_jobs is raised to fit.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def spec_text(jobs: int) -> str:
    points = max(1, jobs // 2)
    seeds = max(1, points // 5)
    return f"""\
study: plan_scale
data:  {{dataset: mnist1d, batch_size: 256}}
model: {{arch: mlp, hidden: [300, 100]}}
train: {{steps: 3000, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}, schedule: {{name: cosine}}, eval_every: 100}}
sweep:
  seed: {list(range(seeds))}
  sparsity: [0.5, 0.8, 0.9, 0.95, 0.98]
runs:
  prune: {{regime: prune, schedule: {{begin: 0.1, end: 0.6, every: 30}}}}
  scratch: {{regime: fixed_mask, mask: prune.final, init: fresh}}
launch: {{max_jobs: {max(50_000, 2 * jobs)}}}
"""


def command(args: list[str]) -> tuple[float, float, float, str]:
    """wall s, CPU s, peak RSS MB of one command (a fresh process), and its stderr's last line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", "import resource, runpy, sys; sys.argv = ['studyspec'] + sys.argv[1:];"
                           "exec('try:\\n runpy.run_module(\"studyspec\", run_name=\"__main__\")\\n"
                           "finally:\\n print(\"maxrss\", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)')",
                           *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss = next((int(l.split()[1]) for l in proc.stderr.splitlines() if l.startswith("maxrss")), 0)
    lines = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith("maxrss")]
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), rss / 1024, \
        (lines[-1] if lines else proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--profile", type=int, default=0, help="profile build() of a plan of this many jobs")
    ap.add_argument("--profile-command", type=int, default=0,
                    help="profile the whole `studyspec plan` command of a plan of this many jobs")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    print(f"uptime: {os.popen('uptime').read().strip()}")
    if args.profile_command:
        spec, out = tmp / "profiled.yaml", tmp / "plan.prof"
        spec.write_text(spec_text(args.profile_command))
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "studyspec", "plan", str(spec),
                        "--store", str(tmp / "store"), "--no-data-check"], cwd=ROOT, check=True, capture_output=True)
        for order in ("cumulative", "tottime"):
            pstats.Stats(str(out)).sort_stats(order).print_stats(25)
        return
    if args.profile:
        from studyspec.load import loads
        from studyspec.plan import build

        text = spec_text(args.profile)
        prof = cProfile.Profile()
        prof.enable()
        t0 = time.perf_counter()
        loaded = loads(text)
        t1 = time.perf_counter()
        plan = build(loaded.study)
        t2 = time.perf_counter()
        prof.disable()
        print(f"in-process: load {t1 - t0:.2f} s, build {t2 - t1:.2f} s, {len(plan.jobs)} jobs")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        return
    walls, cpus = {}, {}
    for n in args.sizes:
        spec = tmp / f"plan{n}.yaml"
        spec.write_text(spec_text(n))
        wall, cpu, rss, last = command(["plan", str(spec), "--store", str(tmp / "store"), "--no-data-check"])
        walls[n], cpus[n] = wall, cpu
        print(f"plan {n:>7} jobs: wall {wall:6.2f} s, CPU {cpu:6.2f} s, peak {rss:7.0f} MB   [{last[:90]}]")
        vspec = tmp / f"validate{n}.yaml"  # a sweep of n points (2n jobs)
        vspec.write_text(spec_text(2 * n))
        wall, cpu, rss, last = command(["validate", str(vspec), "--no-data-check"])
        print(f"validate {n:>7}-point sweep: wall {wall:6.2f} s, CPU {cpu:6.2f} s, peak {rss:7.0f} MB   [{last[:60]}]")
    if len(walls) > 1:
        a = sorted(walls)[:2]
        print(f"plan {a[1]} / {a[0]} jobs: {walls[a[1]] / walls[a[0]]:.1f}x wall, "
              f"{cpus[a[1]] / cpus[a[0]]:.1f}x CPU (target <= 11x)")
    print(f"uptime: {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
