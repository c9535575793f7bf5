"""What every run shares: data, model, optimisation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from .base import Strict


class Data(Strict):
    """The dataset; small ones are generated or ship with a package."""

    dataset: Literal["mnist1d", "digits"] = Field(description="dataset name")
    batch_size: PositiveInt = Field(128, description="mini-batch size for training")


class Model(Strict):
    arch: Literal["mlp"] = Field(description="architecture")
    hidden: list[PositiveInt] = Field([300, 100], description="hidden layer widths (mlp)")


class Optimizer(Strict):
    name: Literal["sgd", "adam"] = "sgd"
    lr: PositiveFloat = 0.1
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0


class LRSchedule(Strict):
    name: Literal["constant", "cosine"] = "constant"
    warmup: NonNegativeInt = Field(0, description="linear warm-up steps")


class Train(Strict):
    steps: PositiveInt = Field(description="optimizer steps")
    optimizer: Optimizer = Optimizer()
    schedule: LRSchedule = LRSchedule()
    eval_every: PositiveInt = Field(100, description="evaluate every N steps")
    checkpoints: list[NonNegativeInt] = Field(
        [], description="steps whose weights are kept (referenced as run.step[N])")
