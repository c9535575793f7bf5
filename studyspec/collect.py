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
import os
import uuid
from pathlib import Path

import numpy as np

from . import __version__, environment
from .plan import Plan
from .store import Store, StoreError, write_atomic

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
FLAGS = {"monotone"}  # 0/1 quantities, stored as int8 (also any scalar a shard gives as a bool)
KINDS = (("train", "run", "step", ""), ("path", "path", "t", "path_"))  # kind, name dim, curve dim, prefix
INDEX_SUFFIX = ".index.json"
CONVENTIONS = "CF-1.11"  # checked by compliance-checker --test cf:1.11 in tests/test_result_files.py


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
        st = os.lstat(store.shard(job_id))  # a symbolic link is not a shard: read_shard says so
    except FileNotFoundError:
        return None
    return [st.st_mtime_ns, st.st_size]


def var_name(prefix: str, var: str, taken) -> str:
    """The dataset name of a shard variable: prefixed, and suffixed with `_measured` where it
    would collide with a coordinate (a job's `steps` when train.steps is swept). Shards come in
    the current format (Store.read_shard), so an older shard's `sparsity` is `weight_sparsity`."""
    name = prefix + var
    return name + "_measured" if name in taken else name


class _Index:
    """What a collect merged, written next to the .nc: per job its kind, shard stamp, and
    references into two tables of distinct values (coordinate lists; versions, machine and
    flags), so that 10^4 jobs sharing one grid and one machine make a small file."""

    FORMAT = 3  # 3: shard format 2's names (final_weight_sparsity); an older index means a full read

    def __init__(self, collect_id: str = ""):
        self.collect_id = collect_id
        self.jobs: dict[str, list] = {}  # id -> [kind, mtime_ns, size, coord ref, meta ref]
        self.coords: list[list] = []
        self.metas: list[dict] = []
        self._refs: dict[tuple, int] = {}

    def _ref(self, table: list, key: tuple, value) -> int:
        ref = self._refs.get(key)
        if ref is None:
            ref = self._refs[key] = len(table)
            table.append(value)
        return ref

    def add(self, job_id: str, kind: str, stamp: list[int], coord: list, meta: dict) -> None:
        c = self._ref(self.coords, ("c", *coord), list(coord))
        m = self._ref(self.metas, ("m", json.dumps(meta, sort_keys=True)), meta)
        self.jobs[job_id] = [kind, *stamp, c, m]

    def copy_from(self, other: "_Index", job_id: str) -> None:
        kind, mtime, size, c, m = other.jobs[job_id]
        self.add(job_id, kind, [mtime, size], other.coords[c], other.metas[m])

    def coord(self, job_id: str) -> list:
        return self.coords[self.jobs[job_id][3]]

    def meta(self, job_id: str) -> dict:
        return self.metas[self.jobs[job_id][4]]

    def to_json(self) -> dict:
        return {"format": self.FORMAT, "collect_id": self.collect_id, "coords": self.coords,
                "metas": self.metas, "jobs": self.jobs}

    @classmethod
    def from_json(cls, obj: dict) -> "_Index":
        if obj.get("format") != cls.FORMAT:
            raise ValueError("index of another format")
        out = cls(obj["collect_id"])
        out.coords, out.metas, out.jobs = obj["coords"], obj["metas"], obj["jobs"]
        return out


class _Previous:
    """The numbers of an earlier collect: its .nc plus the index written with it. Unchanged
    jobs are copied from it row by row (whole arrays at once), not rebuilt shard by shard."""

    def __init__(self, nc: Path):
        import xarray as xr

        self.index = _Index()
        self.ds = None
        self._rows: dict[str, dict[str, int]] = {}
        index = nc.with_name(nc.name + INDEX_SUFFIX)
        if not (nc.exists() and index.exists()):
            return
        try:
            meta = _Index.from_json(json.loads(index.read_text()))
            with xr.open_dataset(nc) as ds:
                if ds.attrs.get("collect_id") != meta.collect_id:
                    return  # the .nc was rewritten by someone else: trust neither
                self.ds = ds.load()
            self.index = meta
        except (OSError, ValueError, KeyError, TypeError):
            self.index, self.ds = _Index(), None

    def rows(self, kind: str) -> dict[str, int]:
        """job id -> its flat position in the previous (name, *sweep) grid of this kind."""
        if kind not in self._rows:
            _, name_dim, curve_dim, prefix = next(k for k in KINDS if k[0] == kind)
            var = f"{prefix or 'run_'}job_id"
            rows: dict[str, int] = {}
            if self.ds is not None and var in self.ds:
                for i, jid in enumerate(self.ds[var].values.ravel().tolist()):
                    if jid:
                        rows.setdefault(jid, i)
            self._rows[kind] = rows
        return self._rows[kind]

    def has(self, job_id: str, kind: str, stamp: list[int]) -> bool:
        rec = self.index.jobs.get(job_id)
        return (rec is not None and rec[0] == kind and rec[1:3] == stamp and job_id in self.rows(kind))

    def fill(self, kind: str, job_ids: list[str], first: int, where: dict, curves: dict, scalars: dict,
             n_rows: int) -> None:
        """Copy the rows of job_ids into rows first.. of the new per-job arrays (keyed by
        variable name in the dataset), their curves mapped onto the new grid `where`."""
        _, name_dim, curve_dim, prefix = next(k for k in KINDS if k[0] == kind)
        pos = np.asarray([self.rows(kind)[j] for j in job_ids], dtype=np.intp)
        old = [where.get(_key(x)) for x in self.ds[curve_dim].values] if curve_dim in self.ds.dims else []
        keep = np.asarray([i for i, c in enumerate(old) if c is not None], dtype=np.intp)
        cols = np.asarray([old[i] for i in keep], dtype=np.intp)
        at = slice(first, first + len(job_ids))
        skip = {f"{prefix or 'run_'}job_id", f"{prefix or 'run_'}done"}
        for name, var in self.ds.data_vars.items():
            if name in skip or not var.dims or var.dims[0] != name_dim:
                continue
            values = np.asarray(var.values, dtype=float)
            if var.dims[-1] == curve_dim:
                block = values.reshape(-1, values.shape[-1])[pos][:, keep]
                if np.isnan(block).all():
                    continue
                arr = curves.setdefault(name, np.full([n_rows, len(where)], np.nan))
                if len(cols):
                    arr[at, cols] = block
            else:
                block = values.ravel()[pos]
                if np.isnan(block).all():
                    continue
                scalars.setdefault(name, np.full([n_rows], np.nan))[at] = block


