"""The whole study spec."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, NonNegativeInt, PositiveInt, Tag, field_validator

from .base import Name, Strict
from .claims import AnyClaim, Seeds
from .paths import AnyPath
from .regimes import AnyRegime
from .search import RandomSearch
from .train import Data, Model, Train

Scalar = Union[bool, int, float, str]
SweepValue = Union[Scalar, list[Scalar]]
# an axis's values, a list of zip groups, or (under `random`) a random search
SweepEntry = Annotated[
    Union[Annotated[list[SweepValue] | list[dict[str, list[SweepValue]]], Tag("values")],
          Annotated[RandomSearch, Tag("random")]],
    Discriminator(lambda v: "random" if isinstance(v, (dict, RandomSearch)) else "values")]


TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def _slurm_time(value: str | int) -> str:
    """SLURM time limits: minutes, MM:SS, HH:MM:SS, D-HH or D-HH:MM:SS."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a time limit in minutes must be positive")
        return str(value)
    if not TIME.match(value.strip()):
        raise ValueError(f"{value!r} is not a SLURM time limit: write minutes (90), "
                         "HH:MM:SS (1:30:00) or D-HH:MM:SS (2-00:00:00)")
    return value.strip()


SlurmTime = Annotated[Union[int, str], AfterValidator(_slurm_time)]


class SlurmResources(Strict):
    """What one SLURM job asks for. Unset fields inherit (kind section -> slurm section -> default)."""

    partition: str | None = Field(None, description="partition (default: the cluster's default partition)")
    account: str | None = Field(None, description="account to charge")
    qos: str | None = Field(None, description="quality of service")
    time: SlurmTime | None = Field(None, description="time limit per job: minutes or D-HH:MM:SS (default 60)")
    nodes: PositiveInt | None = Field(
        None, description="nodes per job (default 1); a training job on several tasks (nodes x tasks_per_node) "
        "trains one model with torch.distributed (DDP), path jobs run in one task")
    tasks_per_node: PositiveInt | None = Field(
        None, description="tasks (processes) per node (default 1); one per GPU for multi-GPU training")
    gpus_per_node: NonNegativeInt | None = Field(None, description="GPUs per node (default 0)")
    cpus_per_task: PositiveInt | None = Field(
        None, description="CPUs per task (default 1); the job trains with this many torch threads")
    mem: str | None = Field(None, description="memory per node, e.g. 4G (default: the cluster's default)")
    constraint: str | None = Field(None, description="node features, e.g. a100")
    array_parallelism: PositiveInt | None = Field(
        None, description="at most this many tasks of one job array run at once")
    extra: dict[str, Union[str, int, bool]] = Field(
        {}, description="more sbatch options, e.g. {exclude: node7, reservation: x}; true = a flag")


class SlurmLaunch(SlurmResources):
    """SLURM settings for every job, with per-kind overrides."""

    train: SlurmResources = Field(SlurmResources(), description="overrides for training jobs")
    path: SlurmResources = Field(SlurmResources(), description="overrides for path-query jobs")


class Launch(Strict):
    executor: Literal["local", "slurm"] = Field("local", description="where jobs run: local processes or SLURM")
    workers: PositiveInt | None = Field(
        None, description="parallel jobs (local executor); default: the CPU count")
    slurm: SlurmLaunch = Field(SlurmLaunch(), description="SLURM settings (executor: slurm)")


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
    sweep: dict[str, SweepEntry] = Field(
        {}, description="axis -> values (cartesian product); `zip: [{a: [..], b: [..]}]` varies axes together; "
        "`random: {n: 20, seed: 0, axes: {axis: {loguniform: [lo, hi]}}}` adds a dimension `sample` of random points")
    runs: dict[Name, AnyRegime] = Field(min_length=1)
    paths: dict[Name, AnyPath] = {}
    claims: dict[Name, AnyClaim] = Field(
        {}, description="named hypotheses decided from the results (analysis only: never part of a job id)")
    seeds: Seeds | None = Field(
        None, description="adaptive seeds instead of a swept seed: more seeds, wave by wave, until every claim is "
        "decided (studyspec run)")
    launch: Launch = Launch()
    output: Output = Output()

    @field_validator("sweep", mode="before")
    @classmethod
    def _random_only(cls, sweep: Any) -> Any:
        for axis, values in (sweep.items() if isinstance(sweep, dict) else ()):
            if axis != "random" and isinstance(values, dict):
                raise ValueError(f"sweep axis {axis!r} needs a non-empty list of values "
                                 "(only `random` takes a mapping: {n: N, axes: {axis: distribution}})")
        return sweep

    @field_validator("sweep")
    @classmethod
    def _sweep_shape(cls, sweep: dict[str, Any]) -> dict[str, Any]:
        for axis, values in sweep.items():
            if (axis == "random") != isinstance(values, RandomSearch):
                raise ValueError("`random` takes {n: N, axes: {axis: distribution}}" if axis == "random"
                                 else f"sweep axis {axis!r} needs a non-empty list of values")
            if axis == "random":
                continue
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
