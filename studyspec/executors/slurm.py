"""Run a plan on SLURM: the whole DAG queued at once, one job array per group of
independent jobs, and `launch` returns as soon as it is submitted.

Exact per-task dependencies with job arrays. SLURM gives one `--dependency` to a
whole array, but `aftercorr:A` makes task i of an array wait for task i of array A
(and with `--kill-on-invalid-dep=yes`, cancels exactly task i if A_i fails). So
every job gets an array index shared with every job it is connected to (its
connected component in the DAG of jobs to submit), and the jobs of a stage are
split into arrays such that, in each array, every task's upstream jobs sit in
the same upstream arrays at the same index:

    array key = (stage, kind, upstream arrays, upstream jobs already queued, rank)

where `rank` tells apart jobs of one component with the same key (scratch and
lottery at one sweep point). A quick-start-like study becomes one array per run
or path name. Upstream jobs queued by an earlier launch are waited for with plain
`afterok:<array>_<index>`. Each task runs the worker (`runners.worker`, by name)
(the same worker as the local executor), appending to RUN_DIR/log.txt.

Why not submitit's job arrays: they always number tasks 0..n-1 and carry one
dependency for the whole array, so exact per-job dependencies would take one
`sbatch` per dependent job, as slow as submitting every job alone. We use the
SLURM command line (sbatch, squeue, sacct, scancel, scontrol) directly.

Requeue and time limits: tasks are submitted with `--requeue --open-mode=append`
and `--signal=B:USR1@S`; on USR1 (S seconds before the time limit) the batch
script requeues its own task. A requeued task (preemption, `scontrol requeue`,
the time limit) runs the worker again, and the train runner resumes from its
resume checkpoint (runners/checkpoint.py), not from step 0.

Several tasks (nodes x tasks_per_node > 1, training jobs only): the batch script starts
the worker once per task with `srun --kill-on-bad-exit=1 --label`; the tasks train one
model with torch.distributed, set up from the SLURM environment (runners/distributed.py),
rank 0 holds the job's lock and writes every file. A single-task job runs the worker
directly, as before. Path jobs always run in one task.

The record `<store>/_slurm/<study>.json` (studyspec.store.Store) maps each job id
to its SLURM task id `<array job id>_<index>`; status, cancel and relaunch read it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem, UserError
from ..plan import Plan
from ..store import WORKER, Store

DEFAULTS = {"time": "60", "nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 1}
FIELDS = ("partition", "account", "qos", "time", "nodes", "tasks_per_node", "gpus_per_node",
          "cpus_per_task", "mem", "constraint", "array_parallelism", "extra", "setup", "python")
KINDS = ("train", "path")

QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "CONFIGURING",
          "RESIZING", "SIGNALING", "STAGE_OUT"}
RUNNING = {"RUNNING", "COMPLETING"}
FAILED = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "COMPLETED"}

SCRIPT = """\
#!/bin/bash
# Written by studyspec (executors/slurm.py): one array task = one job of the study.
# usage: sbatch --array=... job-<kind>.sh TASKS_FILE
# (TASKS_FILE lines: <array index> TAB <run dir> TAB <job.json content on one line>)
set -u
RUN_DIR=$(awk -F'\t' -v i="$SLURM_ARRAY_TASK_ID" '$1 == i {{print $2; exit}}' "$1")
[ -n "$RUN_DIR" ] || {{ echo "no job for array index $SLURM_ARRAY_TASK_ID in $1" >&2; exit 3; }}
mkdir -p "$RUN_DIR"
TASK="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
export OMP_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}" MKL_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}"
# setup (launch.slurm setup of this job kind)
{setup}
echo "slurm task $TASK (job $SLURM_JOB_ID) on $(hostname), restart ${{SLURM_RESTART_COUNT:-0}}" >> "$RUN_DIR/log.txt"
# USR1 comes before the time limit (--signal): put this task back in the queue; the
# worker is stopped by SLURM and the next run resumes from the latest checkpoint.
trap 'echo "time limit near: requeueing $TASK" >> "$RUN_DIR/log.txt"; scontrol requeue "$TASK"' USR1
# writes RUN_DIR/job.json from TASKS_FILE, then runs the shared worker (runners.worker.run);
# a job of several tasks (DDP) runs one worker per task with srun, its lines labelled by rank
RUN=()
[ "${{SLURM_NTASKS:-1}}" -gt 1 ] && RUN=(srun --kill-on-bad-exit=1 --label --cpus-per-task="${{SLURM_CPUS_PER_TASK:-1}}")
${{RUN[@]+"${{RUN[@]}}"}} {python} -m studyspec.executors.slurm "$1" "$SLURM_ARRAY_TASK_ID" >> "$RUN_DIR/log.txt" 2>&1 &
PID=$!
while :; do
    wait "$PID"; RC=$?
    kill -0 "$PID" 2>/dev/null || break   # wait returns early when a trapped signal arrives