class Collected:
    """What one collect did: the dataset, and how many shards it read or reused; `skipped`:
    job id -> why its shard was not used (not valid: the job counts as not done)."""

    def __init__(self, ds, read: list[str], reused: list[str], index: dict, skipped: dict | None = None):
        self.ds, self.read, self.reused, self.index = ds, read, reused, index
        self.skipped = skipped or {}


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
    taken = set(coords) | {"run", "path", "step", "t"}  # names a variable must not take
    skipped: dict[str, str] = {}
    read: list[str] = []
    reused: list[str] = []
    index = _Index()
    for kind, name_dim, curve_dim, prefix in KINDS:
        cells = [c for c in plan.cells if c.kind == kind]
        if not cells:
            continue
        names = list(dict.fromkeys(c.name for c in cells))
        new: dict[str, dict] = {}  # job id -> shard read now
        old: list[str] = []  # job ids taken from the previous collect
        for jid in dict.fromkeys(c.job for c in cells):
            if jid in index.jobs or jid in skipped:
                continue
            stamp = _stamp(store, jid)
            if stamp is None:
                continue
            if prev is not None and prev.has(jid, kind, stamp):
                old.append(jid)
                index.copy_from(prev.index, jid)
                continue
            try:
                s = store.read_shard(jid)
                if s.get("dim", curve_dim) != curve_dim:
                    raise StoreError(f"{store.shard(jid)}: a shard along {s['dim']!r}, not {curve_dim!r} "
                                     f"(a {kind} job's)")
            except FileNotFoundError:  # vanished since: not done
                continue
            except (OSError, StoreError) as e:  # corrupt, wrong-shaped, misplaced, a link: not done
                skipped[jid] = str(e)
                continue
            new[jid] = s
            index.add(jid, kind, stamp, list(s["coord"]), {
                "versions": s.get("versions", {}), "machine": s.get("machine", {}),  # runners/machine.py
                "flags": [k for k, v in s.get("scalars", {}).items() if isinstance(v, bool)]})
        read += new
        reused += old
        grid = sorted({_key(x) for c in {tuple(index.coord(j)) for j in (*new, *old)} for x in c})
        where = {x: i for i, x in enumerate(grid)}
        # one row per job with results: first the shards read now, then those reused
        row = {jid: r for r, jid in enumerate((*new, *old))}
        curves: dict[str, np.ndarray] = {}  # dataset variable name -> [row, grid]
        scalars: dict[str, np.ndarray] = {}  # dataset variable name -> [row]
        origin: dict[str, str] = {}  # dataset variable name -> the shard's name for it
        col_of: dict[tuple, list[int]] = {}
        for r, s in enumerate(new.values()):
            key = tuple(s["coord"])
            cols = col_of.get(key)
            if cols is None:
                cols = col_of[key] = [where[_key(x)] for x in key]
            for var, values in s["vars"].items():
                name = var_name(prefix, var, taken)
                arr = curves.get(name)
                if arr is None:
                    arr = curves[name] = np.full([len(row), len(grid)], np.nan)
                    origin[name] = var
                arr[r, cols] = np.asarray(values, dtype=float)
            for var, value in {**s.get("scalars", {}), "seconds": s.get("seconds", np.nan)}.items():
                name = var_name(prefix, var, taken)
                arr = scalars.get(name)
                if arr is None:
                    arr = scalars[name] = np.full([len(row)], np.nan)
                    origin[name] = var
                arr[r] = np.nan if value is None else float(value)
        if old:
            prev.fill(kind, old, len(new), where, curves, scalars, len(row))
        for jid in row:
            flags.update(var_name(prefix, f, taken) for f in index.meta(jid)["flags"])
        # rows -> the (name, *sweep) grid; one job may fill several cells
        full = [len(names), *shape]
        name_at = {n: i for i, n in enumerate(names)}
        flat = np.ravel_multi_index([[name_at[c.name] for c in cells],
                                     *([c.index[d] for c in cells] for d in sweep)], full)
        src = np.asarray([row.get(c.job, -1) for c in cells], dtype=np.intp)
        has = src >= 0
        ids = np.full(int(np.prod(full)), "", dtype=object)
        ids[flat] = [c.job for c in cells]
        done = np.zeros(int(np.prod(full)), dtype=np.int8)
        done[flat[has]] = 1
        dims_ = (name_dim, *sweep, curve_dim)
        coords[name_dim] = (name_dim, np.asarray(names, dtype=str), {
            "long_name": "training run (a name under runs: in the spec)" if kind == "train"
            else "path query (a name under paths: in the spec)"})
        coords[curve_dim] = (curve_dim, np.asarray(grid, dtype=int if curve_dim == "step" else float))
        for name, arr in curves.items():
            out = np.full([int(np.prod(full)), len(grid)], np.nan)
            out[flat[has]] = arr[src[has]]
            data_vars[name] = (dims_, out.reshape(*full, len(grid)),
                               _attrs(origin.get(name, name[len(prefix):]), kind))
        for name, arr in scalars.items():
            out = np.full(int(np.prod(full)), np.nan)
            out[flat[has]] = arr[src[has]]
            data_vars[name] = (dims_[:-1], out.reshape(full),
                               _attrs(origin.get(name, name[len(prefix):]), kind, scalar=True))
        data_vars[f"{prefix or 'run_'}job_id"] = (dims_[:-1], ids.reshape(full).astype(str), {
            "long_name": "studyspec job id (directory of the job in the store)"})
        data_vars[f"{prefix or 'run_'}done"] = (dims_[:-1], done.reshape(full), {
            "long_name": "1 if the job had finished and its results are in this file", "units": "1",
            "flag_values": np.array([0, 1], dtype=np.int8), "flag_meanings": "not_done done"})
    versions = {jid: index.meta(jid).get("versions", {}) for jid in index.jobs}  # studyspec/environment.py
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
        "Conventions": CONVENTIONS,
        "title": f"studyspec study {plan.study.study}",
        "source": f"studyspec {__version__}",
        "history": f"{created} {command or 'studyspec collect'}",
        "study": plan.study.study,
        "spec": spec_text,
        "created": created,
        "collect_id": uuid.uuid4().hex,
        "jobs_total": len(plan.jobs),
        "jobs_collected": len(index.jobs),
        "job_ids": " ".join(plan.jobs),
        "studyspec_version": __version__,
        **_library_versions(),
        **environment.attrs(versions, store),
        **(extra_attrs or {}),
        **machine_attrs(index.metas[m].get("machine", {}) for m in {m for *_, m in index.jobs.values()}),
    })
    index.collect_id = ds.attrs["collect_id"]
    return Collected(ds, read, reused, index.to_json(), skipped)


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


