"""Claims: named hypotheses over a study's runs and paths, told apart by `kind:`.

A claim is analysis, not work: it never enters a job's config or id. `analysis/claims.py`
decides every claim at every sweep point other than seed, from the seeds' values (a paired
effect, its 95% interval, holds / does not hold / undecided against the margin, Holm-
corrected across the study's claims). `seeds:` asks for more seeds until they are decided.

Margins are in the metric's units: a number, or a string naming the unit ("0.05 nats",
"2 points" or "2%" for an accuracy, which is a fraction). A unit that does not fit the
metric is an error, and so is an accuracy margin of 1 or more written as a bare number.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from .base import Name, Strict

# per-run scalars (the runner's final_* values, at the last evaluated step) and their units
RUN_METRICS = {
    "final_train_loss": "nats", "final_test_loss": "nats",
    "final_train_acc": "fraction", "final_test_acc": "fraction",
}
# per-path summaries (`path_<name>` in the dataset)
PATH_METRICS = {
    "barrier": "nats", "barrier_linear": "nats", "max_rise": "nats", "mean_loss": "nats",
    "train_loss_from": "nats", "train_loss_to": "nats", "length": "length",
}
UNITS = {"nats": "nats", "nat": "nats", "points": "points", "point": "points", "%": "points", "fraction": "fraction"}
MARGIN = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z%]*)\s*$")

Margin = Union[float, str]


def margin_value(margin: Margin, units: str) -> float:
    """A margin in `units` (nats, fraction, length); ValueError saying what to write."""
    if isinstance(margin, bool):
        raise ValueError("a margin is a number")
    if isinstance(margin, (int, float)):
        value, unit = float(margin), None
    else:
        m = MARGIN.match(margin)
        if not m:
            raise ValueError(f"{margin!r} is not a margin: write a number, or a number and its unit "
                             "('0.05 nats', '2 points')")
        value, unit = float(m.group(1)), m.group(2).lower() or None
        if unit is not None and unit not in UNITS:
            raise ValueError(f"unknown unit {m.group(2)!r}: use nats (losses), points or % (accuracies)")
        unit = UNITS.get(unit) if unit else None
    if value < 0:
        raise ValueError(f"a margin is not negative (got {value}): the direction says which side is claimed")
    if unit is None:
        if units == "fraction" and value >= 1:
            raise ValueError(f"an accuracy is a fraction in [0, 1]: a margin of {value:g} is more than the whole "
                             f"range; write {value / 100:g} or '{value:g} points'")
        return value
    if units == "fraction":
        if unit == "points":
            return value / 100
        if unit == "fraction":
            return value
        raise ValueError(f"the metric is an accuracy (a fraction), not in {unit}: write e.g. '2 points' or 0.02")
    if unit != units:
        raise ValueError(f"the metric is in {units}, not {unit}: write the margin in {units}, e.g. 0.05")
    return value


class Claim(Strict):
    text: Optional[str] = Field(None, description="the claim in words, shown in the report")
    runs_used: ClassVar[tuple[str, ...]] = ()  # fields naming runs
    paths_used: ClassVar[tuple[str, ...]] = ()  # fields naming paths

    def units(self) -> str:
        return "nats"

    def margin_in_units(self) -> float:
        return margin_value(self.margin, self.units())  # type: ignore[attr-defined]


def _margin_in(table: dict | None):
    """A field validator of `margin` (or `tolerance`): in the units of the claim's metric."""

    def check(cls, value, info):
        units = "nats" if table is None else table.get(info.data.get("metric"), "nats")
        margin_value(value, units)
        return value

    return check


class Compare(Claim):
    """metric(a) - metric(b), paired by seed, is beyond `margin` in `direction`."""

    runs_used: ClassVar[tuple[str, ...]] = ("a", "b")
    kind: Literal["compare"]
    metric: str = Field(description="a per-run scalar: " + ", ".join(RUN_METRICS))
    a: Name = Field(description="run whose metric is claimed greater or less")
    b: Name = Field(description="the run it is compared with, at the same sweep point and seed")
    direction: Literal["greater", "less"] = Field(
        description="greater: metric(a) > metric(b) + margin; less: metric(a) < metric(b) - margin")
    margin: Margin = Field(0.0, description="the smallest difference that matters, in the metric's units")

    def units(self) -> str:
        return RUN_METRICS.get(self.metric, "nats")

    _margin = field_validator("margin")(_margin_in(RUN_METRICS))


