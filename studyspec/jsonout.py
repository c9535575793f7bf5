"""Machine-readable output of `validate`, `plan` and `status` (`--json`).

The shape is documented, with its JSON Schema, in docs/json.md; `VERSION` changes when a
field is renamed or removed (adding a field keeps it). tests/test_json.py validates the
output against the schema in the doc.
"""

from __future__ import annotations

import json

VERSION = 1


def _value(v):
    return v.item() if hasattr(v, "item") else v


def dims(plan_or_dims) -> list[dict]:
    out = []
    for d in plan_or_dims:
        shown = [(k, a) for k, a in enumerate(d.axes) if not a.startswith("_")]  # not a random search's index
        out.append({"name": d.name, "axes": [a for _, a in shown],
                    "values": {a: [_value(v[k]) for v in d.values] for k, a in shown},
                    "size": len(d.values)})
    return out


def _point(plan, index: dict[str, int]) -> dict:
    by_name = {d.name: d for d in plan.dims}
    return {name: _value(by_name[name].values[i][0]) for name, i in index.items()}


def validated(spec: str, loaded, overrides: list[str] | None) -> dict:
    from .sweep import dims as sweep_dims

    s = loaded.study
    return {"format": "studyspec.validate", "version": VERSION, "ok": True, "spec": spec,
            "overrides": list(overrides or []), "study": s.study, "runs": list(s.runs), "paths": list(s.paths),
            "dims": dims(sweep_dims(s)), "errors": []}


def invalid(spec: str, error, overrides: list[str] | None) -> dict:
    return {"format": "studyspec.validate", "version": VERSION, "ok": False, "spec": spec,
            "overrides": list(overrides or []),
            "errors": [{"file": p.file, "line": p.line, "col": p.col, "where": p.where, "message": p.message,
                        "hint": p.hint} for p in error.problems]}


def jobs(command: str, spec: str, plan, store, states: dict[str, str], tasks: dict[str, str | None],
         overrides: list[str] | None) -> dict:
    """The plan (command "plan") or its state (command "status") as one JSON object.
    `states`: job id -> state; `tasks`: job id -> SLURM task id (ARRAY_INDEX) or None."""
    from .estimate import gpu_hours, job_seconds

    cells: dict[str, list] = {}
    for c in plan.cells:
        cells.setdefault(c.job, []).append({"name": c.name, "point": _point(plan, c.index)})
    out_jobs = []
    for jid, job in plan.jobs.items():
        where = cells.get(jid, [])
        out_jobs.append({
            "id": jid, "kind": job.kind, "name": where[0]["name"] if where else None,
            "point": where[0]["point"] if where else {}, "cells": where, "stage": job.stage,
            "deps": list(job.deps), "state": states[jid], "slurm_task": tasks.get(jid),
            "log": str(store.log(jid)), "estimate_gpu_hours": job_seconds(job) / 3600})
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s] = counts.get(s, 0) + 1
    stages = []
    for n, js in enumerate(plan.stages()):
        kinds: dict[str, int] = {}
        for j in js:
            kinds[j.kind] = kinds.get(j.kind, 0) + 1
        stages.append({"stage": n, "jobs": len(js), "kinds": kinds,
                       "done": sum(states[j.id] == "done" for j in js)})
    return {"format": f"studyspec.{command}", "version": VERSION, "spec": spec,
            "overrides": list(overrides or []), "study": plan.study.study, "store": str(store.root),
            "dims": dims(plan.dims), "stages": stages, "jobs": out_jobs, "counts": counts,
            "estimate_gpu_hours": gpu_hours(plan)}


def dump(obj: dict) -> str:
    return json.dumps(obj, indent=2, default=str)