def _attrs(name: str, kind: str, scalar: bool = False) -> dict:
    """CF attributes of a variable. A loss is dimensionless for CF (units "1", as UDUNITS has no
    nats); that it is in nats (natural-log cross-entropy) is said in its long_name."""
    if name in ATTRS:
        long_name, units = ATTRS[name]
    elif name.startswith("final_") and name[6:] in ATTRS:
        long_name, units = ATTRS[name[6:]]
        long_name = f"{long_name}, at the end of training"
    else:
        long_name, units = name.replace("_", " "), "1"
    if kind == "path" and not scalar:
        long_name += ", along the path"
    if units == "nats":
        long_name, units = long_name + ", in nats", "1"
    return {"long_name": long_name, "units": units}


def _encoding(ds) -> dict:
    """CF layout on disk: no _FillValue on coordinates (CF forbids it there; xarray would add
    NaN to float ones), and text coordinates (run, path, string sweep values) as fixed-width
    character arrays, CF's label variables (a vlen string coordinate variable is not CF and
    breaks CF checkers); xarray reads both back as before (strings, an index to .sel by name)."""
    out = {}
    for name, var in ds.coords.items():
        enc = {"_FillValue": None}
        if var.dtype.kind in "UO":
            enc["dtype"] = "S1"
        elif var.dtype == np.int64 and (not var.size or np.abs(var.values).max() < 2 ** 31):
            enc["dtype"] = "int32"  # steps, seeds: int64 is not a CF type before CF-1.9
        out[name] = enc
    return out


def write(ds, path: Path) -> Path:
    """Write netCDF atomically (studyspec.atomic)."""
    from .atomic import write_with

    return write_with(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", encoding=_encoding(ds)))


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
    from .atomic import write_with

    df = table(ds)
    return write_with(path, lambda tmp: df.to_csv(tmp, index=False) if fmt == "csv" else df.to_parquet(tmp, index=False))
