"""Merge the shards of a plan's jobs into one xarray Dataset (netCDF).

The layout is documented in docs/results.md. Collecting is incremental: next to
`<study>.nc` an index `<study>.nc.index.json` records, for every merged job, the
stamp (mtime, size) of its shard and its coordinate grid. A later collect takes
an unchanged job's numbers from the previous .nc and reads only the shards that
are new or changed. Shards are written atomically by the worker (temp file +
rename), so a job is either done with a complete shard or not done; temp files
are never looked at.
"""

from __future__ import annotations

import datetime
import json
import sys
import uuid
from pathlib import Path

import numpy as np

from . import __version__
from .plan import Plan
from .store import Store, write_atomic

# variable -> (long_name, units); others may add entries here
ATTRS = {
    "train_loss": ("training loss (mean cross-entropy over the training set)", "nats"),
    "train_acc": ("training accuracy", "1"),
    "test_loss": ("test loss (mean cross-entropy over the test set)", "nats"),
    "test_acc": ("test accuracy", "1"),
    "weight_sparsity": ("fraction of prunable weights equal to zero", "1"),
    "barrier": ("max training loss along the path minus the larger endpoint loss", "nats"),
    "monotone": ("1 if the training loss never rises along the path on [0, 1]", "1"),
    "seconds": ("wall-clock time of the job", "s"),
    # train jobs (runners/train.py, runners/regimes.py)
    "grad_norm": ("L2 norm of the full-training-set loss gradient restricted to the mask", "1"),
    "round": ("imp round the evaluation belongs to (0 = dense training)", "1"),
    "steps": ("optimizer steps the job took (imp: all rounds)", "1"),
    "fraction_per_round": ("fraction of the remaining weights pruned per imp round", "1"),
    "mask_updates": ("number of dynamic sparse (rigl/set) mask updates", "1"),
    "small_dense_params": ("parameters of the small_dense model", "1"),
    "small_dense_target": ("non-zeros of the sparse model that small_dense matches", "1"),
    "sparsity": ("fraction of prunable weights equal to zero", "1"),
    "n_params": ("number of parameters", "1"),
    "n_prunable": ("number of prunable weights", "1"),
    "n_nonzero_prunable": ("number of non-zero prunable weights", "1"),
    "train_loss_from": ("training loss at the start of the path (t = 0)", "nats"),
    "train_loss_to": ("training loss at the end of the path (t = 1)", "nats"),
    "barrier_linear": ("max training loss along the path minus the straight line between the endpoint losses",
                       "nats"),
    "max_rise": ("largest rise of the training loss from one path point to the next on [0, 1]", "nats"),
    "mean_loss": ("length-weighted mean training loss along the path on [0, 1]", "nats"),
    "length": ("length of the path on [0, 1] in parameter space (Euclidean)", "1"),
    "curve_loss": ("mean mini-batch training loss of the curve over the last 10% of its training", "nats"),
    "mask_sparsity": ("fraction of prunable weights held at zero along the path (its mask)", "1"),
}
RENAME = {"sparsity": "weight_sparsity"}  # a measured quantity vs the swept target
FLAGS = {"monotone"}  # 0/1 quantities, stored as int8 (also any scalar a shard gives as a bool)
KINDS = (("train", "run", "step", ""), ("path", "path", "t", "path_"))  # kind, name dim, curve dim, prefix
INDEX_SUFFIX = ".index.json"


def _coord_values(values):
    flat = [v[0] if len(v) == 1 else v for v in values]
    if all(isinstance(v, (bool, int, float, str)) for v in flat):
        return np.asarray(flat)
    return np.asarray([json.dumps(v) for v in flat])


def _key(x) -> float:
    return round(float(x), 9)


def _stamp(store: Store, job_id: str) -> list[int] | None:
    """(mtime_ns, size) of a job's shard, None while the job is not done."""
    try:
        st = store.shard(job_id).stat()
    except FileNotFoundError:
        return None
    return [st.st_mtime_ns, st.st_size]


