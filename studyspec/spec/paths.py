"""Path queries between trained solutions, told apart by `kind:`.

An endpoint is a reference (`scratch.final`: same sweep point as the path) or
`{ref: scratch.final, at: {seed: 1}}`: the artifact of the run at the sweep point
where the named dimensions take the given values (the other dimensions as the
path's own point). `at` keys are sweep dimension names, values are coordinates.
A path whose two ends both give a `seed` (the seed control) is one job, shared by
every seed of the sweep, and runs with the `from` end's seed.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from .base import Batch, Points, Ref, Steps, Strict
from .train import Optimizer

AtValue = Union[bool, int, float, str]


class Endpoint(Strict):
    """An artifact of a run at another sweep point."""

    ref: Ref = Field(description="RUN.ARTIFACT, e.g. scratch.final")
    at: dict[str, AtValue] = Field(
        min_length=1, description="sweep dimension -> coordinate, e.g. {seed: 1}; other dimensions: the path's own. "
        "When both ends give a seed, the path is one job for every seed of the sweep")


End = Union[Ref, Endpoint]

MaskPolicy = Literal["shared", "from", "to", "union", "none"]


class PathQuery(Strict):
    ref_fields: ClassVar[tuple[str, ...]] = ("from_", "to")
    trained: ClassVar[bool] = False  # whether control points are trained (curves)
    from_: End = Field(alias="from", description="start, e.g. scratch.init or {ref: scratch.final, at: {seed: 1}}")
    to: End = Field(description="end, e.g. prune.final")
    mask: MaskPolicy = Field(
        "shared", description="which prunable weights may be non-zero along the path: shared (both endpoints' "
        "non-zeros), from, to, union, none. An endpoint's mask is its set of non-zero prunable weights")
    bn_batches: Annotated[int, Field(ge=0, le=100_000)] = Field(
        20, description="models with BatchNorm: training batches used to recompute the running statistics "
        "at each point (0: keep the interpolated ones)")

    def refs(self) -> dict[str, str]:
        return {"from": _ref(self.from_), "to": _ref(self.to)}

    def ats(self) -> dict[str, dict]:
        """field -> `at` of the endpoints given at another sweep point."""
        return {f: e.at for f, e in (("from", self.from_), ("to", self.to)) if isinstance(e, Endpoint)}


def _ref(end) -> str:
    return end.ref if isinstance(end, Endpoint) else end


class Linear(PathQuery):
    """theta(a) = (1 - a) * from + a * to on an evenly spaced grid of a."""

    n_points: ClassVar[int] = 2  # points the path is made of (its endpoints)

    kind: Literal["linear"]
    points: Points = Field(29, description="grid points")
    range: tuple[float, float] = Field((0.0, 1.0), description="[first a, last a]; may extrapolate")

    @model_validator(mode="after")
    def _order(self):
        if self.range[1] <= self.range[0]:
            raise ValueError(f"range must increase, got {list(self.range)}")
        return self


class CurveTrain(Strict):
    """Training of a curve's control points: minimise E_{t~U(0,1)} L(phi(t)), one t per mini-batch."""

    steps: Steps = Field(1000, description="optimizer steps")
    batch_size: Batch | None = Field(None, description="mini-batch size; default: data.batch_size")
    optimizer: Optimizer = Field(Optimizer(momentum=0.9), description="default: SGD lr 0.1, momentum 0.9")
    schedule: Literal["garipov", "constant", "cosine"] = Field(
        "garipov", description="garipov: lr constant for the first half, linear decay to 1% by 90%, then held")
    checkpoint_every: Steps = Field(100, description="save the control points every N steps (resume)")


class Curve(PathQuery):
    trained: ClassVar[bool] = True
    points: Points = Field(61, description="evaluation points on [0, 1]")
    subspace: Literal["sparse", "dense"] = Field(
        "sparse", description="sparse: control points stay inside the mask (values and gradients); dense: free")
    train: CurveTrain = CurveTrain()

    @model_validator(mode="after")
    def _sparse_needs_mask(self):
        if self.subspace == "sparse" and self.mask == "none":
            raise ValueError("a sparse subspace needs a mask: set `mask:` to shared, from, to or union, "
                             "or use `subspace: dense`")
        return self


class Bezier(Curve):
    """phi(t) = sum_i C(k,i) t^i (1-t)^(k-i) theta_i, endpoints fixed, control points trained."""

    kind: Literal["bezier"]
    degree: Literal[2, 3] = Field(2, description="2: one control point, 3: two")

    @property
    def n_points(self) -> int:
        """Points the curve is made of: endpoints and control points."""
        return self.degree + 1


class Polychain(Curve):
    """A polygonal chain with `bends` trained bend points, at t = i / (bends + 1)."""

    kind: Literal["polychain"]
    bends: Annotated[int, Field(ge=1, le=100)] = Field(1, description="number of bend points")

    @property
    def n_points(self) -> int:
        """Points the chain is made of: endpoints and bends."""
        return self.bends + 2


AnyPath = Annotated[Union[Linear, Bezier, Polychain], Field(discriminator="kind")]
