"""The whole study spec."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator

from .base import Name, PathText, Seed, Strict, Text
from .claims import AnyClaim, Seeds
from .paths import AnyPath
from .regimes import AnyRegime
from .search import RandomSearch
from .data import Data
from .model import Model
from .train import Train

MAX_JOBS = 50_000  # default of launch.max_jobs
Scalar = Union[bool, int, float, str]
SweepValue = Union[Scalar, list[Scalar]]
# an axis's values, a list of zip groups, or (under `random`) a random search
SweepEntry = Annotated[
    Union[Annotated[list[SweepValue] | list[dict[str, list[SweepValue]]], Tag("values")],
          Annotated[RandomSearch, Tag("random")]],
    Discriminator(lambda v: "random" if isinstance(v, (dict, RandomSearch)) else "values")]


TIME = re.compile(r"(?:(\d{1,4})-)?(\d{1,7})(?::(\d{1,2}))?(?::(\d{1,2}))?")
MAX_MINUTES = 366 * 24 * 60  # a year


def _slurm_time(value: str | int) -> str:
    """SLURM time limits: minutes, MM:SS, HH:MM:SS, D-HH or D-HH:MM:SS; positive, at most a year."""
    if isinstance(value, bool):
        raise ValueError("a time limit is a number of minutes or D-HH:MM:SS, not a boolean")
    text = str(value).strip()
    m = TIME.fullmatch(text)
    if not m:
        raise ValueError(f"{str(value)[:40]!r} is not a SLURM time limit: write minutes (90), "
                         "HH:MM:SS (1:30:00) or D-HH:MM:SS (2-00:00:00)")
    days, a, b, c = (int(g) if g else 0 for g in m.groups())
    if m.group(1):  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + b * 60 + c
    elif m.group(4):  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif m.group(3):  # MM:SS
        seconds = a * 60 + b
    else:  # minutes
        seconds = a * 60
    if seconds <= 0:
        raise ValueError(f"time limit {text!r} is zero: give a positive time, e.g. 60 (minutes)")
    if seconds > MAX_MINUTES * 60:
        raise ValueError(f"time limit {text!r} is more than a year")
    return text


SlurmTime = Annotated[Union[int, str], AfterValidator(_slurm_time)]


def _shell_line(value: str) -> str:
    """One complete shell command (checked with `bash -n` where bash is found)."""
    if not value.strip():
        raise ValueError("an empty setup line: remove it")
    if "\n" in value or "\r" in value:
        raise ValueError("a setup line holds one command: write one list item per line")
    bash = shutil.which("bash")
    if bash:
        proc = subprocess.run([bash, "-n", "-c", value], capture_output=True, text=True)
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()[-1].split(": ", 2)[-1] if proc.stderr.strip() else "syntax error"
            err = re.sub(r"^line \d+: ", "", err)
            raise ValueError(f"{value!r} is not a complete shell command (bash -n: {err})")
    return value


def _python_command(value: str) -> str:
    """A command line that runs Python: a path or a wrapper such as `apptainer exec --nv image.sif python`."""
    if "\n" in value or "\r" in value:
        raise ValueError("the python command is one line")
    try:
        words = shlex.split(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a command line ({e})") from None
    if not words:
        raise ValueError("an empty python command: leave it out to use the launching interpreter")
    return value.strip()


ShellLine = Annotated[str, AfterValidator(_shell_line)]
PythonCommand = Annotated[str, AfterValidator(_python_command)]


class SlurmResources(Strict):
    """What one SLURM job asks for. Unset fields inherit (kind section -> slurm section -> default)."""

    partition: Text | None = Field(None, description="partition (default: the cluster's default partition)")
    account: Text | None = Field(None, description="account to charge")
    qos: Text | None = Field(None, description="quality of service")
    time: SlurmTime | None = Field(None, description="time limit per job: minutes or D-HH:MM:SS (default 60)")
    nodes: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None, description="nodes per job (default 1); a training job on several tasks (nodes x tasks_per_node) "
        "trains one model with torch.distributed (DDP), path jobs run in one task")
    tasks_per_node: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        None, description="tasks (processes) per node (default 1); one per GPU for multi-GPU training")
    gpus_per_node: Annotated[int, Field(ge=0, le=1024)] | None = Field(None, description="GPUs per node (default 0)")
    cpus_per_task: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        None, description="CPUs per task (default 1); the job trains with this many torch threads")
    mem: Text | None = Field(None, description="memory per node, e.g. 4G (default: the cluster's default)")
    constraint: Text | None = Field(None, description="node features, e.g. a100")
    array_parallelism: Annotated[int, Field(ge=1, le=10**7)] | None = Field(
        None, description="at most this many tasks of one job array run at once")
    extra: dict[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")], Union[Text, int, bool]] = Field(
        {}, description="more sbatch options, e.g. {exclude: node7, reservation: x}; true = a flag")
    setup: list[ShellLine] | None = Field(
        None, description="shell lines each job runs before Python (module load ..., source .../activate, "
        "export ...); those of launch.slurm run first, then the job kind's, then the command line's")
    python: PythonCommand | None = Field(
        None, description="the command that runs Python in each job: an interpreter (/path/env/bin/python) or a "
        "wrapper (apptainer exec --nv image.sif python); it must import studyspec (default: the launching "
        "interpreter)")


class SlurmLaunch(SlurmResources):
    """SLURM settings for every job, with per-kind overrides."""

    train: SlurmResources = Field(SlurmResources(), description="overrides for training jobs")
    path: SlurmResources = Field(SlurmResources(), description="overrides for path-query jobs")


class Launch(Strict):
    executor: Literal["local", "slurm"] = Field("local", description="where jobs run: local processes or SLURM")
    workers: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        None, description="parallel jobs (local executor); default: the CPU count")
    max_jobs: Annotated[int, Field(ge=1, le=10**8)] = Field(
        MAX_JOBS, description="refuse a study of more jobs than this (a sweep too large by mistake); "
        "raise it to plan a larger study")
    slurm: SlurmLaunch = Field(SlurmLaunch(), description="SLURM settings (executor: slurm)")


class Output(Strict):
    store: PathText = Field("store", description="directory of job run directories (shared by studies)")
    results: PathText = Field("results", description="directory of collected <study>.nc files")


def _kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list"


def _axis_values(axis: str, values: list, coordinate: bool = True) -> None:
    """One axis's values: not empty, all of one kind, and (a coordinate) no value twice."""
    if not values:
        raise ValueError(f"sweep axis {axis!r} needs a non-empty list of values")
    kinds = sorted({_kind(v) for v in values})
    if len(kinds) > 1:
        raise ValueError(f"sweep axis {axis!r} mixes {' and '.join(kinds)}s: give values of one kind "
                         f"(a coordinate of the results has one type)")
    if coordinate:
        seen = set()
        for v in values:
            key = float(v) if _kind(v) == "number" else json.dumps(v, sort_keys=True)
            if key in seen:
                raise ValueError(f"sweep axis {axis!r} gives {v!r} twice: each value once "
                                 "(it becomes a coordinate of the results)")
            seen.add(key)


class Study(Strict):
    """A study: runs and path queries repeated at every point of a sweep."""

    study: Name = Field(description="study name; names results/<study>.nc")
    data: Data
    model: Model
    train: Train
    seed: Seed = Field(0, description="seed, unless swept")
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
                if not values:
                    raise ValueError("`zip` needs at least one group: zip: [{axis: [..], axis: [..]}]")
                for group in values:
                    if not isinstance(group, dict) or not group:
                        raise ValueError("`zip` holds a list of groups: zip: [{axis: [..], axis: [..]}]")
                    lengths = {len(v) for v in group.values()}
                    if len(lengths) > 1:
                        raise ValueError(f"zipped axes {sorted(group)} need lists of one length, got {sorted(lengths)}")
                    for name, vals in group.items():
                        _axis_values(name, vals, coordinate=name == next(iter(group)))
            elif not values or any(isinstance(v, dict) for v in values):
                raise ValueError(f"sweep axis {axis!r} needs a non-empty list of values")
            else:
                _axis_values(axis, values)
        return sweep
