"""Collect at scale: 10^4 finished shards merged into one netCDF (issue 14, target 2).

A quick-start-shaped study swept over seeds x sparsities (4 runs + 1 path per point, so
--seeds 589 gives 10,013 jobs) is planned for real; every job gets a synthetic shard in
the store's real format (the keys, lengths and types the runners write: 31 evaluations of
a 3000-step run, 29 path points). Measured in one run, on the same shards:

1. full collect: `studyspec.collect.collect_to` into a new .nc (no earlier collect);
2. incremental collect after --new more jobs finish (the earlier .nc + index reused);
3. the obvious alternative: every job writes its own small netCDF, and collect is
   `xr.open_mfdataset` over them (one call per job kind, then merge) + `to_netcdf`.

    .venv/bin/python bench/collect_scale.py --seeds 589 --new 100 [--root DIR] [--baseline-limit S]

The shards (and the per-job netCDFs of the baseline) are written once into --root and
reused by later runs with the same --seeds. The baseline needs dask
(`pip install dask`; not a dependency of studyspec); it is stopped after --baseline-limit
seconds, which then gives a lower bound of the speed-up. Print `uptime` beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studyspec.collect import INDEX_SUFFIX, collect_to  # noqa: E402
from studyspec.load import loads  # noqa: E402
from studyspec.plan import build  # noqa: E402
from studyspec.store import SHARD_FORMAT, Store, write_atomic  # noqa: E402

SPARSITIES = [0.8, 0.9, 0.95, 0.98]
MACHINE = {"cpu": "AMD EPYC 7B13", "cpu_flags": "avx2 fma", "cpu_capability": "AVX2", "gpu": ""}


def spec_text(seeds: int) -> str:
    """seeds x 4 sparsities x (prune, scratch, lottery, path) + one dense job per seed: 17 jobs a seed."""
    return f"""\
study: collect_scale
data:  {{dataset: mnist1d, batch_size: 256}}
model: {{arch: mlp, hidden: [300, 100]}}
train: {{steps: 3000, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}, schedule: {{name: cosine}}, eval_every: 100}}
sweep:
  seed: {list(range(seeds))}
  sparsity: {SPARSITIES}
runs:
  prune:   {{regime: prune, schedule: {{begin: 0.1, end: 0.6, every: 30}}}}
  scratch: {{regime: fixed_mask, mask: prune.final, init: fresh}}
  lottery: {{regime: fixed_mask, mask: prune.final, init: prune.init}}
  dense:   {{regime: dense}}
paths:
  scratch_to_pruned: {{kind: linear, from: scratch.final, to: prune.final, points: 29, range: [-0.2, 1.2]}}