class _Previous:
    """The numbers of an earlier collect: its .nc plus the index written with it."""

    def __init__(self, nc: Path):
        import xarray as xr

        self.jobs: dict[str, dict] = {}
        self.ds = None
        index = nc.with_name(nc.name + INDEX_SUFFIX)
        if not (nc.exists() and index.exists()):
            return
        try:
            meta = json.loads(index.read_text())
            with xr.open_dataset(nc) as ds:
                if ds.attrs.get("collect_id") != meta.get("collect_id"):
                    return  # the .nc was rewritten by someone else: trust neither
                self.ds = ds.load()
            self.jobs = meta["jobs"]
        except (OSError, ValueError, KeyError):
            self.jobs, self.ds = {}, None

    def shard(self, job_id: str, kind: str) -> dict | None:
        """The shard of job_id as it was merged before, rebuilt from the old dataset."""
        rec = self.jobs.get(job_id)
        if rec is None or self.ds is None or rec.get("kind") != kind:
            return None
        _, name_dim, curve_dim, prefix = next(k for k in KINDS if k[0] == kind)
        try:
            ids = self.ds[f"{prefix or 'run_'}job_id"].values
            where = np.argwhere(ids == job_id)
            if not len(where):
                return None
            at = tuple(where[0])
            old = {_key(x): i for i, x in enumerate(self.ds[curve_dim].values)}
            cols = [old[_key(x)] for x in rec["coord"]]
            vars_ = {v: self.ds[prefix + RENAME.get(v, v)].values[at][cols].tolist() for v in rec["vars"]}
            scalars = {v: self.ds[prefix + RENAME.get(v, v)].values[at].item() for v in rec["scalars"]}
        except (KeyError, IndexError, ValueError):
            return None
        return {"dim": curve_dim, "coord": rec["coord"], "vars": vars_, "scalars": scalars,
                "seconds": rec.get("seconds", float("nan")), "versions": rec.get("versions", {}),
                "machine": rec.get("machine", {}),
                "flags": rec.get("flags", [])}


class Collected:
    """What one collect did: the dataset, and how many shards it read or reused."""

    def __init__(self, ds, read: list[str], reused: list[str], index: dict):
        self.ds, self.read, self.reused, self.index = ds, read, reused, index


def collect(plan: Plan, store: Store, spec_text: str = "", previous: Path | None = None,
            command: str = "") -> "xarray.Dataset":
    """The study's dataset. With `previous` (an earlier collect's .nc), unchanged jobs
    are taken from it instead of their shards."""
    return gather(plan, store, spec_text, previous, command).ds