done
exit "$RC"
"""


# --- settings ----------------------------------------------------------------------

def settings(launch_slurm, kind: str, cli: dict | None = None, cli_kind: dict | None = None) -> dict:
    """Resolved resources of one job kind: defaults < spec launch.slurm < spec launch.slurm.<kind>
    < command-line options < command-line options for <kind>; `setup` lines add up in that order."""
    out = {**dict.fromkeys(FIELDS), **DEFAULTS, "extra": {}, "setup": []}
    layers = [launch_slurm.model_dump(include=set(FIELDS)),
              getattr(launch_slurm, kind).model_dump(include=set(FIELDS)), cli or {}, cli_kind or {}]
    for layer in layers:
        for k, v in layer.items():
            if k == "extra":
                out["extra"] = {**out["extra"], **(v or {})}
            elif k == "setup":
                out["setup"] = [*out["setup"], *(v or [])]
            elif v is not None:
                out[k] = v
    return out


def minutes(limit: str) -> float:
    """SLURM time limit -> minutes."""
    limit = str(limit)
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # D-HH[:MM[:SS]]
        parts += [0] * (3 - len(parts))
        return int(days) * 1440 + parts[0] * 60 + parts[1] + parts[2] / 60
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:  # MM:SS
        return parts[0] + parts[1] / 60
    return parts[0] * 60 + parts[1] + parts[2] / 60


def sbatch_options(res: dict) -> list[str]:
    opts = [f"--time={res['time']}", f"--nodes={res['nodes']}", f"--ntasks-per-node={res['tasks_per_node']}",
            f"--cpus-per-task={res['cpus_per_task']}"]
    for key, flag in (("partition", "partition"), ("account", "account"), ("qos", "qos"),
                      ("mem", "mem"), ("constraint", "constraint")):
        if res.get(key):
            opts.append(f"--{flag}={res[key]}")
    if res["gpus_per_node"]:
        opts.append(f"--gpus-per-node={res['gpus_per_node']}")
    for key, value in res["extra"].items():
        flag = "--" + key.lstrip("-").replace("_", "-")
        if value is True:
            opts.append(flag)
        elif value is not False:
            opts.append(f"{flag}={value}")
    # warn S seconds before the time limit, so the task requeues itself (see SCRIPT)
    warn = 120 if minutes(res["time"]) >= 10 else max(10, int(minutes(res["time"]) * 60 / 5))
    opts.append(f"--signal=B:USR1@{warn}")
    return opts


# --- SLURM commands ------------------------------------------------------------------

def _cmd(args: list[str], what: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which(args[0]) is None:
        raise UserError.single(f"`{args[0]}` is not on PATH: the slurm executor needs the SLURM client commands",
                               file="studyspec", hint="run on a cluster's login node, or start a local "
                               "cluster: bash studyspec/local_slurm/start.sh DIR && source DIR/env.sh")
    proc = subprocess.run(args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        hint = None
        if "fetch_config" in msg or "DNS SRV" in msg:
            hint = "SLURM_CONF is not set: source DIR/env.sh of your local cluster (or fix the cluster's config)"
        raise UserError.single(f"{what} failed: {msg}", file=" ".join(args[:2]), hint=hint)
    return proc


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


def active_tasks() -> dict[str, str]:
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
        _cmd(["squeue", "--me", "-h"], "squeue")  # raises the located error
    live = {}
    for line in proc.stdout.splitlines():
        array, tasks, state, job = (line.split("|") + ["", "", "", ""])[:4]
        if tasks in ("N/A", ""):
            live[job.strip()] = state
        else:
            live.update({f"{array}_{i}": state for i in expand(tasks)})
    return live


def accounting(array_ids: list[str]) -> dict[str, str]:
    """SLURM task id -> final state from sacct (empty if accounting is unavailable)."""
    if not array_ids or shutil.which("sacct") is None:
        return {}
    proc = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(array_ids), "-o", "JobID,State"],
                          capture_output=True, text=True)
    states = {}
    for line in proc.stdout.splitlines():
        task, _, state = line.partition("|")
        state = state.split()[0] if state else state  # "CANCELLED by 0"
        array, _, tasks = task.partition("_")
        if tasks.startswith("["):  # tasks still in the array's meta record: 12_[2-3,7%4]
            states.update({f"{array}_{i}": state for i in expand(tasks.strip("[]"))})
        else:
            states[task] = state
    return states


def test_only(res: dict) -> str | None:
    """Ask SLURM whether a job with these settings could run (`sbatch --test-only`); the error or None."""
    proc = _cmd(["sbatch", "--test-only", *sbatch_options(res), "--array=0", "--wrap=true"], "sbatch",
                check=False)
    if proc.returncode != 0:
        return (proc.stderr or proc.stdout).strip().replace("sbatch: error: ", "")
    return None


# --- grouping -----------------------------------------------------------------------

@dataclass
class Array:
    key: tuple
    kind: str
    stage: int
    tasks: list[tuple[int, str]] = field(default_factory=list)  # (array index, job id)
    corr: list[int] = field(default_factory=list)  # positions of upstream arrays (aftercorr)
    after: list[str] = field(default_factory=list)  # upstream SLURM task ids queued earlier (afterok)
    slurm_id: str | None = None

    @property
    def name(self) -> str:
        return f"s{self.stage}-{self.kind}-{self.key[-1]}"


def group(plan: Plan, todo: list[str], active: dict[str, str], max_index: int = 1000) -> list[Array]:
    """Split the jobs to submit into arrays with exact per-task dependencies (see the module doc).
    `active`: job id -> SLURM task id of upstream jobs already queued or running."""
    todo_set = set(todo)
    parent = {j: j for j in todo}

    def find(j):
        while parent[j] != j:
            parent[j] = parent[parent[j]]
            j = parent[j]
        return j

    for j in todo:
        for d in plan.jobs[j].deps:
            if d in todo_set:
                parent[find(j)] = find(d)
    comp: dict[str, int] = {}
    arrays: list[Array] = []
    by_key: dict[tuple, int] = {}
    where: dict[str, int] = {}  # job id -> position of its array
    used: list[set[int]] = []  # array indices taken, per array
    for j in todo:  # plan order: upstream jobs come first
        job = plan.jobs[j]
        c = comp.setdefault(find(j), len(comp))
        block, idx = divmod(c, max_index + 1)
        ups = tuple(sorted({where[d] for d in job.deps if d in todo_set}))
        ext = tuple(sorted(active[d] for d in job.deps if d in active))
        rank = 0
        while (key := (block, job.stage, job.kind, ups, ext, rank)) in by_key and idx in used[by_key[key]]:
            rank += 1
        if key not in by_key:
            by_key[key] = len(arrays)
            arrays.append(Array(key, job.kind, job.stage, corr=list(ups), after=list(ext)))
            used.append(set())
        pos = by_key[key]
        arrays[pos].tasks.append((idx, j))
        used[pos].add(idx)
        where[j] = pos
    return arrays


def ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8'."""
    out, xs = [], sorted(indices)
    i = 0
    while i < len(xs):
        k = i
        while k + 1 < len(xs) and xs[k + 1] == xs[k] + 1:
            k += 1
        out.append(str(xs[i]) if k == i else f"{xs[i]}-{xs[k]}")
        i = k + 1
    return ",".join(out)


