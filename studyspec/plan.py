"""The planner: a checked study -> a DAG of content-addressed jobs."""

from __future__ import annotations

import gc
import itertools
import operator
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from .hashing import canonical, digest, job_id
from .refs import run_order
from .spec import Study, split_ref
from .spec import jobs
from .spec.base import MAX_SEED
from .spec.jobs import ArtifactRef, PathJob, TrainJob
from .sweep import Dim, dims, split


class Job:
    """One runner call: its ``id``, the ids of the jobs it needs first (``deps``) and its
    ``stage``. The rest is made when first asked, from what the job shares with the other
    jobs of its run (or path) across seeds (``template``) and its own ``values`` (its seed,
    then the ids of the jobs it references): ``spec`` is the typed job
    (studyspec.spec.jobs: a TrainJob or a PathJob), ``key`` its dump without defaults, whose
    hash is ``id``, ``config`` job.json's config."""

    __slots__ = ("id", "kind", "deps", "stage", "template", "values", "_spec", "_key", "_config")  # the last 3 made when asked

    def __init__(self, id: str, deps: tuple[str, ...], stage: int, template: "Template", values: tuple):
        self.id, self.deps, self.stage, self.template, self.values = id, deps, stage, template, values
        self.kind = template.kind  # "train" or "path"

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, stage={self.stage}, deps={self.deps!r})"

    @property
    def spec(self) -> TrainJob | PathJob:
        try:
            return self._spec
        except AttributeError:
            self._spec = self.template.spec(*self.values)
            return self._spec

    @property
    def key(self) -> dict:
        try:
            return self._key
        except AttributeError:
            self._key = self.template.key(*self.values)
            return self._key

    @property
    def config(self) -> dict:
        """job.json's config: the typed job's dump, defaults included."""
        try:
            return self._config
        except AttributeError:
            self._config = jobs.config(self.spec)
            return self._config


class Cell(NamedTuple):
    """Where a job's results go in the collected dataset: (run or path name, sweep point).
    (A named tuple: a plan makes one per job and sweep point, and a tuple is made fastest.)"""

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
        return self.names().get(job_id, [])

    def names(self) -> dict[str, list[str]]:
        """job id -> names_of(job id), for every job with a cell."""
        if getattr(self, "_names", (None, -1))[1] != len(self.cells):  # (re)index once, not per call
            names: dict[str, list[str]] = {}
            several = set()
            for c in self.cells:
                held = names.get(c.job)
                if held is None:
                    names[c.job] = [c.name]
                elif c.name not in held:
                    held.append(c.name)
                    several.add(c.job)
            for j in several:
                names[j].sort()
            self._names = (names, len(self.cells))
        return self._names[0]


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


# Stand-ins for a job's own values in a template's key: control characters, which spec
# strings do not hold in practice; a template checks its format against a key made without
# them before trusting it (Template.job_id)
SEED = "\x00studyspec:seed\x00"
REF = "\x00studyspec:ref{}\x00"


class Template:
    """What the jobs of one run (or path) share at the sweep points that differ only in
    their seed: everything but the job's own values (its seed, then the ids of the jobs its
    references name, in the order of ``names``: run names, or for a path its end fields).

    ``key(*values)`` and ``spec(*values)`` make a job's key and typed job. The id is the
    hash of the key's canonical JSON; since only the values differ from job to job, the
    template makes that JSON once with stand-ins for them and fills each job's values into
    it (``format % pick(values)``), checked against the JSON of the first job's key made in
    full."""

    __slots__ = ("kind", "names", "offset", "key", "spec", "format", "pick", "_first", "_memo")

    def __init__(self, kind: str, names: tuple[str, ...], key, spec, offset: int = 0):
        self.kind, self.names, self.key, self.spec = kind, names, key, spec
        self.offset = offset  # added to the sweep point's seed (a run's seed_offset)
        # the canonical JSON of a job's key with %s where its values go (in the order `pick`
        # takes them from the values): None until the second job (made then, and checked
        # against the first job's key), False if it does not reproduce that key
        self.format: str | None | bool = None
        self.pick = None
        self._first = None  # (values, canonical JSON of the key) of the first job
        self._memo: dict = {}

    def job_id(self, values: tuple) -> str:
        if self.format is None:
            if self._first is None:
                self._first = (values, canonical(self.key(*values)))
                return digest(self._first[1])
            self._make_format()
        if self.format:
            return digest(self.format % self.pick(values))
        return job_id(self.key(*values))

    def _make_format(self) -> None:
        stand_ins = [SEED, *(REF.format(i) for i in range(len(self.names)))]
        text = canonical(self.key(*stand_ins)).replace("%", "%%")
        encoded = {canonical(s): i for i, s in enumerate(stand_ins)}  # a JSON string, quotes included
        order = []

        def fill(m):
            i = encoded[m.group(0)]
            order.append(i)
            return "%s" if i == 0 else '"%s"'  # the seed is a number, an id a string

        fmt = re.sub("|".join(map(re.escape, encoded)), fill, text)
        values, first = self._first
        pick = operator.itemgetter(*order) if order else None
        if pick is None or fmt % pick(values) != first:
            self.format = False
            return
        self.format, self.pick = fmt, pick

    def memo(self, name: str, make):
        """``make()``, once per template: for what is the same for all its jobs (the cost estimate)."""
        if name not in self._memo:
            self._memo[name] = make()
        return self._memo[name]


