"""Where the jobs of a plan run. Every executor implements base.Executor (launch, status,
wait, cancel, with the same result types): local.py (processes on this machine) and
slurm/ (job arrays queued through submitit)."""

from __future__ import annotations

from .base import STATES, Executor, Launched, Options, Status

NAMES = ("local", "slurm")


def create(name: str, loaded, options: Options | None = None) -> Executor:
    """The executor called `name` for the loaded spec; command-line settings are checked here."""
    if name == "slurm":
        from .slurm import SlurmExecutor

        return SlurmExecutor(loaded, options)
    from .local import LocalExecutor

    return LocalExecutor(loaded, options)


def of_study(loaded, store, name: str | None = None) -> Executor:
    """The executor that launched the study: `name` if given, else SLURM when the store holds
    a SLURM record of the study, else the spec's launch.executor."""
    if name is None:
        from .slurm.record import Record

        name = "slurm" if Record(store, loaded.study.study).exists() else loaded.study.launch.executor
    return create(name, loaded)


__all__ = ["STATES", "Executor", "Launched", "Options", "Status", "NAMES", "create", "of_study"]
