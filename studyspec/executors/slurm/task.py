"""What submitit runs in each task of a SLURM job: `RunJob` (one job of the study) for a
one-task array, and `ArrayTask` for every task of a longer one: it finds its job by its
array index in the array's manifest (one JSON file per array, written by launch) and runs
it as `RunJob`, or, at a padding index (arrays.py), exits at once without torch. One
callable for the whole array lets launch write its pickle once (linked.py).

`RunJob` writes the job's job.json, sends the task's output to the job's log
(`<store>/<job id>/log.txt`, appended: every start and requeue of the job is there) and
runs the shared worker (`runners.worker`, the same as the local executor). In a job of several tasks, each
task gets its rank, the world size and its local rank from `submitit.JobEnvironment`
(passed to the runners as RANK, WORLD_SIZE, LOCAL_RANK); rank 0 holds the job's lock and
writes every file.

Time limits and preemption: submitit asks SLURM for USR2 shortly before the time limit;
its handler calls `RunJob.checkpoint`, which resubmits the same job, and requeues the task.
Whenever a task starts again (requeued by submitit, by `scontrol requeue` or by
preemption), the train runner resumes from its resume checkpoint (runners/checkpoint.py),
not from step 0. SIGTERM (scancel, requeue, preemption) stops the task at once: it loses at
most the work since its last checkpoint."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from pathlib import Path


class RunJob:
    """Run one job of the study (a submitit callable, checkpointable)."""

    def __init__(self, run_dir: str, record: dict):
        self.run_dir = run_dir
        self.record = record  # the content of job.json

    def __call__(self) -> bool:
        import submitit

        from ...store import WORKER, Store

        env = submitit.JobEnvironment()
        run_dir = Path(self.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        to_log(run_dir / "log.txt")
        ranks = ""
        if env.num_tasks > 1:  # torchrun-style variables: the runners read no SLURM variable for these
            os.environ.update(WORLD_SIZE=str(env.num_tasks), RANK=str(env.global_rank),
                              LOCAL_RANK=str(env.local_rank))
            ranks = f", rank {env.global_rank} of {env.num_tasks}"
        threads = os.environ.get("SLURM_CPUS_PER_TASK", "1")
        os.environ.setdefault("OMP_NUM_THREADS", threads)
        os.environ.setdefault("MKL_NUM_THREADS", threads)
        signal.signal(signal.SIGTERM, stop)  # after submitit's own handlers, which ignore SIGTERM
        print(f"slurm task {env.job_id} (job {env.raw_job_id}) on {env.hostname}{ranks}, "
              f"restart {os.environ.get('SLURM_RESTART_COUNT', '0')}", flush=True)
        Store(run_dir.parent).write_job(self.record)  # atomic and idempotent: every rank may write it
        return importlib.import_module(WORKER).run(run_dir)  # by name: the engine never imports runners

    def checkpoint(self) -> "submitit.helpers.DelayedSubmission":  # noqa: F821
        """Called by submitit before it requeues the task (time limit near): run the same job
        again; the job's own resume checkpoint carries its progress."""
        import submitit

        print("time limit near: requeueing; the next start resumes from the last checkpoint", flush=True)
        return submitit.helpers.DelayedSubmission(RunJob(self.run_dir, self.record))


class ArrayTask:
    """Every task of one array: the job at this task's index in `manifest` (a JSON list of
    {"run_dir", "record"}, or null for a padding task)."""

    def __init__(self, manifest: str):
        self.manifest = manifest

    def job(self) -> RunJob | None:
        import submitit

        index = int(submitit.JobEnvironment().array_task_id)
        entry = json.loads(Path(self.manifest).read_text())[index]
        return None if entry is None else RunJob(entry["run_dir"], entry["record"])

    def __call__(self) -> bool | None:
        job = self.job()
        return None if job is None else job()

    def checkpoint(self):
        """Requeue this task's own job (submitit replaces this task's pickle only)."""
        job = self.job()
        return None if job is None else job.checkpoint()


def stop(signum, frame):
    """Exit now (files are written atomically; the OS releases the job's lock)."""
    print(f"stopped by {signal.Signals(signum).name}: the next start resumes from the last checkpoint",
          flush=True)
    os._exit(128 + signum)


def to_log(path: Path) -> None:
    """Send this process's stdout and stderr (Python's and the C library's) to `path`, appended,
    each line in one write: the tasks of a multi-node job share the log, and under `python -u`
    (submitit's) print would write a line's text and its newline apart, so that another rank's
    line could land between them."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # a TextIOWrapper (not one a caller put in its place)
            stream.reconfigure(line_buffering=True, write_through=False)
