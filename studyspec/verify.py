"""`studyspec verify`: check every job of a plan in the store, and find what is corrupt.

A job counts as done iff its shard is valid (studyspec/store.py: check_shard). Verify goes
further, for every job whose shard exists: the shard's shape, the run directory (never a
symbolic link), and the SHA-256 of each artifact against the hash its shard recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .plan import Plan
from .store import Store, StoreError


@dataclass
class Report:
    ok: list[str] = field(default_factory=list)  # jobs with a shard (checked)
    corrupt: dict[str, list[str]] = field(default_factory=dict)  # job id -> what is wrong
    not_done: int = 0


def verify_job(store: Store, job_id: str) -> list[str] | None:
    """What is wrong with a job that has a shard ([] if nothing), or None if it has no shard."""
    try:
        store.check_dir(job_id)
    except StoreError as e:
        return [str(e)]
    problem = store.shard_problem(job_id)
    if problem == "":
        return None
    if problem is not None:
        return [problem]
    try:
        return store.check_artifacts(job_id)
    except (StoreError, OSError) as e:
        return [str(e)]


def verify_plan(plan: Plan, store: Store, progress=None) -> Report:
    report = Report()
    for i, jid in enumerate(plan.jobs, 1):
        problems = verify_job(store, jid)
        if problems is None:
            report.not_done += 1
            continue
        report.ok.append(jid)
        if problems:
            report.corrupt[jid] = problems
        if progress is not None and i % 200 == 0:
            progress.print(f"verified {i}/{len(plan.jobs)} jobs")
    return report
