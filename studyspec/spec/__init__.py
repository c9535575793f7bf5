"""pydantic models of a study spec (YAML). Unknown keys are errors."""

from .base import ARTIFACT, Name, Ref, Strict, ref_step, split_ref
from .paths import AnyPath, Linear, PathQuery
from .regimes import (SET, AnyRegime, Dense, DynamicSparse, FixedMask, Imp, MaskedStart, Prune,
                      PruneSchedule, Regime, RigL, SmallDense)
from .study import Launch, Output, Study
from .data import Data
from .model import Model
from .train import LRSchedule, Optimizer, Train

__all__ = [
    "ARTIFACT", "AnyPath", "AnyRegime", "Data", "Dense", "FixedMask", "LRSchedule", "Launch",
    "Linear", "Model", "Name", "Optimizer", "Output", "PathQuery", "Prune", "PruneSchedule",
    "Ref", "Regime", "Strict", "Study", "Train", "ref_step", "split_ref",
    "DynamicSparse", "Imp", "MaskedStart", "RigL", "SET", "SmallDense",
]