def _train_template(at: Study, name: str, keys) -> Template:
    regime = at.runs[name]
    names = tuple(dict.fromkeys(split_ref(r)[0] for r in regime.refs().values()))
    sparsity = at.sparsity if regime.uses_sparsity else None
    train, train_key = _run_train(at.train, regime, keys(at.train))
    data, model, data_key, model_key = at.data, at.model, keys(at.data), keys(at.model)

    def key(seed, *ids):
        resolved = _resolve(regime, dict(zip(names, ids)), sparsity=sparsity)
        return {"kind": "train", "seed": seed, "data": data_key, "model": model_key, "train": train_key,
                "regime": jobs.section_key(resolved)}

    def spec(seed, *ids):
        return TrainJob.model_construct(kind="train", seed=seed, data=data, model=model, train=train,
                                        regime=_resolve(regime, dict(zip(names, ids)), sparsity=sparsity))

    return Template("train", names, key, spec, regime.seed_offset)


def _path_template(at: Study, name: str, keys) -> Template:
    path = at.paths[name]
    names = tuple(path.refs())  # the end fields, "from" and "to"
    data, model, data_key, model_key = at.data, at.model, keys(at.data), keys(at.model)

    def key(seed, *ids):
        return {"kind": "path", "seed": seed, "data": data_key, "model": model_key,
                "path": jobs.section_key(_resolve(path, dict(zip(names, ids)), by_field=True))}

    def spec(seed, *ids):
        return PathJob.model_construct(kind="path", seed=seed, data=data, model=model,
                                       path=_resolve(path, dict(zip(names, ids)), by_field=True))

    return Template("path", names, key, spec)


def _ends(path, ds: list[Dim], position: dict[str, int]) -> tuple[list, int | None]:
    """Where a path's ends lie: [(run, [(dim position, coordinate)...]) per end: the
    coordinates its `at` moves it to], and the seed of the path job when both ends are at
    given seeds (the seed control: one job, not one per seed of the sweep), else None."""
    ats = path.ats()
    ends = []
    for f, ref in path.refs().items():
        moves = [(position[dim_name], [v[0] for v in ds[position[dim_name]].values].index(value))
                 for dim_name, value in ats.get(f, {}).items()]
        ends.append((split_ref(ref)[0], moves))
    pins = [ats.get(f, {}) for f in path.refs()]
    return ends, (pins[0]["seed"] if all("seed" in pin for pin in pins) else None)


_HELD = 4096  # studies (with their templates) kept while planning, at most


def build(study: Study) -> Plan:
    """The plan of a checked study."""
    enabled = gc.isenabled()
    gc.disable()  # 10^5 jobs are a few 10^5 new objects: the cyclic collector's passes over them took a third of build
    try:
        return _build(study)
    finally:
        if enabled:
            gc.enable()


