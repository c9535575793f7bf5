"""How a run is optimised: optimizer, learning-rate schedule, length, evaluation, device.
The data and model sections are in data.py and model.py."""

from __future__ import annotations

import math

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, model_validator

from .base import MAX_STEPS, Step, Steps, Strict


class Optimizer(Strict):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat = 0.1
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="sgd only")
    nesterov: bool = Field(False, description="sgd only; needs momentum > 0")
    weight_decay: NonNegativeFloat = Field(0.0, description="L2 (sgd, adam) or decoupled (adamw)")
    weight_decay_on: Literal["all", "weights"] = Field(
        "all", description="all: every parameter; weights: only conv and linear kernels (tensors of 2 or more "
        "dims), not BatchNorm parameters or biases (Gale et al.'s recipe)")
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        (0.9, 0.999), description="adam/adamw: each in [0, 1)")

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs name: sgd and momentum > 0")
        return self


class LRSchedule(Strict):
    """Learning rate of each step: linear warm-up, then constant, multistep or cosine."""

    name: Literal["constant", "multistep", "cosine"] = "constant"
    warmup: Step = Field(0, description="linear warm-up steps")
    milestones: list[Annotated[float, Field(ge=0.0, le=MAX_STEPS)]] = Field(
        [], description="multistep: where the lr is multiplied by gamma; values < 1 are "
                        "fractions of training, values >= 1 are steps")
    gamma: PositiveFloat = Field(0.1, description="multistep factor")

    @model_validator(mode="after")
    def _milestones(self):
        if self.milestones and self.name != "multistep":
            raise ValueError("milestones apply to name: multistep")
        if self.name == "multistep" and not self.milestones:
            raise ValueError("multistep needs milestones, e.g. [0.5, 0.75]")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must increase, got {list(self.milestones)}")
        return self


class Train(Strict):
    steps: Steps | None = Field(None, description="optimizer steps (or give epochs)")
    epochs: Annotated[float, Field(gt=0.0, le=100_000)] | None = Field(
        None, description="length in epochs instead of steps: steps = ceil(epochs * train size / batch_size)")
    optimizer: Optimizer = Optimizer()
    schedule: LRSchedule = LRSchedule()
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="cross-entropy label smoothing")
    eval_every: Steps = Field(100, description="evaluate every N steps")
    checkpoints: list[Step] = Field(
        [], description="steps whose weights are kept (referenced as run.step[N])")
    checkpoint_every: Step = Field(
        1000, description="write a resume checkpoint every N steps (0: never); a killed job "
                          "restarts from it and finishes bit-identical")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when present")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="training arithmetic: bf16 or fp16 run the training forward pass under "
                            "autocast (fp16 with a gradient scaler) on fp32 master weights; masks, "
                            "pruning, evaluations and paths stay fp32 (runners/precision.py)")
    channels_last: bool = Field(False, description="channels-last memory format for conv nets on images "
                                                   "(faster on GPUs with tensor cores); no effect on "
                                                   "other models")

    @model_validator(mode="after")
    def _length(self):
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give the length of training as exactly one of steps or epochs")
        return self

    def total_steps(self, n_train: int, batch_size: int) -> int:
        """Optimizer steps: ``steps``, or ``epochs`` as ceil(epochs * n_train / batch_size)."""
        if self.steps:
            return self.steps
        return int(math.ceil(self.epochs * n_train / batch_size))
