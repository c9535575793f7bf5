"""Sweep axes: which fields vary, the dimensions they make, and the points they span."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .errors import Problem
from .spec import Study
from .spec.base import MAX_SEED
from .spec.search import samples

SAMPLE = "_sample"  # the hidden first axis of a random search: its coordinate is the sample index

ROOTS = ("seed", "sparsity", "data", "model", "train")
RESERVED = ("run", "path", "step", "t")


@dataclass(frozen=True)
class Dim:
    """One dimension of the results: a single axis, or a group of zipped axes."""

    name: str
    axes: tuple[str, ...]  # spec fields, e.g. ("train.optimizer.lr",)
    values: tuple[tuple, ...]  # one tuple (a value per axis) per coordinate


def dim_name(axis: str) -> str:
    return axis.rsplit(".", 1)[-1]


def dims(study: Study) -> list[Dim]:
    out = []
    for axis, values in study.sweep.items():
        if axis == "random":
            out.append(Dim("sample", (SAMPLE, *values.axes), tuple((i, *p) for i, p in enumerate(samples(values)))))
        elif axis == "zip":
            for group in values:
                axes = tuple(group)
                out.append(Dim(dim_name(axes[0]), axes, tuple(zip(*group.values()))))
        else:
            out.append(Dim(dim_name(axis), (axis,), tuple((v,) for v in values)))
    return out


def points(study: Study) -> list[dict[str, Any]]:
    """Every sweep point as {dim name: coordinate index} plus {axis: value}."""
    ds = dims(study)
    out = []
    for combo in itertools.product(*(range(len(d.values)) for d in ds)):
        point = {"_index": {d.name: i for d, i in zip(ds, combo)}}
        for d, i in zip(ds, combo):
            point.update(dict(zip(d.axes, d.values[i])))
        out.append(point)
    return out


_CACHE: dict[int, tuple[Study, dict]] = {}  # id(study) -> (study, {other axes' values: validated study})
_CACHE_STUDIES, _CACHE_POINTS = 4, 4096


def apply(study: Study, point: dict[str, Any]) -> Study:
    """The study with the point's axis values written into its fields.

    Validating a whole Study is the cost of planning (about 0.2-1 ms each), so a seed
    value is not validated with the rest: the study is validated once per combination of
    the other axes' values (cached) and the seed (a plain int within bounds) copied in;
    anything else takes the full path, which also gives the located error."""
    at, seed = split(study, point)
    return at if at.seed == seed else at.model_copy(update={"seed": seed})


def split(study: Study, point: dict[str, Any]) -> tuple[Study, int]:
    """``apply`` in two parts, without the per-point copy: (the study at the point's other
    axes, the point's seed). The study's own ``seed`` is that of the spec when the point
    sweeps the seed (the planner reads the seed from the second part); the study is shared
    by every point that differs from this one only in its seed."""
    seed = point.get("seed")
    if "seed" in point and type(seed) is int and 0 <= seed <= MAX_SEED:
        rest = {k: v for k, v in point.items() if k != "seed" and not k.startswith("_")}
        try:
            key = json.dumps(rest, sort_keys=True)
        except (TypeError, ValueError):
            key = None
        if key is not None:
            held = _CACHE.get(id(study))
            if held is None or held[0] is not study:
                if len(_CACHE) >= _CACHE_STUDIES:
                    _CACHE.pop(next(iter(_CACHE)))
                held = _CACHE[id(study)] = (study, {})
            base = held[1].get(key)
            if base is None:
                base = _apply(study, rest)
                if len(held[1]) < _CACHE_POINTS:
                    held[1][key] = base
            return base, seed
    at = _apply(study, point)
    return at, at.seed


def _apply(study: Study, point: dict[str, Any]) -> Study:
    data = study.model_dump(by_alias=True, exclude={"sweep"})
    for axis, value in point.items():
        if axis.startswith("_"):
            continue
        *parents, leaf = axis.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = value
    return Study.model_validate(data)


def job_count(study: Study) -> tuple[int, int]:
    """(sweep points, jobs at most) without expanding anything: a job per run and path per point."""
    n = 1
    for axis, values in study.sweep.items():
        if axis == "random":
            n *= values.n
            continue
        for group in (values if axis == "zip" else [{axis: values}]):
            n *= len(next(iter(group.values())))
    return n, n * (len(study.runs) + len(study.paths))


def check_sweep(spec) -> list[Problem]:
    study: Study = spec.study
    problems: list[Problem] = []
    n_points, n_jobs = job_count(study)
    limit = study.launch.max_jobs
    if n_jobs > limit:  # before anything expands the sweep
        return [spec.problem(
            ("sweep",), f"the sweep makes {n_jobs:,} jobs ({n_points:,} points x "
            f"{len(study.runs) + len(study.paths)} runs and paths), more than launch.max_jobs ({limit:,})",
            "sweep fewer values, or raise `launch: {max_jobs: N}` if you mean it")]
    seen: dict[str, str] = {}
    entries = []  # (axis, where-tuple of its list)
    drawn = {}  # random axis -> its drawn values
    for axis, values in study.sweep.items():
        if axis == "random":
            seen["sample"] = "sweep.random"
            entries += [(a, ("sweep", "random", "axes", a)) for a in values.axes]
            drawn = dict(zip(values.axes, zip(*samples(values))))
        elif axis == "zip":
            for g, group in enumerate(values):
                entries += [(a, ("sweep", "zip", g, a)) for a in group]
        else:
            entries.append((axis, ("sweep", axis)))
    for axis, where in entries:
        if axis.split(".")[0] not in ROOTS:
            problems.append(spec.problem(where, f"cannot sweep {axis!r}",
                                         "sweep seed, sparsity or a field under data, model or train, e.g. train.optimizer.lr"))
            continue
        name = dim_name(axis)
        if name in RESERVED or name in seen:
            problems.append(spec.problem(where, f"axis {axis!r} would make a second dimension named {name!r}"
                                         + (f" (also {seen[name]!r})" if name in seen else " (reserved)")))
            continue
        seen[name] = axis
        values = (drawn[axis] if where[1] == "random" else study.sweep[axis] if where[1] != "zip"
                  else study.sweep["zip"][where[2]][axis])
        if where[1] == "random":  # each distinct drawn value once
            values = list({repr(v): v for v in values}.values())
        for i, value in enumerate(values):
            if i and axis == "seed" and type(value) is int and 0 <= value <= MAX_SEED:
                continue  # apply() copies such a seed in unchecked: nothing to learn from each one
            try:
                apply(study, {axis: value})
            except (KeyError, TypeError):
                problems.append(spec.problem(where, f"{axis!r} is not a field of the spec"))
                break
            except ValidationError as e:
                err = e.errors()[0]
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = f"{axis!r} is not a field of the spec"
                problems.append(spec.problem(where + (i,) if where[1] != "random" else where,
                                             f"{'drawn ' if where[1] == 'random' else ''}sweep value {value!r}: {msg}"))
                break
    return problems