"""


def train_shard(job_id: str, rng: random.Random) -> dict:
    coord = list(range(0, 3001, 100))
    rec = {k: [rng.random() for _ in coord] for k in
           ("train_loss", "train_acc", "test_loss", "test_acc", "weight_sparsity", "grad_norm")}
    scalars = {f"final_{k}": v[-1] for k, v in rec.items()}
    scalars.update(n_params=42310, n_prunable=42000, n_nonzero_prunable=2100, steps=3000)
    return {"dim": "step", "coord": coord, "vars": rec, "scalars": scalars, "job": job_id,
            "seconds": 30 * rng.random(), "versions": {"torch": "2.14.1", "python": "3.11.2"}, "machine": MACHINE,
            "format": SHARD_FORMAT}


def path_shard(job_id: str, rng: random.Random) -> dict:
    ts = [round(-0.2 + 1.4 * i / 28, 9) for i in range(29)]
    rec = {k: [rng.random() for _ in ts] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    scalars = {"barrier": rng.random(), "monotone": rng.random() < 0.5, "train_loss_from": rng.random(),
               "train_loss_to": rng.random(), "barrier_linear": rng.random(), "max_rise": rng.random(),
               "mean_loss": rng.random(), "length": 10 * rng.random(), "mask_sparsity": 0.95}
    return {"dim": "t", "coord": ts, "vars": rec, "scalars": scalars, "job": job_id,
            "seconds": 3 * rng.random(), "versions": {"torch": "2.14.1", "python": "3.11.2"}, "machine": MACHINE,
            "format": SHARD_FORMAT}


def job_netcdf(plan, job, shard: dict, path: Path) -> None:
    """The baseline's per-job file (what a job would write instead of its JSON shard): its
    numbers at its one (name, sweep point) cell, with the coordinates that place it. Written
    with netCDF4 directly (xarray's to_netcdf takes ~40 ms a file)."""
    import netCDF4

    cell = next(c for c in plan.cells if c.job == job.id)
    name_dim, curve_dim, prefix = ("run", "step", "") if job.kind == "train" else ("path", "t", "path_")
    lead = (name_dim, *(d.name for d in plan.dims))
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension(curve_dim, len(shard["coord"]))
        f.createVariable(curve_dim, "i8" if curve_dim == "step" else "f8", (curve_dim,))[:] = shard["coord"]
        f.createDimension(name_dim, 1)
        f.createVariable(name_dim, str, (name_dim,))[0] = cell.name
        for d in plan.dims:
            f.createDimension(d.name, 1)
            f.createVariable(d.name, "f8" if d.name == "sparsity" else "i8", (d.name,))[:] = \
                [d.values[cell.index[d.name]][0]]
        for k, v in shard["vars"].items():
            f.createVariable(prefix + k, "f8", (*lead, curve_dim))[:] = \
                np.asarray(v, dtype=float).reshape(*(1,) * len(lead), -1)
        for k, v in {**shard["scalars"], "seconds": shard["seconds"]}.items():
            f.createVariable(prefix + k, "f8", lead)[:] = float(v)
        f.createVariable(f"{prefix or 'run_'}job_id", str, lead)[(0,) * len(lead)] = job.id


def generate(root: Path, seeds: int, held: int):
    """Plan the study, write every shard (the last `held` ones aside, not yet done) and the
    per-job netCDFs of the baseline. Reused when root already holds them."""
    text = spec_text(seeds)
    loaded = loads(text)
    plan = build(loaded.study)
    store = Store(root / "store")
    held_dir = root / "held"
    ncdir = root / "per-job-nc"
    marker = root / "generated.json"
    if marker.exists() and json.loads(marker.read_text()) == {"jobs": len(plan.jobs), "held": held}:
        return loaded, plan, store, sorted(held_dir.iterdir())
    shutil.rmtree(root, ignore_errors=True)
    held_dir.mkdir(parents=True)
    ncdir.mkdir()
    rng = random.Random(0)
    ids = list(plan.jobs)
    t0 = time.time()
    for i, jid in enumerate(ids):
        job = plan.jobs[jid]
        shard = (train_shard if job.kind == "train" else path_shard)(jid, rng)
        target = store.shard(jid)
        target.parent.mkdir(parents=True, exist_ok=True)
        text_ = json.dumps(shard)
        if i >= len(ids) - held:
            (held_dir / jid).write_text(text_)
        else:
            target.write_text(text_)
        job_netcdf(plan, job, shard, ncdir / f"{jid}.nc")
        if i % 1000 == 0:
            print(f"  generated {i}/{len(ids)} shards ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    marker.write_text(json.dumps({"jobs": len(plan.jobs), "held": held}))
    return loaded, plan, store, sorted(held_dir.iterdir())


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def baseline(plan, root: Path, out: Path):
    import xarray as xr

    ncdir = root / "per-job-nc"
    import warnings

    warnings.simplefilter("ignore", FutureWarning)
    parts = []
    for kind in ("train", "path"):
        files = [ncdir / f"{j.id}.nc" for j in plan.jobs.values() if kind == j.kind]
        if files:
            parts.append(xr.open_mfdataset(files, combine="by_coords", engine="netcdf4", join="outer"))
    ds = xr.merge(parts)
    ds.to_netcdf(out, engine="netcdf4")
    ds.close()
    for p in parts:
        p.close()
    return ds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=589, help="seeds (x17 jobs: 589 -> 10,013 jobs)")
    ap.add_argument("--new", type=int, default=100, help="jobs finishing between the two collects")
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "studyspec-collect-bench")
    ap.add_argument("--baseline-limit", type=float, default=600,
                    help="stop the open_mfdataset baseline after this many seconds (0: skip it) and "
                         "report a lower bound")
    args = ap.parse_args()

    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    loaded, plan, store, held = generate(args.root, args.seeds, args.new)
    n = len(plan.jobs)
    print(f"{n} jobs; {n - len(held)} shards done, {len(held)} to finish between the collects")
    out = args.root / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    nc = out / "study.nc"
    for jid in (p.name for p in held):  # not done yet
        store.shard(jid).unlink(missing_ok=True)

    got, wall, cpu = timed(lambda: collect_to(plan, store, nc, loaded.source.text))
    print(f"collect, {len(got.read)} shards, no earlier collect: {wall:.2f} s ({cpu:.2f} s CPU); "
          f"{nc.stat().st_size / 1e6:.1f} MB")
    for p in held:
        write_atomic(store.shard(p.name), p.read_text())
    got, wall_inc, cpu_inc = timed(lambda: collect_to(plan, store, nc, loaded.source.text))
    print(f"incremental collect, {len(got.read)} new shards read, {len(got.reused)} reused: "
          f"{wall_inc:.2f} s ({cpu_inc:.2f} s CPU)")
    assert len(got.read) == len(held), (len(got.read), len(held))
    inc = got.ds
    nc.unlink()
    nc.with_name(nc.name + INDEX_SUFFIX).unlink()
    got, wall_full, cpu_full = timed(lambda: collect_to(plan, store, nc, loaded.source.text))
    print(f"collect, all {len(got.read)} shards, no earlier collect: {wall_full:.2f} s ({cpu_full:.2f} s CPU)")
    for v in got.ds.data_vars:  # the incremental result is the full one
        a, b = got.ds[v].values, inc[v].values
        same = np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        assert same, f"incremental collect differs from a full one in {v}"
    if args.baseline_limit > 0:
        import multiprocessing

        proc = multiprocessing.get_context("fork").Process(target=baseline, args=(plan, args.root, out / "mf.nc"))
        t0 = time.perf_counter()
        proc.start()
        proc.join(args.baseline_limit)
        wall_b = time.perf_counter() - t0
        if proc.is_alive():
            proc.terminate()
            proc.join()
            print(f"xr.open_mfdataset over {n} per-job netCDFs + to_netcdf: not done after {wall_b:.0f} s "
                  f"(stopped); collect is more than {wall_b / wall_full:.1f}x faster")
        else:
            assert proc.exitcode == 0, proc.exitcode
            print(f"xr.open_mfdataset over {n} per-job netCDFs + to_netcdf: {wall_b:.2f} s; "
                  f"collect is {wall_b / wall_full:.1f}x faster")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
