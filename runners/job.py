"""Entry point called by the worker (runners/worker.py; see docs/internals.md).

``run(job, run_dir, inputs, cache_dir) -> dict``: validate the job record's ``config``
(job.json) into its typed job (``studyspec.spec.jobs``: a TrainJob -> runners.train.train,
a PathJob -> runners.paths.run_path), write the artifacts into ``run_dir`` and return the
metrics (JSON-serialisable: floats, ints, lists). Thread count is left to the caller (the
worker / tests set ``torch.set_num_threads``).
"""
from __future__ import annotations

from pathlib import Path

from studyspec.spec.jobs import TrainJob, parse_job


def run(job: dict, run_dir: Path, inputs: dict[str, Path], cache_dir: Path) -> dict:
    from runners import paths, train

    spec = parse_job(job["config"])
    run_dir, cache_dir = Path(run_dir), Path(cache_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    inputs = {k: Path(v) for k, v in (inputs or {}).items()}
    runner = train.train if isinstance(spec, TrainJob) else paths.run_path
    return runner(spec, run_dir, inputs, cache_dir)
