"""The planner: a checked study -> a DAG of content-addressed jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .hashing import job_id
from .refs import run_order
from .spec import Study, split_ref
from .sweep import Dim, apply, dims, points


@dataclass(frozen=True)
class Job:
    """One runner call. `config` is complete (defaults included) for the runner;
    `key` is the same config without defaults, whose hash is `id`."""

    id: str
    kind: str  # "train" or "path"
    config: dict
    key: dict
    deps: tuple[str, ...]
    stage: int


@dataclass(frozen=True)
class Cell:
    """Where a job's results go in the collected dataset: (run or path name, sweep point)."""

    kind: str
    name: str
    index: dict[str, int]  # dim name -> coordinate index
    job: str


@dataclass
class Plan:
    study: Study
    dims: list[Dim]
    jobs: dict[str, Job] = field(default_factory=dict)  # in dependency order
    cells: list[Cell] = field(default_factory=list)

    def stages(self) -> list[list[Job]]:
        out: list[list[Job]] = []
        for job in self.jobs.values():
            while len(out) <= job.stage:
                out.append([])
            out[job.stage].append(job)
        return out

    def names_of(self, job_id: str) -> list[str]:
        """The run or path names whose cells this job fills (one job can fill several)."""
        if getattr(self, "_names", (None, -1))[1] != len(self.cells):  # (re)index once, not per call
            names: dict[str, set[str]] = {}
            for c in self.cells:
                names.setdefault(c.job, set()).add(c.name)
            self._names = ({j: sorted(n) for j, n in names.items()}, len(self.cells))
        return self._names[0].get(job_id, [])


def _dump(model, defaults: bool) -> Any:
    out = model.model_dump(mode="json", by_alias=True, exclude_defaults=not defaults)
    if not defaults:  # the key: fields saying where (data.root), not what, stay out of ids
        for name in getattr(model, "unhashed", ()):
            out.pop(name, None)
    return out


class _Dumps:
    """_dump of each model object once: sweep points that differ only in their seed share
    their data, model, train, runs and paths objects (sweep.apply), so a plan of 10^5 jobs
    dumps a handful of models, not 10^5. The dicts are shared by the jobs; nothing mutates
    them (_resolve copies the top level it changes)."""

    def __init__(self):
        self.done: dict[tuple[int, bool], tuple[Any, Any]] = {}  # (id, defaults) -> (model, dump)

    def __call__(self, model, defaults: bool) -> Any:
        held = self.done.get((id(model), defaults))
        if held is None or held[0] is not model:
            held = self.done[(id(model), defaults)] = (model, _dump(model, defaults))
        return held[1]


def _resolve(model, ids: dict[str, str], defaults: bool, by_field: bool = False, dump=_dump) -> dict:
    """Dump a regime or path with its references replaced by {job, artifact}
    (`ids`: run name -> job id, or with `by_field`, field name -> job id)."""
    out = dict(dump(model, defaults))
    # discriminators are required fields, kept even by exclude_defaults
    for field_name, ref in model.refs().items():
        run, artifact = split_ref(ref)
        out[field_name] = {"job": ids[field_name if by_field else run], "artifact": artifact}
    return out


def build(study: Study) -> Plan:
    plan = Plan(study=study, dims=dims(study))
    order = run_order(study)
    ids_at: dict[tuple, dict[str, str]] = {}  # sweep point (coordinate indices) -> run -> job id
    deferred = []  # paths are planned once every point's runs are, so endpoints may lie at other points
    dump = _Dumps()
    for point in points(study):
        at = apply(study, point)
        ids: dict[str, str] = {}
        stage: dict[str, int] = {}
        shared = {name: (dump(getattr(at, name), True), dump(getattr(at, name), False))
                  for name in ("data", "model", "train")}
        for name in order:
            regime = at.runs[name]
            deps = tuple(dict.fromkeys(ids[split_ref(r)[0]] for r in regime.refs().values()))
            seed = at.seed + regime.seed_offset  # the runner sees one plain seed
            full = {"kind": "train", "seed": seed, **{k: v[0] for k, v in shared.items()},
                    "regime": _resolve(regime, ids, True, dump=dump)}
            key = {"kind": "train", "seed": seed, **{k: v[1] for k, v in shared.items()},
                   "regime": _resolve(regime, ids, False, dump=dump)}
            for part in (full, key):  # run-level settings the runner sees elsewhere
                part["regime"].pop("seed_offset", None)
                if part["regime"].pop("steps", None) is not None:  # this run's own length of training
                    part["train"] = {**{k: v for k, v in part["train"].items() if k != "epochs"},
                                     "steps": regime.steps}
                if part["regime"].pop("lr", None) is not None:  # this run's own learning rate
                    part["train"] = {**part["train"], "optimizer": {**part["train"].get("optimizer", {}),
                                                                    "lr": regime.lr}}
            if regime.uses_sparsity:
                full["regime"]["sparsity"] = key["regime"]["sparsity"] = at.sparsity
            ids[name] = _add(plan, full, key, deps, 1 + max((plan.jobs[d].stage for d in deps), default=-1))
            stage[name] = plan.jobs[ids[name]].stage
            plan.cells.append(Cell("train", name, point["_index"], ids[name]))
        ids_at[tuple(point["_index"][d.name] for d in plan.dims)] = ids
        deferred.append((point, at, shared))
    for point, at, shared in deferred:
        for name, path in at.paths.items():
            ats = path.ats()
            end_ids = {}  # field -> job id of its run, at its sweep point
            for f, ref in path.refs().items():
                index = dict(point["_index"])
                for dim_name, value in ats.get(f, {}).items():
                    d = next(d for d in plan.dims if d.name == dim_name)
                    index[dim_name] = [v[0] for v in d.values].index(value)
                end_ids[f] = ids_at[tuple(index[d.name] for d in plan.dims)][split_ref(ref)[0]]
            deps = tuple(dict.fromkeys(end_ids.values()))
            seed = at.seed
            pins = [ats.get(f, {}) for f in path.refs()]
            if all("seed" in pin for pin in pins):
                # both ends at given seeds (the seed control): one job, not one per seed of the sweep
                seed = pins[0]["seed"]
            full = {"kind": "path", "seed": seed, "data": shared["data"][0],
                    "model": shared["model"][0], "path": _resolve(path, end_ids, True, by_field=True, dump=dump)}
            key = {"kind": "path", "seed": seed, "data": shared["data"][1],
                   "model": shared["model"][1], "path": _resolve(path, end_ids, False, by_field=True, dump=dump)}
            pid = _add(plan, full, key, deps, 1 + max(plan.jobs[d].stage for d in deps))
            plan.cells.append(Cell("path", name, point["_index"], pid))
    return plan


def _add(plan: Plan, full: dict, key: dict, deps: tuple, stage: int) -> str:
    jid = job_id(key)
    if jid not in plan.jobs:
        plan.jobs[jid] = Job(jid, full["kind"], full, key, deps, stage)
    return jid
