"""The planner: a checked study -> a DAG of content-addressed jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .hashing import job_id
from .refs import run_order
from .spec import Study, split_ref
from .spec import jobs
from .spec.jobs import ArtifactRef, PathJob, TrainJob
from .sweep import Dim, apply, dims, points


@dataclass(frozen=True)
class Job:
    """One runner call: ``spec`` is the typed job (studyspec.spec.jobs: a TrainJob or a
    PathJob), ``key`` its dump without defaults, whose hash is ``id``."""

    id: str
    spec: TrainJob | PathJob
    key: dict
    deps: tuple[str, ...]
    stage: int

    @property
    def kind(self) -> str:  # "train" or "path"
        return self.spec.kind

    @cached_property
    def config(self) -> dict:
        """job.json's config: the typed job's dump, defaults included (made when first asked)."""
        return jobs.config(self.spec)


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


def _resolve(model, ids: dict[str, str], by_field: bool = False, **extra):
    """The job class of a regime or path (studyspec.spec.jobs) with its references replaced
    by ArtifactRefs (`ids`: run name -> job id, or with `by_field`, field name -> job id).
    Built without validating again (the spec model is valid, the refs are the planner's)."""
    values = dict(model.__dict__)
    refs = model.refs()
    for field_name in model.ref_fields:
        ref = refs.get(type(model).model_fields[field_name].alias or field_name)
        if ref is not None:
            run, artifact = split_ref(ref)
            job = ids[(type(model).model_fields[field_name].alias or field_name) if by_field else run]
            values[field_name] = ArtifactRef.model_construct(job=job, artifact=artifact)
    return jobs.job_class(type(model)).model_construct(**values, **extra)


def _run_train(train, regime, key: dict):
    """The train section a run trains with, and its key: the study's, with the run's own
    length of training (``steps``, replacing train.steps or train.epochs) and learning rate."""
    if regime.steps is None and regime.lr is None:
        return train, key
    update = {}
    if regime.steps is not None:
        update.update(steps=regime.steps, epochs=None)
    if regime.lr is not None:
        update["optimizer"] = train.optimizer.model_copy(update={"lr": regime.lr})
    train = train.model_copy(update=update)
    key = jobs.section_key(train)
    if regime.lr is not None:  # a run's own lr is in its id even when it equals the default (ids as introduced)
        key["optimizer"] = {**key.get("optimizer", {}), "lr": regime.lr}
    return train, key


def build(study: Study) -> Plan:
    plan = Plan(study=study, dims=dims(study))
    order = run_order(study)
    ids_at: dict[tuple, dict[str, str]] = {}  # sweep point (coordinate indices) -> run -> job id
    deferred = []  # paths are planned once every point's runs are, so endpoints may lie at other points
    dumped: dict[int, tuple] = {}  # id(section object) -> (object, its key part)
    for point in points(study):
        at = apply(study, point)
        ids: dict[str, str] = {}
        # the shared sections' parts of the keys: sweep points that differ only in their seed
        # share these objects (sweep.apply), so each is dumped once, not once per point
        shared = {}
        for name in ("data", "model", "train"):
            obj = getattr(at, name)
            held = dumped.get(id(obj))
            if held is None or held[0] is not obj:
                held = dumped[id(obj)] = (obj, jobs.section_key(obj))
            shared[name] = held[1]
        for name in order:
            regime = at.runs[name]
            deps = tuple(dict.fromkeys(ids[split_ref(r)[0]] for r in regime.refs().values()))
            seed = at.seed + regime.seed_offset  # the runner sees one plain seed
            resolved = _resolve(regime, ids, sparsity=at.sparsity if regime.uses_sparsity else None)
            train, train_key = _run_train(at.train, regime, shared["train"])
            spec = TrainJob.model_construct(kind="train", seed=seed, data=at.data, model=at.model, train=train,
                                            regime=resolved)
            key = {"kind": "train", "seed": seed, **shared, "train": train_key, "regime": jobs.section_key(resolved)}
            ids[name] = _add(plan, spec, key, deps, 1 + max((plan.jobs[d].stage for d in deps), default=-1))
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
            resolved = _resolve(path, end_ids, by_field=True)
            spec = PathJob.model_construct(kind="path", seed=seed, data=at.data, model=at.model, path=resolved)
            key = {"kind": "path", "seed": seed, "data": shared["data"], "model": shared["model"],
                   "path": jobs.section_key(resolved)}
            pid = _add(plan, spec, key, deps, 1 + max(plan.jobs[d].stage for d in deps))
            plan.cells.append(Cell("path", name, point["_index"], pid))
    return plan


def _add(plan: Plan, spec, key: dict, deps: tuple, stage: int) -> str:
    jid = job_id(key)
    if jid not in plan.jobs:
        plan.jobs[jid] = Job(jid, spec, key, deps, stage)
    return jid