# --- launch, status, cancel ---------------------------------------------------------------

@dataclass
class Submitted:
    arrays: list[Array]
    done: list[str]
    active: list[str]  # already queued or running: left alone
    record: Path
    seconds: float


def max_array_index() -> int:
    out = _cmd(["scontrol", "show", "config"], "scontrol show config").stdout
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    return (int(m.group(1)) if m else 1001) - 1


def job_states(plan: Plan, store: Store) -> dict[str, tuple[str, str | None]]:
    """job id -> (state, SLURM task id or None); state is done, queued, running, failed,
    cancelled, or '' when SLURM knows nothing of it (the caller decides)."""
    record = store.read_slurm(plan.study.study)["jobs"]
    out: dict[str, tuple[str, str | None]] = {}
    pending = {}
    for j in plan.jobs:
        task = record.get(j, {}).get("task")
        if store.is_done(j):
            out[j] = ("done", task)
        elif task:
            pending[j] = task
        else:
            out[j] = ("", None)
    if pending:
        live = active_tasks()
        arrays = sorted({t.split("_")[0] for j, t in pending.items() if t not in live})
        acct = accounting(arrays)
        for j, task in pending.items():
            state = live.get(task) or acct.get(task, "")
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


def _locate_bad(loaded, kind: str, message: str) -> Problem:
    """Point a rejected launch setting at its place in the spec when it came from there."""
    field_of = next((f for f, words in (("partition", ("partition",)), ("account", ("account",)),
                                        ("qos", ("qos",)), ("time", ("time limit",)),
                                        ("gpus_per_node", ("gres", "gpu")), ("constraint", ("feature", "constraint")))
                     if any(w in message.lower() for w in words)), None)
    paths = []
    if field_of:
        paths = [("launch", "slurm", kind, field_of), ("launch", "slurm", field_of)]
    paths += [("launch", "slurm", kind), ("launch", "slurm"), ("launch",)]
    for path in paths:
        pos, _ = loaded.source.position(path)
        if pos and _has(loaded.source.data, path):
            return loaded.problem(path, f"SLURM rejects the {kind} jobs' settings: {message}",
                                  hint=_hint(field_of))
    return Problem(f"SLURM rejects the {kind} jobs' settings: {message}", file=loaded.source.file,
                   where=f"launch.slurm.{kind}", hint=_hint(field_of))


