"""Benchmark: queue a 1,000-job study on SLURM with `studyspec launch --executor slurm`
(submitit: one job array per group, exact per-task dependencies with `aftercorr`)
versus submitting each job on its own (one `sbatch` per job, with its exact
`afterok` dependencies), side by side in one run, on the local cluster of
studyspec/local_slurm.

    bash studyspec/local_slurm/start.sh /tmp/studyspec-slurm
    source /tmp/studyspec-slurm/env.sh
    .venv/bin/python bench/slurm_launch.py [--points 200] [--keep]

The study: 200 sweep points x (prune, dense, scratch, lottery, one path) = 1,000
tiny jobs. Both ways submit with --hold so nothing runs while we measure; the jobs
are cancelled at the end (--keep leaves them queued). Prints the figures for
docs/performance.md. Each run leaves ~2,000 cancelled records in slurmctld for MinJobAge
(300 s on the local cluster): after ~5 runs within 5 minutes SLURM refuses new jobs
(MaxJobCount 10,000) until they age out.
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

SPEC = """\
study: bench_slurm
data: {{dataset: mnist1d, batch_size: 128}}
model: {{arch: mlp, hidden: [16]}}
train: {{steps: 20, eval_every: 10}}
sparsity: 0.9
sweep: {{seed: {seeds}}}
runs:
  prune: {{regime: prune, schedule: {{begin: 0.1, end: 0.5, every: 5}}}}
  scratch: {{regime: fixed_mask, mask: prune.final}}
  lottery: {{regime: fixed_mask, mask: prune.final, init: prune.init}}
  dense: {{regime: dense}}
paths:
  bad_to_good: {{kind: linear, from: scratch.final, to: prune.final, points: 3}}
"""


def queued(prefix: str) -> int:
    """Tasks queued whose job name starts with prefix (array tasks expanded in full)."""
    from studyspec.executors.slurm.state import expand

    env = dict(os.environ, SLURM_BITSTR_LEN="0")
    out = subprocess.run(["squeue", "--me", "-h", "-o", "%j|%K"], capture_output=True, text=True, env=env).stdout
    return sum(len(expand(k)) if k != "N/A" else 1 for j, _, k in (l.partition("|") for l in out.splitlines())
               if j.startswith(prefix))


def cancel(prefix: str) -> None:
    out = subprocess.run(["squeue", "--me", "-h", "-o", "%F|%j"], capture_output=True, text=True).stdout
    ids = sorted({i for i, _, j in (l.partition("|") for l in out.splitlines()) if j.startswith(prefix)})
    for k in range(0, len(ids), 200):
        subprocess.run(["scancel", *ids[k:k + 200]], check=False)
    deadline = time.time() + 60
    while queued(prefix) and time.time() < deadline:
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=200, help="sweep points (5 jobs each)")
    ap.add_argument("--keep", action="store_true", help="leave the jobs queued (held)")
    args = ap.parse_args()
    if not os.environ.get("SLURM_CONF"):
        sys.exit("source DIR/env.sh of a local cluster first (SLURM_CONF)")

    from studyspec.load import load
    from studyspec.plan import build
    from studyspec.store import Store

    work = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    spec = work / "bench.yaml"
    spec.write_text(SPEC.format(seeds=list(range(args.points))))
    store = work / "store"
    plan = build(load(spec).study)
    n = len(plan.jobs)
    print(f"study: {n} jobs ({args.points} sweep points); store {store}")

    # 1. studyspec launch (a fresh process, as a user runs it). Its modules' bytecode is compiled
    # first, as Python does on any first run unless PYTHONDONTWRITEBYTECODE is set (as it is on
    # the machine these figures come from: there every process compiled studyspec from source,
    # ~0.08 s; an editable install writes no bytecode of its own)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parents[1] / "studyspec")],
                   check=True, capture_output=True)
    load = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "studyspec", "launch", str(spec), "--store", str(store),
                           "--executor", "slurm", "--time", "10", "--slurm", "extra.hold=true"],
                          capture_output=True, text=True)
    t_launch = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    print(proc.stderr.strip())
    n_queued = queued("bench_slurm:")
    print(f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}; studyspec's bytecode compiled first")
    print(f"studyspec launch: {t_launch:.2f} s wall (process start included), {cpu:.2f} s CPU (user+sys), "
          f"{n_queued} tasks queued; load average before: {load:.1f} on {os.cpu_count()} CPUs")
    if not args.keep:
        cancel("bench_slurm:")

    # 2. one sbatch per job, exact afterok dependencies (what a naive executor does)
    store2 = Store(work / "store-per-job")
    logs = work / "per-job-logs"
    logs.mkdir()
    ids: dict[str, str] = {}
    t0 = time.perf_counter()
    for job in plan.jobs.values():
        run_dir = store2.prepare(job)
        cmd = ["sbatch", "--parsable", "--hold", "--job-name=bench_perjob", "--time=10",
               f"--output={logs}/%j.out", "--requeue", "--open-mode=append",
               "--wrap", f"{sys.executable} -m runners.worker {run_dir}"]
        if job.deps:
            cmd[2:2] = ["--dependency=afterok:" + ":".join(ids[d] for d in job.deps), "--kill-on-invalid-dep=yes"]
        ids[job.id] = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    t_each = time.perf_counter() - t0
    print(f"sbatch per job: {t_each:.2f} s for {n} jobs ({1000 * t_each / n:.1f} ms per job), "
          f"{queued('bench_perjob')} queued")
    if not args.keep:
        cancel("bench_perjob")
    print(f"speed-up: {t_each / t_launch:.1f}x")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
