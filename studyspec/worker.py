"""Runs one job in its own process: `python -m studyspec.worker RUN_DIR`.

Takes the job's lock (so two launches never run one job twice), skips the job
if its shard exists, calls the runner, and writes the shard atomically last.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import time
from pathlib import Path

from .store import Store, write_atomic


def threads() -> int:
    for var in ("STUDYSPEC_THREADS", "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return 1


def run(run_dir: str | Path) -> bool:
    """Run the job in run_dir unless done; True if this call ran it."""
    run_dir = Path(run_dir)
    store, job_id = Store(run_dir.parent), run_dir.name  # a run directory lives in its store
    job = json.loads(store.job_file(job_id).read_text())
    shard = store.shard(job_id)
    with open(store.lock(job_id), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process runs this job
        if shard.exists():
            print(f"job {job['id']} is already done", flush=True)
            return False
        import torch

        import runners.job

        torch.set_num_threads(threads())
        print(f"job {job['id']} ({job['kind']}) starting on {platform.node()}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)
        start = time.time()
        inputs = {d: store.run_dir(d) for d in job["deps"]}
        metrics = runners.job.run(job, store.run_dir(job_id), inputs, store.cache_dir)
        metrics["job"] = job["id"]
        metrics["seconds"] = time.time() - start
        metrics["versions"] = {"torch": torch.__version__, "python": platform.python_version()}
        write_atomic(shard, json.dumps(metrics))
        print(f"job {job['id']} done in {metrics['seconds']:.1f} s", flush=True)
        return True


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m studyspec.worker RUN_DIR")
    run(sys.argv[1])
