"""The on-disk layout of jobs: one directory per job id. This class alone knows it."""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_text

# The module that runs one job (`python -m WORKER RUN_DIR`): it lives with the torch code in
# runners/, and the engine starts it by name only, never importing it.
WORKER = "runners.worker"


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old content or the new one, never half."""
    write_text(path, text)


class Store:
    """`<root>/<job id>/` holds job.json, the artifacts, log.txt and shard.json.

    A job is done exactly when its shard.json exists: the shard is written last,
    atomically, so a crashed job never looks done.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()

    def run_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def job_file(self, job_id: str) -> Path:
        return self.run_dir(job_id) / "job.json"

    def shard(self, job_id: str) -> Path:
        return self.run_dir(job_id) / "shard.json"

    def log(self, job_id: str) -> Path:
        return self.run_dir(job_id) / "log.txt"

    def lock(self, job_id: str) -> Path:
        return self.run_dir(job_id) / "lock"

    @property
    def cache_dir(self) -> Path:
        return self.root / "_cache"

    def slurm_dir(self, study: str) -> Path:
        """`<root>/_slurm/<study>/`: batch scripts, task lists and SLURM's own output files."""
        return self.root / "_slurm" / study

    def slurm_record(self, study: str) -> Path:
        """`<root>/_slurm/<study>.json`: which SLURM task holds which job id (latest launch wins)."""
        return self.root / "_slurm" / f"{study}.json"

    def read_slurm(self, study: str) -> dict:
        path = self.slurm_record(study)
        return json.loads(path.read_text()) if path.exists() else {"jobs": {}, "arrays": []}

    def write_slurm(self, study: str, record: dict) -> None:
        write_atomic(self.slurm_record(study), json.dumps(record, indent=1, sort_keys=True))

    def is_done(self, job_id: str) -> bool:
        return self.shard(job_id).exists()

    def read_shard(self, job_id: str) -> dict:
        return json.loads(self.shard(job_id).read_text())

    @staticmethod
    def job_record(job) -> dict:
        """The content of job.json for `job` (a plan.Job)."""
        return {"id": job.id, "kind": job.kind, "config": job.config, "key": job.key, "deps": list(job.deps)}

    def write_job(self, record: dict) -> Path:
        """Write job.json (unless it holds this record already); the run directory."""
        path, text = self.job_file(record["id"]), json.dumps(record, indent=1, sort_keys=True)
        if not (path.exists() and path.read_text() == text):
            write_atomic(path, text)
        return path.parent

    def prepare(self, job) -> Path:
        """Write job.json for `job` (a plan.Job) and return its run directory."""
        return self.write_job(self.job_record(job))
