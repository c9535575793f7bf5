"""collect: the dataset schema, incremental merging (counted through Store.read_shard),
safety while jobs write, and the flat-table export. Real jobs, trained for a few steps."""

import json
import shutil

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from rich.console import Console

from conftest import studyspec
from studyspec.collect import INDEX_SUFFIX, collect, collect_to
from studyspec.executors.local import run_local
from studyspec.load import loads
from studyspec.plan import build
from studyspec.store import Store

SPEC = """\
study: inc
data: {dataset: digits, batch_size: 128}
model: {arch: mlp, hidden: [16]}
train: {steps: 40, eval_every: 20, optimizer: {lr: 0.05, momentum: 0.9}}
sparsity: 0.9
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.5, every: 10}}
  dense: {regime: dense}
paths:
  dense_to_pruned: {kind: linear, from: dense.final, to: prune.final, points: 3}
"""
MORE = SPEC.replace("  dense: {regime: dense}\n",
                    "  dense: {regime: dense}\n  scratch: {regime: fixed_mask, mask: prune.final}\n")


class CountingStore(Store):
    """The real store, remembering which shards were read."""

    def __init__(self, root):
        super().__init__(root)
        self.reads: list[str] = []

    def read_shard(self, job_id):
        self.reads.append(job_id)
        return super().read_shard(job_id)