def _locate_tasks(loaded, kind: str, message: str) -> Problem:
    """Point a refused nodes/tasks_per_node setting at its place in the spec."""
    hint = f"set nodes and tasks_per_node under launch.slurm.train, or launch.slurm.{kind}: {{nodes: 1, tasks_per_node: 1}}"
    for path in [("launch", "slurm", kind, "tasks_per_node"), ("launch", "slurm", kind, "nodes"),
                 ("launch", "slurm", "tasks_per_node"), ("launch", "slurm", "nodes"), ("launch", "slurm")]:
        if _has(loaded.source.data, path):
            return loaded.problem(path, message, hint=hint)
    return Problem(message, file="command line", where=f"launch setting {kind}", hint=hint)


def _has(data, path) -> bool:
    for p in path:
        if not isinstance(data, dict) or p not in data:
            return False
        data = data[p]
    return True


def _hint(field_of: str | None) -> str:
    if field_of == "partition":
        parts = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
        return f"partitions here: {', '.join(p.rstrip('*') for p in parts) or '(none)'}"
    return ("check the settings against `sinfo -o '%P %c %m %G %l'` (partitions, CPUs, memory, GPUs, "
            "time limits); override them with studyspec launch --partition/--cpus-per-task/--mem/--time ...")


def launch(loaded, plan: Plan, store: Store, cli: dict | None = None,
           cli_kind: dict[str, dict] | None = None) -> Submitted:
    """Submit every job that is neither done nor queued/running; return once submitted."""
    start = time.perf_counter()
    study = plan.study
    res = {k: settings(study.launch.slurm, k, cli, (cli_kind or {}).get(k)) for k in KINDS}
    kinds_used = sorted({j.kind for j in plan.jobs.values()})
    for kind in kinds_used:
        r = res[kind]
        if kind != "train" and r["nodes"] * r["tasks_per_node"] > 1:
            raise UserError([_locate_tasks(loaded, kind, f"{kind} jobs ask for {r['nodes']} node(s) x "
                                           f"{r['tasks_per_node']} task(s): only training jobs run on several "
                                           "tasks (DDP); a path query runs in one")])
    # bad settings are refused before anything is queued
    problems = [_locate_bad(loaded, k, err) for k in kinds_used if (err := test_only(res[k]))]
    if problems:
        raise UserError(problems)

    states = job_states(plan, store)
    done = [j for j, (s, _) in states.items() if s == "done"]
    active = {j: t for j, (s, t) in states.items() if s in ("queued", "running")}
    todo = [j for j in plan.jobs if j not in active and states[j][0] != "done"]
    arrays = group(plan, todo, active, max_array_index()) if todo else []

    folder = store.slurm_dir(study.study)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    scripts = {}
    for kind in KINDS:  # one batch script per job kind: its setup lines and its python command
        scripts[kind] = folder / f"job-{kind}.sh"
        scripts[kind].write_text(SCRIPT.format(python=res[kind]["python"] or shlex.quote(sys.executable),
                                               setup="\n".join(res[kind]["setup"])))
        scripts[kind].chmod(0o755)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record = store.read_slurm(study.study)
    for n, arr in enumerate(arrays):
        tasks = folder / f"{stamp}-{n:03d}-{arr.name}.tasks"
        # job.json is written by the task itself: 1,000s of small files at launch are slow
        tasks.write_text("".join(f"{i}\t{store.run_dir(j)}\t{json.dumps(store.job_record(plan.jobs[j]))}\n"
                                 for i, j in arr.tasks))
        r = res[arr.kind]
        deps = [f"aftercorr:{arrays[p].slurm_id}" for p in arr.corr] + [f"afterok:{t}" for t in arr.after]
        spec = ranges([i for i, _ in arr.tasks]) + (f"%{r['array_parallelism']}" if r["array_parallelism"] else "")
        args = ["sbatch", "--parsable", f"--array={spec}", f"--job-name={study.study}:{arr.name}",
                f"--output={folder / 'logs' / '%A_%a.out'}", "--open-mode=append", "--requeue",
                f"--chdir={os.getcwd()}", *sbatch_options(r)]
        if deps:
            args += [f"--dependency={','.join(deps)}", "--kill-on-invalid-dep=yes"]
        try:
            arr.slurm_id = _cmd([*args, str(scripts[arr.kind]), str(tasks)], "sbatch").stdout.strip().split(";")[0]
        except UserError:
            # keep what was queued recorded, so status and cancel still see it
            store.write_slurm(study.study, record)
            raise
        record["arrays"].append({"id": arr.slurm_id, "name": arr.name, "kind": arr.kind, "stage": arr.stage,
                                 "tasks": len(arr.tasks), "dependency": deps, "file": str(tasks),
                                 "submitted": time.time()})
        for i, j in arr.tasks:
            record["jobs"][j] = {"task": f"{arr.slurm_id}_{i}", "array": arr.slurm_id}
    if arrays:
        store.write_slurm(study.study, record)
    return Submitted(arrays, done, list(active), store.slurm_record(study.study), time.perf_counter() - start)


