"""Training regimes: one small frozen model each, told apart by `regime:`.

Every new field has a default (the planner leaves defaults out of job ids).
The runner side of each regime is in runners/regimes.py.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, PositiveFloat, model_validator

from .base import MAX_SEED, Ref, Step, Steps, Strict

from .distribution import Distribution  # a name, or {name, dense_layers, layers}


class Regime(Strict):
    ref_fields: ClassVar[tuple[str, ...]] = ()  # fields holding references to other runs
    uses_sparsity: ClassVar[bool] = False  # whether the study's sparsity applies
    has_mask: ClassVar[bool] = False  # whether the run has a `mask` artifact
    seed_offset: int = Field(
        0, ge=0, le=MAX_SEED, description="added to the sweep point's seed for this run only (its init, data order and "
        "any random mask), e.g. a second scratch run with the same mask and another init: seed_offset: 1000")
    steps: Steps | None = Field(
        None, description="train this run for N optimizer steps instead of train.steps (its lr schedule and "
        "any fractions of training stretched to N), e.g. scratch with 2x the budget; default: train.steps")
    lr: PositiveFloat | None = Field(
        None, description="this run's learning rate instead of train.optimizer.lr (e.g. an lr sweep of one run "
        "against a fixed reference run); default: train.optimizer.lr")

    def trained_steps(self, steps: int) -> int:
        """Optimizer steps the run takes in all, for a training length of ``steps``."""
        return steps

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
    """Zhu & Gupta gradual magnitude pruning; begin and end are fractions of training.
    begin == end prunes once (one-shot) at that point."""

    initial: float = Field(0.0, ge=0.0, lt=1.0, description="sparsity at `begin`")
    begin: float = Field(ge=0.0, le=1.0)
    end: float = Field(ge=0.0, le=1.0)
    every: Steps = Field(100, description="recompute the mask every N steps")

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
        "uniform", description="layer-wise sparsity distribution (scope: layer)")
    scope: Literal["layer", "global"] = Field(
        "layer", description="rank magnitudes within each layer, or across all prunable weights")


class Imp(Regime):
    """Iterative magnitude pruning with rewinding (lottery-ticket studies): train for
    train.steps, prune `fraction` of the remaining weights, rewind the survivors to
    their values at step `rewind`, train again from there; `rounds` prunings in all."""

    has_mask: ClassVar[bool] = True
    regime: Literal["imp"]
    rounds: Annotated[int, Field(ge=1, le=100)] = Field(3, description="number of prune-rewind rounds")
    fraction: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="fraction of the remaining weights pruned per round; default: "
                    "1 - (1 - sparsity)**(1/rounds), so the last round hits the study's sparsity")
    rewind: Step = Field(0, description="rewind step (0 = the initial weights)")
    distribution: Distribution = "uniform"
    scope: Literal["layer", "global"] = "layer"

    @property
    def uses_sparsity(self) -> bool:  # type: ignore[override]
        return self.fraction is None

    def trained_steps(self, steps: int) -> int:
        """Round 0 trains ``steps``, every later round steps rewind..steps."""
        return steps + self.rounds * (steps - self.rewind)


class MaskedStart(Regime):
    """How a sparse run starts: its mask and its weights."""

    ref_fields: ClassVar[tuple[str, ...]] = ("mask", "init")
    has_mask: ClassVar[bool] = True
    mask: Literal["random"] | Ref = Field(
        "random", description="another run's mask (prune.final, prune.mask, prune.step[N]) or "
                              "'random' (drawn from `distribution` at the study's sparsity)")
    distribution: Distribution = Field("uniform", description="layer-wise sparsity of a random mask")
    shuffle: bool = Field(False, description="shuffle the mask within each layer (keeps per-layer counts)")
    init: Literal["fresh"] | Ref = Field(
        "fresh", description="'fresh' (new random init) or another run's weights: "
                             "prune.init (lottery), prune.step[N] (rewinding), scratch.final (continue)")
    scale_init: bool = Field(
        False, description="with init: fresh, scale each layer by 1/sqrt(density) for the reduced fan-in")

    @property
    def uses_sparsity(self) -> bool:  # type: ignore[override]
        return self.mask == "random"

    @model_validator(mode="after")
    def _scale_needs_fresh(self):
        if self.scale_init and self.init != "fresh":
            raise ValueError("scale_init applies to a fresh init only (init: fresh)")
        return self


class FixedMask(MaskedStart):
    """A mask fixed for all of training: another run's (scratch, lottery) or random (static)."""

    regime: Literal["fixed_mask"]
    mask: Literal["random"] | Ref = Field(
        description="another run's mask (prune.final, prune.mask, prune.step[N]) or "
                    "'random' (drawn from `distribution` at the study's sparsity)")


class DynamicSparse(MaskedStart):
    """Dynamic sparse training (Evci et al. 2020): every `every` steps drop the smallest-
    magnitude fraction of each layer's active weights and grow as many (at zero)."""

    every: Steps = Field(100, description="update the mask every N steps (dT)")
    drop_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="initial drop fraction, cosine-annealed to 0")
    stop: float = Field(0.75, gt=0.0, le=1.0, description="no updates after this fraction of training")


class RigL(DynamicSparse):
    """Grow the inactive weights with the largest gradient magnitude."""

    regime: Literal["rigl"]


class SET(DynamicSparse):
    """Grow inactive weights at random."""

    regime: Literal["set"]


class SmallDense(Regime):
    """A narrower dense model whose parameter count matches the non-zeros of the sparse
    model at the study's sparsity (kept prunable weights, plus biases and BatchNorm counted
    dense), for every arch: its widths (hidden units, channels, stage widths) scaled by one
    factor, then adjusted by a few units to land closest to the count."""

    uses_sparsity: ClassVar[bool] = True
    regime: Literal["small_dense"]


AnyRegime = Annotated[Union[Dense, Prune, Imp, FixedMask, RigL, SET, SmallDense],
                      Field(discriminator="regime")]
