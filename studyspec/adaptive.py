"""Adaptive seeds (`seeds: {start, wave, max}`): more seeds, wave by wave, until every claim is decided.

The seeds of a study are 0 .. n-1; a job's id depends on its seed, never on n, so a new
wave only adds jobs (seeds n .. n+wave-1) and every finished seed keeps its job.

How many seeds a study has now is read from the store, not kept in a file: n is the
largest wave count start, start+wave, ... whose new seeds have at least one job started
(a run directory). So `plan`, `status`, `collect` and `report` see every wave that was
begun, on any executor.

- `studyspec run` (local or SLURM): run the wave, collect, decide the claims; while some
  claim is undecided and n < max, add a wave and go on.
- `studyspec launch` (SLURM, returns at once): when the current wave is complete, it
  collects, decides, and submits the next wave if a claim is undecided; otherwise it
  submits what is missing of the current wave. Launching again after each wave (by hand,
  or from cron) therefore walks the waves; `studyspec run -e slurm` does it in one call.
"""

from __future__ import annotations

from dataclasses import replace

from .spec.claims import with_seeds


def seed_count(loaded, store) -> int:
    """The seeds begun so far (at least `start`)."""
    study = loaded.study
    if study.seeds is None:
        return len(study.sweep.get("seed", [study.seed]))
    from .plan import build

    counts = study.seeds.counts()
    full = build(with_seeds(study, counts[-1]))
    index = {d.name: i for i, d in enumerate(full.dims)}
    began = set()
    for cell in full.cells:
        if store.run_dir(cell.job).exists():
            began.add(cell.index["seed"] if "seed" in index else 0)
    n = counts[0]
    for c in counts[1:]:
        if any(s in began for s in range(n, c)):
            n = c
        else:
            break
    return n


def at_count(loaded, n: int):
    """The loaded spec with seeds 0 .. n-1 (adaptive studies only)."""
    if loaded.study.seeds is None:
        return loaded
    return replace(loaded, study=with_seeds(loaded.study, n))


def current(loaded, store):
    """The loaded spec at the seed count begun in the store."""
    return at_count(loaded, seed_count(loaded, store)) if loaded.study.seeds is not None else loaded


def next_count(loaded, nc_path) -> tuple[int | None, list[str]]:
    """After a complete wave collected into `nc_path`: (the next seed count, the undecided
    claims at their sweep points), or (None, ...) when every claim is decided or max is reached."""
    study = loaded.study
    if study.seeds is None:
        return None, []
    import xarray as xr

    from analysis.claims import decide, undecided

    with xr.open_dataset(nc_path) as ds:
        open_ = [f"{d.claim}" + (f" ({d.where})" if d.where else "") for d in undecided(decide(ds, dict(study.claims)))]
    n = len(study.sweep["seed"])
    bigger = [c for c in study.seeds.counts() if c > n]
    if not open_ or not bigger:
        return None, open_
    return bigger[0], open_