def gather(plan: Plan, store: Store, spec_text: str = "", previous: Path | None = None,
           command: str = "", extra_attrs: dict | None = None) -> Collected:
    """`extra_attrs`: more global attributes (the command-line overrides)."""
    import xarray as xr

    prev = _Previous(Path(previous)) if previous else None
    sweep = {d.name: d for d in plan.dims}
    shape = [len(d.values) for d in plan.dims]
    data_vars: dict = {}
    coords: dict = {}
    flags: set[str] = set()
    for d in plan.dims:
        drawn = d.axes[0].startswith("_")  # a random search: the coordinate is the sample index
        attrs = {"long_name": "random search sample (sweep.random)" if drawn
                 else f"swept spec field {', '.join(d.axes)}"}
        coords[d.name] = (d.name, _coord_values([v[:1] for v in d.values]), attrs)
        for k, axis in enumerate(d.axes[1:], start=1):  # zipped axes ride along
            coords[axis.rsplit(".", 1)[-1]] = (d.name, _coord_values([v[k:k + 1] for v in d.values]), {
                "long_name": f"swept spec field {axis} (" + ("drawn at random, sweep.random" if drawn
                                                             else f"zipped with {d.axes[0]}") + ")"})
    versions: dict[str, set] = {}
    read: list[str] = []
    reused: list[str] = []
    index: dict[str, dict] = {}
    for kind, name_dim, curve_dim, prefix in KINDS:
        cells = [c for c in plan.cells if c.kind == kind]
        if not cells:
            continue
        names = list(dict.fromkeys(c.name for c in cells))
        shards: dict[str, dict] = {}
        for c in cells:
            if c.job in shards or c.job in index:
                continue
            stamp = _stamp(store, c.job)
            if stamp is None:
                continue
            s = None
            if prev is not None and prev.jobs.get(c.job, {}).get("stamp") == stamp:
                s = prev.shard(c.job, kind)
                if s is not None:
                    reused.append(c.job)
            if s is None:
                try:
                    s = store.read_shard(c.job)
                except (OSError, ValueError) as e:  # vanished or unreadable: not done for us
                    print(f"collect: skipping {c.job}: {e}", file=sys.stderr)
                    continue
                read.append(c.job)
                s["flags"] = [k for k, v in s.get("scalars", {}).items() if isinstance(v, bool)]
            shards[c.job] = s
            index[c.job] = {"kind": kind, "stamp": stamp, "coord": list(s["coord"]),
                            "vars": list(s["vars"]), "scalars": list(s.get("scalars", {})),
                            "seconds": s.get("seconds", float("nan")),
                            "versions": s.get("versions", {}), "flags": s["flags"]}
            index[c.job]["machine"] = s.get("machine", {})  # runners/machine.py
        for s in shards.values():
            for k, v in s.get("versions", {}).items():
                versions.setdefault(k, set()).add(str(v))
        grid = sorted({_key(x) for s in shards.values() for x in s["coord"]})
        where = {x: i for i, x in enumerate(grid)}
        dims_ = (name_dim, *sweep, curve_dim)
        curves: dict[str, np.ndarray] = {}
        scalars: dict[str, np.ndarray] = {}
        ids = np.full([len(names), *shape], "", dtype=object)
        done = np.zeros([len(names), *shape], dtype=np.int8)
        for c in cells:
            at = (names.index(c.name), *(c.index[d] for d in sweep))
            ids[at] = c.job
            s = shards.get(c.job)
            if s is None:
                continue
            done[at] = 1
            cols = [where[_key(x)] for x in s["coord"]]
            for var, values in s["vars"].items():
                arr = curves.setdefault(var, np.full([len(names), *shape, len(grid)], np.nan))
                arr[at + (cols,)] = np.asarray(values, dtype=float)
            for var, value in {**s.get("scalars", {}), "seconds": s.get("seconds", np.nan)}.items():
                arr = scalars.setdefault(var, np.full([len(names), *shape], np.nan))
                arr[at] = np.nan if value is None else float(value)
            flags.update(prefix + RENAME.get(f, f) for f in s.get("flags", []))
        coords[name_dim] = (name_dim, np.asarray(names, dtype=str), {
            "long_name": "training run (a name under runs: in the spec)" if kind == "train"
            else "path query (a name under paths: in the spec)"})
        coords[curve_dim] = (curve_dim, np.asarray(grid, dtype=int if curve_dim == "step" else float))
        for var, arr in curves.items():
            data_vars[prefix + RENAME.get(var, var)] = (dims_, arr, _attrs(var, kind))
        for var, arr in scalars.items():
            data_vars[prefix + RENAME.get(var, var)] = (dims_[:-1], arr, _attrs(var, kind, scalar=True))
        data_vars[f"{prefix or 'run_'}job_id"] = (dims_[:-1], ids.astype(str), {
            "long_name": "studyspec job id (directory of the job in the store)"})
        data_vars[f"{prefix or 'run_'}done"] = (dims_[:-1], done, {
            "long_name": "1 if the job had finished and its results are in this file", "units": "1",
            "flag_values": np.array([0, 1], dtype=np.int8), "flag_meanings": "not_done done"})
    ds = xr.Dataset(data_vars, coords=coords)
    for name in flags | {p + f for _, _, _, p in KINDS for f in FLAGS}:
        if name in ds:
            ds[name].attrs.update(flag_values=np.array([0, 1], dtype=np.int8), flag_meanings="false true")
            ds[name].encoding.update(dtype="int8", _FillValue=np.int8(-1))
    if "step" in ds:
        ds["step"].attrs.update(long_name="optimizer step", units="1")
    if "t" in ds:
        ds["t"].attrs.update(long_name="position along the path (0 = from, 1 = to)", units="1")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    ds.attrs.update({
        "Conventions": "CF-1.10",
        "title": f"studyspec study {plan.study.study}",
        "source": f"studyspec {__version__}",
        "history": f"{created} {command or 'studyspec collect'}",
        "study": plan.study.study,
        "spec": spec_text,
        "created": created,
        "collect_id": uuid.uuid4().hex,
        "jobs_total": len(plan.jobs),
        "jobs_collected": len(index),
        "job_ids": " ".join(plan.jobs),
        "studyspec_version": __version__,
        **_library_versions(),
        **{f"{k}_version": ", ".join(sorted(v)) for k, v in versions.items()},
        **(extra_attrs or {}),
        **machine_attrs(rec.get("machine", {}) for rec in index.values()),
    })
    return Collected(ds, read, reused, {"collect_id": ds.attrs["collect_id"], "jobs": index})


