"""What every executor offers (local processes, SLURM): launch, status, wait, cancel,
with the same result types, so the command line never asks which executor it talks to.

- ``launch(plan, store, console)`` starts (local: runs to the end) every job that is
  neither done nor already queued or running, and returns a ``Launched``.
- ``status(plan, store)`` gives each job one of ``STATES`` (and the executor's id of it).
- ``wait(plan, store)`` blocks until no job is queued or running; the final status.
- ``cancel(plan, store)`` stops the study's queued and running jobs; their ids.

A job is done exactly when its shard exists (studyspec/store.py), whoever ran it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..plan import Plan
from ..store import Store

STATES = ("done", "queued", "running", "failed", "cancelled", "corrupt", "to run")


@dataclass
class Launched:
    """What one launch did. Job ids throughout."""

    started: list[str] = field(default_factory=list)  # local: ran to the end; SLURM: submitted
    done: list[str] = field(default_factory=list)  # done before this launch
    active: list[str] = field(default_factory=list)  # queued or running from an earlier launch: left alone
    failed: dict[str, str] = field(default_factory=dict)  # failed during this launch -> its log
    blocked: dict[str, str] = field(default_factory=dict)  # not started: -> the failed upstream job
    seconds: float = 0.0
    summary: list[str] = field(default_factory=list)  # what the user should read (counts, arrays, where to look)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


@dataclass
class Status:
    """Where each job of a plan stands."""

    states: dict[str, str]  # job id -> one of STATES
    tasks: dict[str, str | None] = field(default_factory=dict)  # job id -> the executor's id of it (SLURM task)


@dataclass
class Options:
    """Launch settings given on the command line; each executor reads those it knows."""

    workers: int | None = None  # local: parallel jobs
    slurm: dict = field(default_factory=dict)  # SLURM: --partition ... (field -> value or None)
    sets: list[str] = field(default_factory=list)  # SLURM: --slurm KEY=VALUE


def file_state(store: Store, job_id: str) -> str:
    """A job's state from its run directory alone: done (a valid shard), running (its lock is
    held), corrupt (a shard that is not valid), failed (a log but no shard) or to run."""
    problem = store.shard_problem(job_id)
    if problem is None:
        return "done"
    if store.holder(job_id):
        return "running"
    if problem:
        return "corrupt"
    return "failed" if store.log(job_id).exists() else "to run"


class Executor(ABC):
    name: str = ""
    columns: tuple[str, ...] = ("running", "failed")  # the states besides done/to run that status shows

    @abstractmethod
    def launch(self, plan: Plan, store: Store, console) -> Launched: ...

    @abstractmethod
    def status(self, plan: Plan, store: Store) -> Status: ...

    @abstractmethod
    def cancel(self, plan: Plan, store: Store) -> list[str]: ...

    def wait(self, plan: Plan, store: Store, poll: float = 2.0, timeout: float | None = None) -> Status:
        """Block until no job of the plan is queued or running; the final status."""
        return self.status(plan, store)
