"""The whole study spec."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, PositiveInt, field_validator

from .base import Name, Strict
from .paths import AnyPath
from .regimes import AnyRegime
from .train import Data, Model, Train

Scalar = Union[bool, int, float, str]
SweepValue = Union[Scalar, list[Scalar]]


class Launch(Strict):
    executor: Literal["local"] = Field("local", description="where jobs run")
    workers: PositiveInt | None = Field(
        None, description="parallel jobs (local executor); default: the CPU count")


class Output(Strict):
    store: str = Field("store", description="directory of job run directories (shared by studies)")
    results: str = Field("results", description="directory of collected <study>.nc files")


class Study(Strict):
    """A study: runs and path queries repeated at every point of a sweep."""

    study: Name = Field(description="study name; names results/<study>.nc")
    data: Data
    model: Model
    train: Train
    seed: int = Field(0, ge=0, description="seed, unless swept")
    sparsity: float = Field(0.9, ge=0.0, lt=1.0, description="target sparsity, unless swept")
    sweep: dict[str, list[SweepValue] | list[dict[str, list[SweepValue]]]] = Field(
        {}, description="axis -> values (cartesian product); `zip: [{a: [..], b: [..]}]` varies axes together")
    runs: dict[Name, AnyRegime] = Field(min_length=1)
    paths: dict[Name, AnyPath] = {}
    launch: Launch = Launch()
    output: Output = Output()

    @field_validator("sweep")
    @classmethod
    def _sweep_shape(cls, sweep: dict[str, Any]) -> dict[str, Any]:
        for axis, values in sweep.items():
            if axis == "zip":
                for group in values:
                    if not isinstance(group, dict):
                        raise ValueError("`zip` holds a list of groups: zip: [{axis: [..], axis: [..]}]")
                    lengths = {len(v) for v in group.values()}
                    if len(lengths) > 1:
                        raise ValueError(f"zipped axes {sorted(group)} need lists of one length, got {sorted(lengths)}")
            elif not values or any(isinstance(v, dict) for v in values):
                raise ValueError(f"sweep axis {axis!r} needs a non-empty list of values")
        return sweep