class Relation(Claim):
    """metric(path a) - metric(path b), paired by seed, is beyond `margin` in `direction`."""

    paths_used: ClassVar[tuple[str, ...]] = ("a", "b")
    kind: Literal["relation"]
    metric: str = Field("barrier", description="a path summary: " + ", ".join(PATH_METRICS))
    a: Name = Field(description="path whose summary is claimed greater or less")
    b: Name = Field(description="the path it is compared with")
    direction: Literal["greater", "less"]
    margin: Margin = Field(0.0, description="the smallest difference that matters, in the metric's units")

    def units(self) -> str:
        return PATH_METRICS.get(self.metric, "nats")

    _margin = field_validator("margin")(_margin_in(PATH_METRICS))


class Barrier(Claim):
    """The path's barrier (max training loss on t in [0, 1] minus the higher endpoint) exceeds `margin`."""

    paths_used: ClassVar[tuple[str, ...]] = ("path",)
    kind: Literal["barrier"]
    path: Name
    margin: Margin = Field(0.01, description="nats")

    _margin = field_validator("margin")(_margin_in(None))


class NoBarrier(Barrier):
    """The path's barrier stays below `margin`."""

    kind: Literal["no_barrier"]  # type: ignore[assignment]


class Monotone(Claim):
    """The training loss along the path never rises by more than `tolerance` nats over `t`:
    the statistic is the largest rise above the lowest loss seen so far (t increasing)."""

    paths_used: ClassVar[tuple[str, ...]] = ("path",)
    kind: Literal["monotone"]
    path: Name
    tolerance: Margin = Field(0.01, description="nats: the largest rise that still counts as monotone")
    t: tuple[float, float] = Field((0.0, 1.0), description="the range of t that is judged, [first, last]")

    @property
    def margin(self) -> Margin:
        return self.tolerance

    _tolerance = field_validator("tolerance")(_margin_in(None))

    @model_validator(mode="after")
    def _valid(self):
        if self.t[1] <= self.t[0]:
            raise ValueError(f"t must increase, got {list(self.t)}")
        return self


class LowLoss(Claim):
    """The largest training loss along the path (over `t`) is at most the higher endpoint plus
    `margin` nats; the report also shows how far the path dips below the lower endpoint."""

    paths_used: ClassVar[tuple[str, ...]] = ("path",)
    kind: Literal["low_loss"]
    path: Name
    margin: Margin = Field(0.01, description="nats")
    t: tuple[float, float] = Field((0.0, 1.0), description="the range of t that is judged, [first, last]")

    _margin = field_validator("margin")(_margin_in(None))

    @model_validator(mode="after")
    def _valid(self):
        if self.t[1] <= self.t[0]:
            raise ValueError(f"t must increase, got {list(self.t)}")
        return self


AnyClaim = Annotated[Union[Compare, Relation, Barrier, NoBarrier, Monotone, LowLoss], Field(discriminator="kind")]


class Seeds(Strict):
    """Adaptive seeds: start with `start` seeds (0 .. start-1); while a claim is undecided, add
    `wave` more, up to `max`. Seeds already run keep their jobs (ids depend on the seed only)."""

    start: Annotated[int, Field(ge=1, le=10_000)] = Field(3, description="seeds of the first wave")
    wave: Annotated[int, Field(ge=1, le=10_000)] = Field(2, description="seeds added per wave while a claim is undecided")
    max: Annotated[int, Field(ge=1, le=10_000)] = Field(10, description="never more seeds than this")

    @model_validator(mode="after")
    def _order(self):
        if self.max < self.start:
            raise ValueError(f"max ({self.max}) is below start ({self.start})")
        return self

    def counts(self) -> list[int]:
        """Seed counts wave after wave: start, start + wave, ..., max."""
        out = [self.start]
        while out[-1] < self.max:
            out.append(min(out[-1] + self.wave, self.max))
        return out