def _build(study: Study) -> Plan:
    plan = Plan(study=study, dims=dims(study))
    ds = plan.dims
    order = run_order(study)
    names = [d.name for d in ds]
    seed_dim = next((i for i, d in enumerate(ds) if d.axes == ("seed",)), None)
    # the study at each combination of the other axes (sweep.split), with its templates
    # (run or path name -> Template): sweep points that differ only in their seed share both
    at_other: dict[tuple, tuple[Study, dict]] = {}
    held: dict[int, tuple[Study, dict]] = {}  # id(study at a point) -> (it, its templates)
    dumped: dict[int, tuple] = {}  # id(section object) -> (object, its key part): each dumped once

    def keys(obj) -> dict:
        got = dumped.get(id(obj))
        if got is None or got[0] is not obj:
            got = dumped[id(obj)] = (obj, jobs.section_key(obj))
        return got[1]

    def point_at(combo) -> dict:
        point = {"_index": dict(zip(names, combo))}
        for d, i in zip(ds, combo):
            point.update(zip(d.axes, d.values[i]))
        return point

    def templates_of(at: Study) -> dict:
        """The templates of the study at a point: for its runs, a list in run order; for its
        paths, a dict made as they are planned."""
        got = held.get(id(at))
        if got is None or got[0] is not at:
            if len(held) >= _HELD:
                held.clear()
            got = held[id(at)] = (at, ([(name, _train_template(at, name, keys)) for name in order], {}))
        return got[1]

    with_paths = bool(study.paths)
    ids_at: dict[tuple, dict[str, str]] = {}  # sweep point (coordinate indices) -> run -> job id
    deferred = []  # paths are planned once every point's runs are, so endpoints may lie at other points
    jobs_, cells_append = plan.jobs, plan.cells.append
    for combo in itertools.product(*(range(len(d.values)) for d in ds)):
        index = dict(zip(names, combo))
        got = None
        if seed_dim is not None:
            seed = ds[seed_dim].values[combo[seed_dim]][0]
            if type(seed) is int and 0 <= seed <= MAX_SEED:
                other = combo[:seed_dim] + combo[seed_dim + 1:]
                got = at_other.get(other)
                if got is None:
                    at, _ = split(study, point_at(combo))
                    got = (at, templates_of(at))
                    if len(at_other) < _HELD:
                        at_other[other] = got
        if got is None:
            at, seed = split(study, point_at(combo))
            got = (at, templates_of(at))
        at, (runs, path_templates) = got
        ids: dict[str, str] = {}
        for name, t in runs:  # the hot loop of planning: a few microseconds per job
            if t.names:
                run_ids = tuple(map(ids.__getitem__, t.names))
                values = (seed + t.offset, *run_ids)  # the runner sees one plain seed
            else:
                run_ids, values = (), (seed + t.offset,)
            fmt = t.format
            jid = ids[name] = digest(fmt % t.pick(values)) if fmt else t.job_id(values)
            if jid not in jobs_:
                stage = 0
                for d in run_ids:
                    if jobs_[d].stage >= stage:
                        stage = jobs_[d].stage + 1
                jobs_[jid] = Job(jid, tuple(dict.fromkeys(run_ids)) if len(run_ids) > 1 else run_ids, stage, t, values)
            cells_append(Cell("train", name, index, jid))
        if with_paths:
            ids_at[combo] = ids
            deferred.append((combo, index, at, seed, path_templates))
    position = {n: i for i, n in enumerate(names)}
    for combo, index, at, seed, templates in deferred:
        for name in at.paths:
            t = templates.get(name)
            if t is None:
                t = templates[name] = _path_template(at, name, keys)
            ends, pinned = t.memo("ends", lambda: _ends(at.paths[name], ds, position))
            end_ids = []  # the job id of each end's run, at its sweep point
            for run, moves in ends:
                end = combo
                if moves:
                    end = list(combo)
                    for i, coordinate in moves:
                        end[i] = coordinate
                    end = tuple(end)
                end_ids.append(ids_at[end][run])
            values = (seed if pinned is None else pinned, *end_ids)
            jid = t.job_id(values)
            if jid not in jobs_:
                deps = tuple(dict.fromkeys(end_ids))
                jobs_[jid] = Job(jid, deps, 1 + max(jobs_[d].stage for d in deps), t, values)
            plan.cells.append(Cell("path", name, index, jid))
    return plan