def cancel(plan: Plan, store: Store) -> list[str]:
    """scancel this study's queued and running jobs; their job ids."""
    states = job_states(plan, store)
    victims = {j: t for j, (s, t) in states.items() if s in ("queued", "running")}
    tasks = sorted(set(victims.values()))
    for i in range(0, len(tasks), 500):
        _cmd(["scancel", *tasks[i:i + 500]], "scancel")
    return list(victims)


def wait(plan: Plan, store: Store, poll: float = 2.0, timeout: float | None = None) -> dict:
    """Block until no job of the plan is queued or running; the final states."""
    deadline = None if timeout is None else time.time() + timeout
    while True:
        states = job_states(plan, store)
        if not any(s in ("queued", "running") for s, _ in states.values()):
            # sacct lags behind squeue: a task that just left the queue may not be accounted yet
            if all(s or t is None for s, t in states.values()):
                return states
        if deadline is not None and time.time() > deadline:
            return states
        time.sleep(poll)


def overrides(options: dict, sets: list[str] | None = None) -> tuple[dict, dict[str, dict]]:
    """Command-line launch settings -> (for every kind, per kind). `options`: field -> value or
    None (the explicit --partition ... options); `sets`: KEY=VALUE strings where KEY is a field,
    `train.FIELD`, `path.FIELD` or `[train.|path.]extra.OPTION` (an sbatch option)."""
    from pydantic import ValidationError

    from ..spec.study import SlurmResources

    common = {k: v for k, v in options.items() if v is not None}
    per_kind: dict[str, dict] = {k: {} for k in KINDS}
    for item in sets or []:
        key, eq, value = item.partition("=")
        parts = key.strip().split(".")
        target = common
        if parts[0] in KINDS:
            target, parts = per_kind[parts[0]], parts[1:]
        if not eq or not parts or (parts[0] == "extra") != (len(parts) == 2) or len(parts) > 2:
            raise UserError.single(f"--slurm {item!r}: expected KEY=VALUE with KEY one of "
                                   f"{', '.join(f for f in FIELDS if f != 'extra')}, extra.OPTION, "
                                   "optionally prefixed by train. or path.", file="command line",
                                   hint="e.g. --slurm train.mem=4G --slurm extra.exclude=node7 "
                                   "--slurm 'setup=module load cuda' --slurm 'python=apptainer exec --nv x.sif python'")
        v: object = value
        if parts[0] == "setup":  # a shell line, as written; repeat --slurm setup=... for more lines
            target.setdefault("setup", []).append(value)
            continue
        if parts[0] == "python":
            pass
        elif value.lower() in ("true", "false"):
            v = value.lower() == "true"
        elif value.isdigit():
            v = int(value)
        if parts[0] == "extra":
            target.setdefault("extra", {})[parts[1]] = v
        else:
            target[parts[0]] = v
    for name, layer in [("", common), *((k + ".", per_kind[k]) for k in KINDS)]:
        try:
            SlurmResources.model_validate(layer)
        except ValidationError as e:
            err = e.errors()[0]
            where = name + ".".join(str(x) for x in err["loc"])
            raise UserError.single(err["msg"].removeprefix("Value error, "), file="command line",
                                   where=f"launch setting {where}") from None
    return common, per_kind


def run_task(tasks_file: str, index: int) -> None:
    """Inside a SLURM array task: write the job's job.json, then run the shared worker."""
    run = importlib.import_module(WORKER).run  # by name: the engine never imports runners

    with open(tasks_file) as f:
        for line in f:
            i, run_dir, record = line.rstrip("\n").split("\t", 2)
            if int(i) == index:
                break
        else:
            sys.exit(f"no job for array index {index} in {tasks_file}")
    run(Store(Path(run_dir).parent).write_job(json.loads(record)))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m studyspec.executors.slurm TASKS_FILE ARRAY_INDEX")
    run_task(sys.argv[1], int(sys.argv[2]))
