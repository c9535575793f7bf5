"""Training regimes: one small frozen model each, told apart by `regime:`."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, PositiveInt, model_validator

from .base import Ref, Strict
from .distribution import Distribution


class Regime(Strict):
    ref_fields: ClassVar[tuple[str, ...]] = ()  # fields holding references to other runs
    uses_sparsity: ClassVar[bool] = False  # whether the study's sparsity applies
    has_mask: ClassVar[bool] = False  # whether the run has a `mask` artifact

    def refs(self) -> dict[str, str]:
        out = {}
        for name in self.ref_fields:
            value = getattr(self, name)
            if isinstance(value, str) and "." in value:
                out[name] = value
        return out


class Dense(Regime):
    """Ordinary training, no mask."""

    regime: Literal["dense"]


class PruneSchedule(Strict):
    """Zhu & Gupta gradual magnitude pruning; begin and end are fractions of training."""

    initial: float = Field(0.0, ge=0.0, lt=1.0, description="sparsity at `begin`")
    begin: float = Field(ge=0.0, le=1.0)
    end: float = Field(ge=0.0, le=1.0)
    every: PositiveInt = Field(100, description="recompute the mask every N steps")

    @model_validator(mode="after")
    def _order(self):
        if self.end < self.begin:
            raise ValueError(f"end ({self.end}) comes before begin ({self.begin})")
        return self


class Prune(Regime):
    """Gradual magnitude pruning during dense training, to the study's sparsity."""

    uses_sparsity: ClassVar[bool] = True
    has_mask: ClassVar[bool] = True
    regime: Literal["prune"]
    schedule: PruneSchedule
    distribution: Distribution = Field(
        "uniform", description="layer-wise sparsity: a name, or {name, dense_layers, layers}")


class FixedMask(Regime):
    """A mask taken from another run, fixed for all of training."""

    ref_fields: ClassVar[tuple[str, ...]] = ("mask", "init")
    has_mask: ClassVar[bool] = True
    regime: Literal["fixed_mask"]
    mask: Ref = Field(description="whose mask, e.g. prune.final or prune.mask")
    init: Literal["fresh"] | Ref = Field(
        "fresh", description="'fresh' (new random init) or another run's weights, e.g. prune.init")


AnyRegime = Annotated[Union[Dense, Prune, FixedMask], Field(discriminator="regime")]
