"""Runs one job in its own process: `python -m runners.worker RUN_DIR`.

The engine never imports this module: it starts it by name (``studyspec.store.WORKER``).

Takes the job's lock (so two launches never run one job twice), skips the job
if its shard exists, calls the runner, and writes the shard atomically last. In a job
of several processes every process runs this worker; see ``run``.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import time
from pathlib import Path

from studyspec.store import Store, write_atomic


def threads() -> int:
    for var in ("STUDYSPEC_THREADS", "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return 1


def run(run_dir: str | Path) -> bool:
    """Run the job in run_dir unless done; True if this call ran it.

    A job of several processes (a SLURM job with several tasks, each running this worker;
    runners/distributed.py): rank 0 takes the lock, decides whether the job is done and
    tells the others (they never touch the lock); every rank trains; rank 0 writes the shard."""
    run_dir = Path(run_dir)
    store, job_id = Store(run_dir.parent), run_dir.name  # a run directory lives in its store
    job = json.loads(store.job_file(job_id).read_text())
    from runners.world import world as world_of  # (no torch: a job already done never imports it)

    world = world_of()
    with open(store.lock(job_id), "w") as lock:
        if world.main:
            fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process runs this job
        if world.size == 1:
            return _run(job, store, world)
        from runners import distributed

        try:
            return _run(job, store, world)
        finally:
            distributed.close()


def _run(job: dict, store: Store, world) -> bool:
    shard = store.shard(job["id"])
    done = shard.exists() if world.main else None
    if world.size > 1:
        from runners import distributed

        distributed.init()
        done = distributed.broadcast_object(done)
    if done:
        print(f"job {job['id']} is already done", flush=True)
        return False
    if world.size > 1 and job["kind"] != "train":
        raise SystemExit(f"job {job['id']}: {job['kind']} jobs run in one process; this one has "
                         f"{world.size} (launch.slurm.{job['kind']}: nodes 1, tasks_per_node 1)")
    import torch

    import runners.job
    from runners import machine

    torch.set_num_threads(threads())
    ranks = ""
    if world.size > 1:
        ranks = f" (node {os.environ.get('SLURMD_NODENAME', '?')}), rank {world.rank} of {world.size}"
    print(f"job {job['id']} ({job['kind']}) starting on {platform.node()}{ranks}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)
    from runners import environment

    env = environment.record()
    if world.main:
        write_atomic(store.run_dir(job["id"]) / environment.FILE, json.dumps(env, indent=1))
    start = time.time()
    inputs = {d: store.run_dir(d) for d in job["deps"]}
    metrics = runners.job.run(job, store.run_dir(job["id"]), inputs, store.cache_dir)
    metrics["machine"] = machine.describe()  # CPU model, instruction set, GPU: what bit-stability depends on
    metrics["job"] = job["id"]
    metrics["seconds"] = time.time() - start
    metrics["versions"] = environment.versions(env)
    if world.size > 1:
        metrics["tasks"] = world.size
        distributed.barrier()  # every rank is through training before the job counts as done
    if world.main:
        write_atomic(shard, json.dumps(metrics))
    print(f"job {job['id']} done in {metrics['seconds']:.1f} s", flush=True)
    return True


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m runners.worker RUN_DIR")
    run(sys.argv[1])