def machine_attrs(machines) -> dict:
    """machine_cpu, machine_cpu_flags, machine_cpu_capability, machine_gpu: the distinct values
    over the collected jobs ("; "-separated; empty for jobs that did not record them), and
    machine_mixed: 1 if the jobs ran on more than one kind of machine (numbers then agree only
    statistically, not bit for bit)."""
    kinds = {tuple(sorted(m.items())) for m in machines if m}
    out = {}
    for key in ("cpu", "cpu_flags", "cpu_capability", "gpu"):
        out[f"machine_{key}"] = "; ".join(sorted({dict(k).get(key, "") for k in kinds}))
    out["machine_mixed"] = int(len(kinds) > 1)
    return out


def _library_versions() -> dict[str, str]:
    import netCDF4
    import xarray as xr

    return {"xarray_version": xr.__version__, "numpy_version": np.__version__,
            "netCDF4_version": netCDF4.__version__, "netcdf_library_version": netCDF4.__netcdf4libversion__}


def _attrs(var: str, kind: str, scalar: bool = False) -> dict:
    name = RENAME.get(var, var)
    if name in ATTRS:
        long_name, units = ATTRS[name]
    elif name.startswith("final_") and name[6:] in ATTRS:
        long_name, units = ATTRS[name[6:]]
        long_name = f"{long_name}, at the end of training"
    else:
        long_name, units = name.replace("_", " "), "1"
    if kind == "path" and not scalar:
        long_name += ", along the path"
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
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def collect_to(plan: Plan, store: Store, path: Path, spec_text: str = "", command: str = "",
               extra_attrs: dict | None = None) -> Collected:
    """Collect incrementally into `path` (reusing what an earlier collect there merged)
    and write the .nc, then its index."""
    path = Path(path)
    got = gather(plan, store, spec_text, previous=path, command=command, extra_attrs=extra_attrs)
    write(got.ds, path)
    write_atomic(path.with_name(path.name + INDEX_SUFFIX), json.dumps(got.index))
    return got


def table(ds):
    """One flat pandas table: a row per (run or path, sweep point, step or t), a column per
    quantity (the `path_` prefix dropped), per-job scalars repeated along the curve."""
    import pandas as pd

    frames = []
    sweep = [d for d in ds.dims if d not in ("run", "path", "step", "t")]
    for kind, name_dim, curve_dim, prefix in KINDS:
        if name_dim not in ds.dims:
            continue
        names = [v for v in ds.data_vars if set(ds[v].dims) <= {name_dim, curve_dim, *sweep}
                 and name_dim in ds[v].dims and (v.startswith(prefix) if prefix else not v.startswith("path_"))]
        sub = ds[names]
        if curve_dim not in sub.dims:
            continue
        df = sub.to_dataframe().reset_index()
        df = df[df[f"{prefix or 'run_'}done"] == 1]
        df = df.dropna(subset=[v for v in names if curve_dim in ds[v].dims], how="all")
        df = df.rename(columns={name_dim: "name", curve_dim: "x",
                                **{v: v[len(prefix):] for v in names if prefix and v.startswith(prefix)},
                                **({"run_job_id": "job_id", "run_done": "done"} if not prefix else {})})
        df.insert(0, "kind", kind)
        df.insert(3 + len(sweep), "x_name", curve_dim)
        frames.append(df.drop(columns=["done"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def export(ds, path: Path, fmt: str) -> Path:
    """Write the flat table as CSV or parquet (atomically)."""
    df = table(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "csv":
        df.to_csv(tmp, index=False)
    else:
        df.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
