"""Entry point called by the worker (runners/worker.py) (see docs/internals.md).

``run(job, run_dir, inputs, cache_dir) -> dict``: dispatch on ``job["kind"]``
(``train`` -> runners.train.train, ``path`` -> runners.paths.run_path), write the
artifacts into ``run_dir`` and return the metrics (JSON-serialisable: floats, ints,
lists). Thread count is left to the caller (the worker / tests set
``torch.set_num_threads``).
"""
from __future__ import annotations

from pathlib import Path


def run(job: dict, run_dir: Path, inputs: dict[str, Path], cache_dir: Path) -> dict:
    from runners import paths, train

    kinds = {"train": train.train, "path": paths.run_path}
    kind = job["kind"]
    if kind not in kinds:
        raise ValueError(f"unknown job kind {kind!r}; known: {sorted(kinds)}")
    run_dir, cache_dir = Path(run_dir), Path(cache_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    inputs = {k: Path(v) for k, v in (inputs or {}).items()}
    return kinds[kind](job["config"], run_dir, inputs, cache_dir)
