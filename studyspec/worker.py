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

from .store import write_atomic


def threads() -> int:
    for var in ("STUDYSPEC_THREADS", "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return 1


def run(run_dir: str | Path) -> bool:
    """Run the job in run_dir unless done; True if this call ran it."""
    run_dir = Path(run_dir)
    job = json.loads((run_dir / "job.json").read_text())
    shard = run_dir / "shard.json"
    with open(run_dir / "lock", "w") as lock:
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
        inputs = {d: run_dir.parent / d for d in job["deps"]}  # siblings in the store
        metrics = runners.job.run(job, run_dir, inputs, run_dir.parent / "_cache")
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
