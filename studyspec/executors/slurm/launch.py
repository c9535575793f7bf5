"""Queue a plan on SLURM through submitit: the whole DAG at once, one job array per group
of jobs (arrays.py), and return as soon as everything is submitted."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...errors import UserError
from ...plan import Plan
from ...store import Store, write_atomic
from ..base import Launched
from . import locate
from .arrays import Array, dependency, group
from .record import Record
from .settings import KINDS, executor_args, parameters, sbatch_lines, settings
from .state import command, job_states


def max_array_index() -> int:
    out = command(["scontrol", "show", "config"], "scontrol show config").stdout
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    return (int(m.group(1)) if m else 1001) - 1


def test_only(res: dict) -> str | None:
    """Ask SLURM whether a job with these settings could run (`sbatch --test-only` on the batch
    script submitit would write); the error or None."""
    with tempfile.TemporaryDirectory(prefix="studyspec-test-only-") as tmp:
        script = Path(tmp) / "test.sh"
        script.write_text("\n".join(["#!/bin/bash", *sbatch_lines(parameters(res, "test-only", 1)), "true", ""]))
        proc = command(["sbatch", "--test-only", str(script)], "sbatch", check=False)
    if proc.returncode != 0:
        return (proc.stderr or proc.stdout).strip().replace("sbatch: error: ", "")
    return None


BUSY = "Resource temporarily unavailable"  # sbatch's words when slurmctld refuses any new job (EAGAIN)


def check(loaded, plan: Plan, res: dict) -> None:
    """Refuse bad settings before anything is queued, with located errors."""
    kinds_used = sorted({j.kind for j in plan.jobs.values()})
    for kind in kinds_used:
        r = res[kind]
        if kind != "train" and r["nodes"] * r["tasks_per_node"] > 1:
            raise UserError([locate.several_tasks(loaded, kind, f"{kind} jobs ask for {r['nodes']} node(s) x "
                                                  f"{r['tasks_per_node']} task(s): only training jobs run on "
                                                  "several tasks (DDP); a path query runs in one")])
    with ThreadPoolExecutor() as pool:  # the checks wait on slurmctld: ask for every kind at once
        errors = list(pool.map(lambda k: test_only(res[k]), kinds_used))
    busy = next((err for err in errors if err and BUSY in err), None)
    if busy:  # not the settings: slurmctld takes no job now (its job table full, or overloaded)
        raise UserError.single(f"SLURM takes no new job at the moment ({busy}); nothing was queued", file="sbatch",
                               hint="the controller's job table may be full (`scontrol show config | grep "
                                    "MaxJobCount`; finished jobs leave it after MinJobAge) or it is overloaded: "
                                    "launch again in a few minutes")
    problems = [locate.rejected(loaded, k, err) for k, err in zip(kinds_used, errors) if err]
    if problems:
        raise UserError(problems)


def submit(arrays: list[Array], plan: Plan, store: Store, res: dict, record: Record) -> dict:
    """Submit the arrays in order (upstream first) with submitit; the updated record."""
    import submitit

    from .linked import LinkedArrayExecutor
    from .task import ArrayTask, RunJob

    study = plan.study.study
    data = record.read()
    record.folder.mkdir(parents=True, exist_ok=True)
    for a in arrays:
        deps = dependency(arrays, a)
        ex = LinkedArrayExecutor(folder=record.folder, **executor_args(res[a.kind]))
        ex.update_parameters(**parameters(res[a.kind], f"{study}:{a.name}", a.length, deps))
        manifest = None
        try:
            if a.length == 1:  # a plain job for submitit: no array index
                task = RunJob(str(store.run_dir(a.jobs[0])), store.job_record(plan.jobs[a.jobs[0]]))
            else:  # one callable for every task: launch writes its pickle once (linked.py)
                manifest = record.folder / f"tasks-{uuid.uuid4().hex}.json"
                write_atomic(manifest, json.dumps([
                    {"run_dir": str(store.run_dir(a.jobs[i])), "record": store.job_record(plan.jobs[a.jobs[i]])}
                    if i in a.jobs else None for i in range(a.length)]))
                task = ArrayTask(str(manifest))
            with ex.batch():
                jobs = [ex.submit(task) for _ in range(a.length)]
            a.slurm_id = str(jobs[0].job_id).split("_")[0]
        except (submitit.core.utils.FailedJobError, subprocess.SubprocessError, OSError) as e:
            record.write(data)  # keep what was queued recorded, so status and cancel still see it
            msg = str(e).strip().splitlines()
            raise UserError.single(f"sbatch failed: {' '.join(msg[-3:])}", file="sbatch") from None
        data["arrays"].append({"id": a.slurm_id, "name": a.name, "kind": a.kind, "stage": a.stage,
                               "tasks": a.length, "padding": a.padding, "dependency": deps,
                               "manifest": str(manifest) if manifest else None,
                               "submitted": time.time()})
        for i, j in a.jobs.items():
            data["jobs"][j] = {"task": a.task(i), "array": a.slurm_id}
    if arrays:
        record.write(data)
    return data


def launch(loaded, plan: Plan, store: Store, cli: dict | None = None,
           cli_kind: dict[str, dict] | None = None) -> Launched:
    """Submit every job that is neither done nor queued/running; return once submitted."""
    start = time.perf_counter()
    res = {k: settings(plan.study.launch.slurm, k, cli, (cli_kind or {}).get(k)) for k in KINDS}
    check(loaded, plan, res)
    states = job_states(plan, store)
    done = [j for j, (s, _) in states.items() if s == "done"]
    active = {j: t for j, (s, t) in states.items() if s in ("queued", "running")}
    todo = [j for j in plan.jobs if j not in active and states[j][0] != "done"]
    arrays = group(plan, todo, active, max_array_index()) if todo else []
    record = Record(store, plan.study.study)
    submit(arrays, plan, store, res, record)
    seconds = time.perf_counter() - start
    n, padding = sum(len(a.jobs) for a in arrays), sum(a.padding for a in arrays)
    summary = [f"submitted {n} jobs in {len(arrays)} job arrays, already done {len(done)}, already queued or "
               f"running {len(active)}, no-op padding tasks {padding} ({seconds:.2f} s)"]
    for a in arrays:
        deps = dependency(arrays, a)
        summary.append(f"  array {a.slurm_id}: {len(a.jobs)} {a.kind} job(s)"
                       + (f" + {a.padding} no-op" if a.padding else "") + f", stage {a.stage}"
                       + (f", after {' '.join(deps)}" if deps else ""))
    summary.append(f"record: {record.path}; SLURM's output: {record.folder}; each job's log: {store.root}/<job id>/log.txt")
    return Launched(started=todo, done=done, active=list(active), seconds=seconds, summary=summary)