def launch(text, root):
    loaded = loads(text)
    plan = build(loaded.study)
    outcome = run_local(plan, Store(root), workers=2, console=Console(quiet=True))
    assert outcome.ok
    return loaded, plan


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store where the three jobs of SPEC (and the extra run of MORE) are done."""
    root = tmp_path_factory.mktemp("store")
    launch(MORE, root)  # SPEC's jobs are among MORE's (same configs, same ids)
    return root


@pytest.fixture
def store(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "store")
    return tmp_path / "store"


def job_of(plan, name):
    return next(c.job for c in plan.cells if c.name == name)


def drop(store, plan, name):
    """Forget a run: as if it had not run yet."""
    shutil.rmtree(store / job_of(plan, name))


def test_second_collect_after_one_more_run_reads_only_its_shard(store, tmp_path):
    out = tmp_path / "inc.nc"
    small, more = loads(SPEC), loads(MORE)
    plan_small, plan_more = build(small.study), build(more.study)
    st = CountingStore(store)
    collect_to(plan_small, st, out, SPEC)
    assert sorted(st.reads) == sorted(plan_small.jobs)  # first collect: every shard, once
    st.reads.clear()
    got = collect_to(plan_small, st, out, SPEC)
    assert st.reads == [] and sorted(got.reused) == sorted(plan_small.jobs)

    # one run added to the spec (its job is done in the store): only its shard is read
    got = collect_to(plan_more, st, out, MORE)
    scratch = job_of(plan_more, "scratch")
    assert st.reads == [scratch]
    assert len(got.reused) == 3

    # and the merged dataset is the one a full collect makes
    fresh = collect(plan_more, Store(store), MORE)
    merged = xr.open_dataset(out)
    assert set(merged.data_vars) == set(fresh.data_vars)
    for var in fresh.data_vars:
        assert np.array_equal(merged[var].values, fresh[var].values.astype(merged[var].dtype),
                              equal_nan=merged[var].dtype.kind == "f"), var
    assert merged.train_loss.sel(run="scratch").notnull().all()
    merged.close()


def test_rerun_job_is_read_again_and_foreign_nc_is_not_trusted(store, tmp_path):
    out = tmp_path / "inc.nc"
    plan = build(loads(SPEC).study)
    st = CountingStore(store)
    collect_to(plan, st, out, SPEC)
    # a job rerun (its shard replaced) is read again
    prune = job_of(plan, "prune")
    shard = json.loads(st.shard(prune).read_text())
    shard["vars"]["train_loss"][-1] = 123.0
    st.shard(prune).write_text(json.dumps(shard))
    st.reads.clear()
    collect_to(plan, st, out, SPEC)
    assert st.reads == [prune]
    with xr.open_dataset(out) as ds:
        assert ds.train_loss.sel(run="prune").values[-1] == 123.0
    # an .nc written by something else (index does not match) means: read everything
    collect(plan, Store(store), SPEC).to_netcdf(out)
    st.reads.clear()
    collect_to(plan, st, out, SPEC)
    assert sorted(st.reads) == sorted(plan.jobs)


def test_half_written_shard_is_never_read(store, tmp_path):
    plan = build(loads(SPEC).study)
    path_job = job_of(plan, "dense_to_pruned")
    st = CountingStore(store)
    full = st.shard(path_job).read_text()
    st.shard(path_job).unlink()
    # what a worker leaves while it writes: a temp file next to where the shard goes
    (st.run_dir(path_job) / ".shard.json.k2j3h.tmp").write_text(full[: len(full) // 2])
    got = collect_to(plan, st, tmp_path / "inc.nc", SPEC)
    assert path_job not in st.reads and len(st.reads) == 2
    ds = got.ds
    assert ds.path_done.sel(path="dense_to_pruned").item() == 0
    assert ds.run_done.values.tolist() == [1, 1]
    assert ds.attrs["jobs_collected"] == 2 and ds.attrs["jobs_total"] == 3
    assert "path_barrier" not in ds  # no path job done yet: no path numbers


def test_schema_opens_anywhere(store, tmp_path):
    out = tmp_path / "inc.nc"
    collect_to(build(loads(MORE).study), Store(store), out, MORE, command="studyspec collect inc.yaml")
    ds = xr.open_dataset(out)  # no extra arguments
    assert dict(ds.sizes) == {"run": 3, "step": 3, "path": 1, "t": 3}
    for name, var in {**ds.data_vars, **ds.coords}.items():
        assert var.attrs.get("long_name"), name
        if var.dtype.kind in "fi" and name not in ("path",):
            assert "units" in var.attrs, name
    for key in ("Conventions", "spec", "created", "history", "job_ids", "studyspec_version",
                "xarray_version", "netCDF4_version", "torch_version"):
        assert ds.attrs.get(key), key
    assert ds.attrs["Conventions"].startswith("CF-") and ds.attrs["spec"] == MORE
    assert set(ds.attrs["job_ids"].split()) == set(np.concatenate([ds.run_job_id.values.ravel(),
                                                                     ds.path_job_id.values.ravel()]))
    assert ds.path_monotone.values.tolist()[0] in (0.0, 1.0)
    from runners.machine import cpu  # the machine the jobs ran on: this one
    assert ds.attrs["machine_cpu"] == cpu()[0] and ds.attrs["machine_cpu_flags"] == " ".join(cpu()[1])
    assert ds.attrs["machine_cpu_capability"] and ds.attrs["machine_mixed"] == 0
    ds.close()
    # the netCDF library itself: flags are int8 on disk, every attribute is flat
    nc = netCDF4.Dataset(out)
    assert nc["path_monotone"].dtype == np.int8 and nc["run_done"].dtype == np.int8
    assert list(nc["path_monotone"].flag_values) == [0, 1]
    for name in nc.variables:
        for attr in nc[name].ncattrs():
            assert isinstance(nc[name].getncattr(attr), (str, np.ndarray, np.number, int, float)), (name, attr)
    for attr in nc.ncattrs():
        assert isinstance(nc.getncattr(attr), (str, np.number, int, float)), attr
    nc.close()


def test_cli_collect_exports_csv(store, tmp_path):
    spec = tmp_path / "inc.yaml"
    spec.write_text(MORE)
    out = tmp_path / "res" / "inc.nc"
    proc = studyspec("collect", spec, "--store", store, "--out", out, "--format", "csv", check=True)
    assert "read 4 new shard(s), reused 0" in proc.stderr
    assert (tmp_path / "res" / ("inc.nc" + INDEX_SUFFIX)).exists()
    df = pd.read_csv(tmp_path / "res" / "inc.csv")
    assert set(df.kind) == {"train", "path"}
    assert len(df[df.kind == "train"]) == 3 * 3 and len(df[df.kind == "path"]) == 3
    pruned = df[(df.name == "prune") & (df.x == 40)]
    with xr.open_dataset(out) as ds:
        assert pruned.train_loss.item() == pytest.approx(ds.train_loss.sel(run="prune", step=40).item())
    proc = studyspec("collect", spec, "--store", store, "--out", out, check=True)
    assert "read 0 new shard(s), reused 4" in proc.stderr


def test_cli_report_writes_figures_and_claims(store, tmp_path):
    spec = tmp_path / "inc.yaml"
    spec.write_text(MORE + "claims:\n  gap: {kind: compare, metric: final_train_loss, a: scratch, b: prune, "
                    "direction: greater}\n")
    out = tmp_path / "rep"
    proc = studyspec("report", spec, "--store", store, "--nc", tmp_path / "inc.nc", "--out", out, check=True)
    assert "read 4 new shard(s)" in proc.stderr
    assert "claims (95% Student t interval" in proc.stderr and "gap" in proc.stderr and "undecided" in proc.stderr
    for png in ("curves.png", "paths.png", "barriers.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    text = (out / "claims.md").read_text()
    assert "| gap | - | final_train_loss(scratch) > final_train_loss(prune) + 0 | 1 |" in text and "](curves.png)" in text
    claims = json.loads((out / "claims.json").read_text())
    assert [(c["claim"], c["n"], c["decision"]) for c in claims] == [("gap", 1, "undecided")]  # one seed: no interval
