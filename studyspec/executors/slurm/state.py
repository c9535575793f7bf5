"""The state of a study's SLURM tasks: submitit's sacct-backed watcher first, `squeue`
for tasks that accounting does not know (yet, or at all: a cluster without slurmdbd),
and the SLURM commands the executor runs, with located errors."""

from __future__ import annotations

import os
import shutil
import subprocess

from ...errors import UserError
from ...plan import Plan
from ...store import Store
from .record import Record

QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "CONFIGURING",
          "RESIZING", "SIGNALING", "STAGE_OUT"}
RUNNING = {"RUNNING", "COMPLETING"}
FAILED = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "COMPLETED"}


def command(args: list[str], what: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a SLURM command; a missing command or a failure is a located user error."""
    if shutil.which(args[0]) is None:
        raise UserError.single(f"`{args[0]}` is not on PATH: the slurm executor needs the SLURM client commands",
                               file="studyspec", hint="run on a cluster's login node, or start a local "
                               "cluster: bash studyspec/local_slurm/start.sh DIR && source DIR/env.sh")
    proc = subprocess.run(args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise UserError.single(f"{what} failed: {(proc.stderr or proc.stdout).strip()}", file=" ".join(args[:2]),
                               hint=config_hint(proc.stderr or proc.stdout))
    return proc


def config_hint(message: str) -> str | None:
    if "fetch_config" in message or "DNS SRV" in message:
        return "SLURM_CONF is not set: source DIR/env.sh of your local cluster (or fix the cluster's config)"
    return None


def expand(tasks: str) -> list[int]:
    """SLURM array task list -> indices: '0-4:2,7,9-10%3' -> [0, 2, 4, 7, 9, 10]."""
    out: list[int] = []
    for token in tasks.split("%")[0].split(","):
        if not token or not token[0].isdigit():
            continue
        rng, _, step = token.partition(":")
        lo, _, hi = rng.partition("-")
        out += range(int(lo), int(hi or lo) + 1, int(step or 1))
    return out


def queued_tasks() -> dict[str, str]:
    """SLURM task id -> state, for this user's jobs that slurmctld still holds (queued, running,
    or ended a few minutes ago).

    Not `squeue -r`: in SLURM 22.05 it drops the last task of a stepped range
    (ArrayTaskId=20-398:2). We expand the task lists ourselves, in full
    (SLURM_BITSTR_LEN=0; by default they are cut at 64 characters)."""
    env = dict(os.environ, SLURM_BITSTR_LEN="0")
    # -t all: also the tasks that ended in the last MinJobAge seconds, which sacct may not show yet
    proc = subprocess.run(["squeue", "--me", "-h", "-t", "all", "-o", "%F|%K|%T|%i"], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        command(["squeue", "--me", "-h"], "squeue")  # raises the located error
    live = {}
    for line in proc.stdout.splitlines():
        array, tasks, state, job = (line.split("|") + ["", "", "", ""])[:4]
        if tasks in ("N/A", ""):
            live[job.strip()] = state
        else:
            live.update({f"{array}_{i}": state for i in expand(tasks)})
    return live


def accounted(tasks: list[str]) -> dict[str, str]:
    """SLURM task id -> state per accounting, through submitit's watcher (one `sacct` call for
    every array); tasks accounting does not know are left out."""
    if not tasks or shutil.which("sacct") is None:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    watcher = SlurmInfoWatcher(delay_s=0)
    for task in tasks:
        watcher.register_job(task)
    watcher.update()
    states = {t: watcher.get_state(t, mode="cache") for t in tasks}
    return {t: s.split()[0] for t, s in states.items() if s and s != "UNKNOWN"}  # "CANCELLED by 0"


def slurm_states(tasks: list[str]) -> dict[str, str]:
    """SLURM task id -> SLURM state ('' when neither accounting nor the queue know it)."""
    states = accounted(tasks)
    unknown = [t for t in tasks if t not in states]
    if unknown:
        live = queued_tasks()
        states.update({t: live.get(t, "") for t in unknown})
    return states


def job_states(plan: Plan, store: Store) -> dict[str, tuple[str, str | None]]:
    """job id -> (state, SLURM task id or None); state is done, queued, running, failed,
    cancelled, or '' when SLURM knows nothing of it (the caller decides)."""
    record = Record(store, plan.study.study).read()["jobs"]
    out: dict[str, tuple[str, str | None]] = {}
    pending = {}
    done = store.done_among(plan.jobs)  # one listing of the store
    for j in plan.jobs:
        task = record.get(j, {}).get("task")
        if j in done:
            out[j] = ("done", task)
        elif task:
            pending[j] = task
        else:
            out[j] = ("", None)
    states = slurm_states(sorted(set(pending.values()))) if pending else {}
    for j, task in pending.items():
        state = states.get(task, "")
        if state in QUEUED:
            s = "queued"
        elif state in RUNNING:
            s = "running"
        elif state.startswith("CANCELLED"):
            s = "cancelled"
        elif state in FAILED:
            s = "failed"
        else:
            s = ""
        out[j] = (s, task)
    return out