def _unknown(spec, at: tuple, value: str, kind: str, names, other: str, others, hint: str) -> list:
    """[] when `value` names one of the study's `kind`s (`names`), else the problem: it names
    one of the `other`s (`hint` says what to use instead), or nothing (the closest name)."""
    from ..errors import closest

    if value in names:
        return []
    if value in others:
        return [spec.problem(at, f"{value!r} is a {other}, not a {kind}", hint)]
    guess = closest(value, list(names))
    listed = f" ({kind}s: {', '.join(names)})" if names else f" (this study has no {kind}s)"
    return [spec.problem(at, f"no {kind} named {value!r}{listed}",
                         f"did you mean {guess!r}?" if guess else f"name a {kind} under `{kind}s:`")]


def check_claims(spec) -> list:
    """Claims against the rest of the study: runs and paths that exist, metrics of the right
    kind, t-ranges inside the path, adaptive seeds with claims and without a seed sweep."""
    study = spec.study
    out = []
    for name, claim in study.claims.items():
        for f in claim.runs_used:
            out += _unknown(spec, ("claims", name, f), getattr(claim, f), "run", study.runs, "path", study.paths,
                            "compare paths with `kind: relation`")
        for f in claim.paths_used:
            out += _unknown(spec, ("claims", name, f), getattr(claim, f), "path", study.paths, "run", study.runs,
                            "compare runs with `kind: compare`")
        metric = getattr(claim, "metric", None)
        if claim.kind == "compare" and metric not in RUN_METRICS:
            out.append(_metric_problem(spec, name, metric, RUN_METRICS, PATH_METRICS, "path summary", "relation"))
        if claim.kind == "relation" and metric not in PATH_METRICS:
            out.append(_metric_problem(spec, name, metric, PATH_METRICS, RUN_METRICS, "per-run scalar", "compare"))
        if claim.kind in ("monotone", "low_loss") and claim.path in study.paths:
            lo, hi = _t_span(study.paths[claim.path])
            if claim.t[0] < lo - 1e-9 or claim.t[1] > hi + 1e-9:
                out.append(spec.problem(("claims", name, "t"), f"t {list(claim.t)} is outside the range of path "
                                        f"{claim.path!r}, [{lo:g}, {hi:g}]", f"judge a part of [{lo:g}, {hi:g}]"))
    if study.seeds is not None:
        if "seed" in study.sweep or any("seed" in g for g in study.sweep.get("zip", [])):
            out.append(spec.problem(("seeds",), "`seeds:` (adaptive) and a swept seed both give the seeds",
                                    "remove `seed` from `sweep:`; seeds 0 .. n-1 are run, n growing wave by wave"))
        if not study.claims:
            out.append(spec.problem(("seeds",), "adaptive seeds need claims to decide",
                                    "add a `claims:` section, or sweep seed: [...] instead"))
    return out


def _metric_problem(spec, name, metric, right: dict, other: dict, other_kind: str, other_claim: str):
    from ..errors import closest

    if metric in other:
        return spec.problem(("claims", name, "metric"), f"{metric!r} is a {other_kind}, not what this claim compares",
                            f"use `kind: {other_claim}` for it, or one of: {', '.join(right)}")
    guess = closest(str(metric), list(right))
    return spec.problem(("claims", name, "metric"), f"unknown metric {metric!r}",
                        (f"did you mean {guess!r}? " if guess else "") + "metrics here: " + ", ".join(right))


def _t_span(path) -> tuple[float, float]:
    rng = getattr(path, "range", None)
    return (float(rng[0]), float(rng[1])) if rng is not None else (0.0, 1.0)


def with_seeds(study, n: int):
    """The study with seeds 0 .. n-1 swept (adaptive seeds): the last sweep axis."""
    return study.model_copy(update={"sweep": {**study.sweep, "seed": list(range(n))}})
