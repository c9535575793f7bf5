"""Incremental collect copies the earlier collect's rows whole: its result must equal a
full collect of the same shards, whatever the grids, flags and sharing of jobs. Shards
are written in the runners' format by hand (no training), so this runs in a second."""

import json
import os

import numpy as np

from studyspec.collect import INDEX_SUFFIX, collect_to
from studyspec.load import loads
from studyspec.plan import build
from studyspec.store import Store, write_atomic

SPEC = """\
study: inc
data: {dataset: digits, batch_size: 128}
model: {arch: mlp, hidden: [16]}
train: {steps: 40, eval_every: 20}
sweep: {seed: [0, 1, 2], sparsity: [0.5, 0.9]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.5, every: 10}}
  dense: {regime: dense}
paths:
  dense_to_pruned: {kind: linear, from: dense.final, to: prune.final, points: 3}
"""


def shard(job, i: int) -> dict:
    rng = np.random.default_rng(i)
    if job.kind == "train":
        coord = [0, 10, 20, 30, 40] if i % 6 == 3 else [0, 20, 40]  # a finer grid only among the later jobs
        sparsity = rng.random(len(coord)).tolist()
        out = {"dim": "step", "coord": coord,
               "vars": {"train_loss": rng.random(len(coord)).tolist(), "weight_sparsity": sparsity},
               "scalars": {"final_train_loss": float(rng.random()), "final_weight_sparsity": sparsity[-1],
                           "steps": 40}, "format": 2}
        if i % 2:
            out["scalars"]["round1_weight_sparsity"] = sparsity[1]  # as imp records each round's end
        if i % 3 == 0:  # as an older version wrote it (shard format 1): the same quantities, other names
            out = json.loads(json.dumps(out).replace('"weight_sparsity"', '"sparsity"')
                             .replace('_weight_sparsity"', '_sparsity"'))
            del out["format"]
        if i % 2:
            out["scalars"]["mask_updates"] = i  # only some jobs have it
    else:
        coord = [0.0, 0.5, 1.0]
        out = {"dim": "t", "coord": coord, "vars": {"train_loss": rng.random(3).tolist()},
               "scalars": {"barrier": float(rng.random()), "monotone": bool(i % 2)}}
    return {**out, "seconds": float(i), "versions": {"torch": f"2.{i % 2}"}, "machine": {"cpu": "x"}}


def test_incremental_equals_full(tmp_path):
    loaded = loads(SPEC)
    plan = build(loaded.study)
    assert len({c.job for c in plan.cells}) < len(plan.cells)  # dense jobs fill several cells
    ids = list(plan.jobs)
    store = Store(tmp_path / "store")
    first, later = ids[::2], ids[1::2]
    for i, jid in enumerate(ids):
        if jid in first:
            write_atomic(store.shard(jid), json.dumps(shard(plan.jobs[jid], i)))
    nc = tmp_path / "inc.nc"
    got = collect_to(plan, store, nc)
    assert sorted(got.read) == sorted(first) and not got.reused
    assert got.ds.attrs["jobs_collected"] == len(first)
    for i, jid in enumerate(ids):
        if jid in later:
            write_atomic(store.shard(jid), json.dumps(shard(plan.jobs[jid], i)))
    rewritten = first[0]  # a job run again: its shard changes, so it is read again
    write_atomic(store.shard(rewritten), json.dumps(shard(plan.jobs[rewritten], 1000)))
    os.utime(store.shard(rewritten), ns=(1, 1))
    inc = collect_to(plan, store, nc)
    assert sorted(inc.read) == sorted(later + [rewritten])
    assert sorted(inc.reused) == sorted(set(first) - {rewritten})

    full_nc = tmp_path / "full.nc"
    full = collect_to(plan, store, full_nc)
    assert not full.reused
    assert set(inc.ds.data_vars) == set(full.ds.data_vars)
    assert "mask_updates" in full.ds and "path_monotone" in full.ds
    for v in full.ds.data_vars:
        a, b = inc.ds[v].values, full.ds[v].values
        assert a.dtype.kind == b.dtype.kind, v
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), v
        assert inc.ds[v].attrs.keys() == full.ds[v].attrs.keys(), v
    for c in ("step", "t"):
        assert np.array_equal(inc.ds[c].values, full.ds[c].values)
    assert list(full.ds["step"].values) == [0, 10, 20, 30, 40]
    for key in ("torch_version", "machine_cpu", "jobs_collected"):
        assert inc.ds.attrs[key] == full.ds.attrs[key], key
    assert full.ds.attrs["torch_version"] == "2.0, 2.1"
    # a dense job fills both sparsities of its seed
    dense = full.ds["final_train_loss"].sel(run="dense").values
    assert np.array_equal(dense[:, 0], dense[:, 1]) and not np.isnan(dense).any()
    # the written index is small: one coordinate list per distinct grid, not one per job
    index = json.loads(nc.with_name(nc.name + INDEX_SUFFIX).read_text())
    assert len(index["coords"]) == 3 and len(index["jobs"]) == len(ids)


def test_a_shard_of_the_older_format_collects_under_the_new_names(tmp_path):
    """Shards without `format` (format 1) named the measured sparsity `sparsity`, the name of
    the swept target; they collect into weight_sparsity and final_weight_sparsity beside
    format-2 shards, and an index of the format before (2) is not trusted (a full read)."""
    plan = build(loads(SPEC).study)
    store = Store(tmp_path / "store")
    written = {}
    for i, jid in enumerate(plan.jobs):
        written[jid] = shard(plan.jobs[jid], i)
        write_atomic(store.shard(jid), json.dumps(written[jid]))
    old = [j for j, s in written.items() if s["dim"] == "step" and "sparsity" in s["vars"]]
    new = [j for j, s in written.items() if s["dim"] == "step" and "weight_sparsity" in s["vars"]]
    assert old and new
    assert store.read_shard(old[0])["vars"].keys() == {"train_loss", "weight_sparsity"}
    nc = tmp_path / "inc.nc"
    ds = collect_to(plan, store, nc).ds
    assert not [v for v in ds.variables if "sparsity" in v and "weight_sparsity" not in v and v != "sparsity"]
    assert ds["sparsity"].dims == ("sparsity",)  # only the swept coordinate
    for jid in old + new:
        cell = next(c for c in plan.cells if c.job == jid)
        at = {"run": cell.name, **{d: ds[d].values[k] for d, k in cell.index.items()}}
        vars_ = written[jid]["vars"]
        want = vars_.get("sparsity", vars_.get("weight_sparsity"))
        got = ds["weight_sparsity"].sel(at).sel(step=written[jid]["coord"]).values
        assert got.tolist() == want, jid
        assert ds["final_weight_sparsity"].sel(at).item() == want[-1], jid
        round1 = ds["round1_weight_sparsity"].sel(at).item()
        if any(k.startswith("round1_") for k in written[jid]["scalars"]):
            assert round1 == want[1], jid
        else:
            assert np.isnan(round1), jid
    assert any("round1_sparsity" in written[j]["scalars"] for j in old)

    index = nc.with_name(nc.name + INDEX_SUFFIX)
    meta = json.loads(index.read_text())
    assert meta["format"] == 3
    index.write_text(json.dumps({**meta, "format": 2}))  # as the version before wrote it
    again = collect_to(plan, store, nc)
    assert not again.reused and sorted(again.read) == sorted(plan.jobs)
