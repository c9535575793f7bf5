"""Merge the shards of a plan's jobs into one xarray Dataset (netCDF)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from . import __version__
from .plan import Plan
from .store import Store

ATTRS = {
    "train_loss": ("training loss (mean cross-entropy over the training set)", "nats"),
    "train_acc": ("training accuracy", "1"),
    "test_loss": ("test loss (mean cross-entropy over the test set)", "nats"),
    "test_acc": ("test accuracy", "1"),
    "weight_sparsity": ("fraction of prunable weights equal to zero", "1"),
    "barrier": ("max training loss along the path minus the larger endpoint loss", "nats"),
    "monotone": ("1 if the training loss never rises along the path on [0, 1]", "1"),
    "seconds": ("wall-clock time of the job", "s"),
    "barrier_linear": ("max training loss along the path minus the straight line between the endpoint losses",
                       "nats"),
    "max_rise": ("largest rise of the training loss from one path point to the next on [0, 1]", "nats"),
    "mean_loss": ("length-weighted mean training loss along the path on [0, 1]", "nats"),
    "length": ("length of the path on [0, 1] in parameter space (Euclidean)", "1"),
    "curve_loss": ("mean mini-batch training loss of the curve over the last 10% of its training", "nats"),
    "path_sparsity": ("fraction of prunable weights held at zero along the path (its mask)", "1"),
}
RENAME = {"sparsity": "weight_sparsity"}  # a measured quantity vs the swept target


def _coord_values(values):
    flat = [v[0] if len(v) == 1 else v for v in values]
    if all(isinstance(v, (bool, int, float, str)) for v in flat):
        return np.asarray(flat)
    return np.asarray([json.dumps(v) for v in flat])


def collect(plan: Plan, store: Store, spec_text: str = "") -> "xarray.Dataset":
    import xarray as xr

    sweep = {d.name: d for d in plan.dims}
    shape = [len(d.values) for d in plan.dims]
    data_vars: dict = {}
    coords: dict = {}
    for d in plan.dims:
        coords[d.name] = (d.name, _coord_values([v[:1] for v in d.values]))
        for k, axis in enumerate(d.axes[1:], start=1):  # zipped axes ride along
            coords[axis.rsplit(".", 1)[-1]] = (d.name, _coord_values([v[k:k + 1] for v in d.values]))
    versions = {}
    for kind, name_dim, curve_dim, prefix in (("train", "run", "step", ""), ("path", "path", "t", "path_")):
        cells = [c for c in plan.cells if c.kind == kind]
        if not cells:
            continue
        names = list(dict.fromkeys(c.name for c in cells))
        shards = {c.job: store.read_shard(c.job) for c in cells if store.is_done(c.job)}
        for s in shards.values():
            versions.update(s.get("versions", {}))
        grid = sorted({round(float(x), 9) for s in shards.values() for x in s["coord"]})
        where = {x: i for i, x in enumerate(grid)}
        dims_ = (name_dim, *sweep, curve_dim)
        curves: dict[str, np.ndarray] = {}
        scalars: dict[str, np.ndarray] = {}
        ids = np.full([len(names), *shape], "", dtype=object)
        for c in cells:
            at = (names.index(c.name), *(c.index[d] for d in sweep))
            ids[at] = c.job
            s = shards.get(c.job)
            if s is None:
                continue
            cols = [where[round(float(x), 9)] for x in s["coord"]]
            for var, values in s["vars"].items():
                arr = curves.setdefault(var, np.full([len(names), *shape, len(grid)], np.nan))
                arr[at + (cols,)] = np.asarray(values, dtype=float)
            for var, value in {**s.get("scalars", {}), "seconds": s.get("seconds", np.nan)}.items():
                arr = scalars.setdefault(var, np.full([len(names), *shape], np.nan))
                arr[at] = float(value)
        coords[name_dim] = (name_dim, np.asarray(names))
        coords[curve_dim] = (curve_dim, np.asarray(grid, dtype=int if curve_dim == "step" else float))
        for var, arr in curves.items():
            data_vars[prefix + RENAME.get(var, var)] = (dims_, arr, _attrs(var, kind))
        for var, arr in scalars.items():
            data_vars[prefix + RENAME.get(var, var)] = (dims_[:-1], arr, _attrs(var, kind))
        data_vars[f"{prefix or 'run_'}job_id"] = (dims_[:-1], ids.astype(str),
                                                  {"long_name": "studyspec job id (store directory)"})
    ds = xr.Dataset(data_vars, coords=coords)
    ds["step"].attrs.update(long_name="optimizer step", units="1") if "step" in ds else None
    ds["t"].attrs.update(long_name="position along the path (0 = from, 1 = to)", units="1") if "t" in ds else None
    ds.attrs.update({
        "Conventions": "CF-1.10",
        "title": f"studyspec study {plan.study.study}",
        "study": plan.study.study,
        "spec": spec_text,
        "studyspec_version": __version__,
        "xarray_version": xr.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jobs_total": len(plan.jobs),
        "jobs_collected": sum(store.is_done(j) for j in plan.jobs),
        **{f"{k}_version": v for k, v in versions.items()},
    })
    return ds


def _attrs(var: str, kind: str) -> dict:
    long_name, units = ATTRS.get(RENAME.get(var, var), (var.replace("_", " "), "1"))
    if kind == "path" and var != "seconds":
        long_name += " along the path"
    return {"long_name": long_name, "units": units}


def write(ds, path: Path) -> Path:
    """Write netCDF atomically (temp file + rename)."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="netcdf4")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
