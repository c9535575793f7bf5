"""Path queries (runners/paths.py and the spec side): endpoints, mask policies, Bezier and
polychain curves in the sparse or dense subspace, BN recalibration, batched evaluation,
summaries, cross-sweep-point endpoints and one end-to-end study. Real training, no mocks."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import BASE as SPEC_BASE, ROOT, studyspec
from runners import job, masks as M, models, paths
from studyspec.errors import UserError
from studyspec.load import loads
from studyspec.plan import build

torch.set_num_threads(1)

CFG = {
    "kind": "train", "seed": 0,
    "data": {"dataset": "digits", "batch_size": 64},
    "model": {"arch": "mlp", "hidden": [48, 24]},
    "train": {"steps": 60,
              "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
              "schedule": {"name": "cosine", "warmup": 0}, "eval_every": 20, "checkpoints": []},
    "regime": {"regime": "dense"},
}
PRUNE = {"regime": "prune", "sparsity": 0.9, "distribution": "uniform",
         "schedule": {"initial": 0.0, "begin": 0.2, "end": 0.6, "every": 5}}


def cfg(regime, **kw):
    c = copy.deepcopy(CFG)
    c["regime"] = copy.deepcopy(regime)
    c.update(kw)
    return c


def ref(name, art="final"):
    return {"job": name, "artifact": art}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, c, deps in [("prune", cfg(PRUNE), []), ("dense", cfg({"regime": "dense"}), []),
                          ("scratch", cfg({"regime": "fixed_mask", "mask": ref("prune"), "init": "fresh"}), ["prune"])]:
        out[name] = job.run({"id": name, "kind": "train", "config": c}, root / name,
                            {d: root / d for d in deps}, cache)
    return root, out


def path_cfg(path, model=None, data=None):
    return {"kind": "path", "seed": 0, "data": data or CFG["data"], "model": model or CFG["model"], "path": path}


def run_path(root, cache, name, path, stop_after=None, **kw):
    c = path_cfg(path, **kw)
    inputs = {r["job"]: root / r["job"] for r in (path["from"], path["to"])}
    if stop_after is None:
        return job.run({"id": name, "kind": "path", "config": c}, root / name, inputs, cache)
    paths.STOP_AFTER = stop_after  # stop curve training there, as a killed job would
    try:
        return paths.run_path(c, root / name, inputs, cache)
    finally:
        paths.STOP_AFTER = None


def mlp(hidden=(48, 24)):
    return models.build({"arch": "mlp", "hidden": list(hidden)}, 64, 10)


# --- linear paths -----------------------------------------------------------------

def test_linear_endpoints_reproduce_runs_exactly(runs, cache):
    root, out = runs
    m = run_path(root, cache, "lin", {"kind": "linear", "from": ref("scratch"), "to": ref("prune"),
                                      "points": 8, "range": [-0.4, 1.0]})
    assert m["coord"][2] == 0.0 and m["coord"][-1] == 1.0
    for var in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert m["vars"][var][2] == out["scratch"]["scalars"][f"final_{var}"]
        assert m["vars"][var][-1] == out["prune"]["scalars"][f"final_{var}"]
    # a dense endpoint under the default (shared) mask is pruned to prune's mask ...
    m = run_path(root, cache, "lin_shared", {"kind": "linear", "from": ref("dense"), "to": ref("prune"), "points": 3})
    assert m["vars"]["train_loss"][0] != out["dense"]["scalars"]["final_train_loss"]
    assert m["scalars"]["mask_sparsity"] == pytest.approx(out["prune"]["scalars"]["final_weight_sparsity"])
    # ... and reproduced exactly under `union` or `none`
    for policy in ("union", "none"):
        m = run_path(root, cache, f"lin_{policy}", {"kind": "linear", "from": ref("dense"), "to": ref("prune"),
                                                     "points": 3, "mask": policy})
        assert m["vars"]["train_loss"][0] == out["dense"]["scalars"]["final_train_loss"]
        assert m["vars"]["train_loss"][-1] == out["prune"]["scalars"]["final_train_loss"]


@pytest.mark.parametrize("policy", ["shared", "from", "to", "union"])
def test_sparse_subspace_zero_outside_mask_at_every_point(runs, policy):
    root, _ = runs
    ends = [torch.load(root / n / "final.pt", weights_only=True) for n in ("dense", "prune")]
    model = mlp()
    mask = paths.policy_mask(policy, ends, model)
    expect = {"shared": M.nonzero_masks(ends[1], model), "to": M.nonzero_masks(ends[1], model)}.get(policy)
    if expect is not None:
        assert all(torch.equal(mask[k], expect[k]) for k in mask)
    coeffs = torch.tensor([paths.Linear().coeffs(t) for t in paths.grid(9, -0.5, 1.5)], dtype=torch.float64)
    stacked, _ = paths.stack_points(ends, coeffs, mask)
    for k, m in mask.items():
        assert stacked[k].shape[0] == 9
        assert bool((stacked[k][:, ~m] == 0).all())
        if policy in ("from", "union"):  # dense start: nothing forced to zero
            assert bool(m.all())


# --- curves -----------------------------------------------------------------------

def curve(kind="bezier", subspace="sparse", steps=40, **kw):
    return {"kind": kind, "from": ref("scratch"), "to": ref("prune"), "points": 7, "subspace": subspace,
            "train": {"steps": steps, "batch_size": 64, "checkpoint_every": 10,
                      "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
                      "schedule": "garipov"}, **kw}


def test_sparse_bezier_stays_in_mask_and_dense_leaves_it(runs, cache):
    root, out = runs
    mask = torch.load(root / "prune" / "mask.pt", weights_only=True)
    for degree in (2, 3):
        m = run_path(root, cache, f"bz{degree}", curve(degree=degree))
        saved = torch.load(root / f"bz{degree}" / "curve.pt", weights_only=True)
        pts = saved["points"]
        assert len(pts) == degree + 1
        for p in pts[1:-1]:  # control points: trained (moved off the line) but zero outside the mask
            for k, keep in mask.items():
                assert bool((p[k][~keep] == 0).all()) and bool((p[k][keep] != 0).any())
        line = paths.combine([pts[0], pts[-1]], [0.5, 0.5]) if degree == 2 else None
        if line is not None:
            assert not torch.equal(pts[1]["net.3.weight"], line["net.3.weight"])
        assert m["vars"]["train_loss"][0] == out["scratch"]["scalars"]["final_train_loss"]
        assert m["vars"]["train_loss"][-1] == out["prune"]["scalars"]["final_train_loss"]
        assert math.isfinite(m["scalars"]["curve_loss"]) and m["scalars"]["length"] > 0
    m = run_path(root, cache, "bzd", curve(subspace="dense"))
    pts = torch.load(root / "bzd" / "curve.pt", weights_only=True)["points"]
    assert any(bool((pts[1][k][~keep] != 0).any()) for k, keep in mask.items())
    # and the dense curve is evaluated as trained: its midpoint is not cut back into the mask
    from runners.data import load
    from runners.evaluate import evaluate

    x, y, _, _ = load(CFG["data"], cache)
    net = mlp()
    net.load_state_dict(paths.combine(pts, paths.Bezier(2).coeffs(0.5)))
    assert m["vars"]["train_loss"][3] == pytest.approx(evaluate(net, x, y)[0], rel=1e-5)
    assert "mask_sparsity" not in m["scalars"]


def test_polychain(runs, cache):
    pc = paths.Polychain(2)
    assert pc.coeffs(0.0) == [1.0, 0.0, 0.0, 0.0] and pc.coeffs(1.0) == [0.0, 0.0, 0.0, 1.0]
    assert pc.coeffs(0.5) == pytest.approx([0.0, 0.5, 0.5, 0.0])
    assert pc.coeffs(1 / 3) == pytest.approx([0.0, 1.0, 0.0, 0.0])
    root, out = runs
    m = run_path(root, cache, "pc", curve(kind="polychain", bends=2, steps=20))
    assert len(torch.load(root / "pc" / "curve.pt", weights_only=True)["points"]) == 4
    assert m["vars"]["test_acc"][-1] == out["prune"]["scalars"]["final_test_acc"]


def test_killed_curve_resumes_from_its_checkpoint(runs, cache):
    root, _ = runs
    whole = run_path(root, cache, "cv_whole", curve(steps=30))
    with pytest.raises(paths._StopCurve):
        run_path(root, cache, "cv_killed", curve(steps=30), stop_after=17)
    assert torch.load(root / "cv_killed" / "curve_ckpt.pt", weights_only=True)["step"] == 17
    assert not (root / "cv_killed" / "curve.pt").exists()
    resumed = run_path(root, cache, "cv_killed", curve(steps=30))
    a = torch.load(root / "cv_whole" / "curve.pt", weights_only=True)["points"][1]
    b = torch.load(root / "cv_killed" / "curve.pt", weights_only=True)["points"][1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["vars"] == whole["vars"] and resumed["scalars"] == whole["scalars"]
    # the saved curve is evaluated again without training
    again = run_path(root, cache, "cv_killed", curve(steps=30))
    assert again["vars"] == whole["vars"]


def test_garipov_schedule():
    lr = [paths.garipov_lr(s, 1.0, 100) for s in range(100)]
    assert lr[0] == lr[50] == 1.0 and lr[70] == pytest.approx(1 - 0.99 * 0.5)
    assert lr[90] == pytest.approx(0.01) and lr[99] == pytest.approx(0.01)


# --- BatchNorm --------------------------------------------------------------------

class MLPBN(nn.Module):
    """Test-only MLP with BatchNorm1d after each hidden Linear (a model of one's own, by
    import path: model: {arch: custom, target: "test_paths:MLPBN"})."""

    def __init__(self, in_shape, n_classes, hidden=(48, 24)):
        super().__init__()
        layers, w = [nn.Flatten()], math.prod(in_shape)
        for h in hidden:
            layers += [nn.Linear(w, h), nn.BatchNorm1d(h), nn.ReLU()]
            w = h
        self.net = nn.Sequential(*layers, nn.Linear(w, n_classes))

    def forward(self, x):
        return self.net(x)


def test_bn_recalibration_restores_endpoint_accuracy(tmp_path, cache, monkeypatch):
    model_cfg = {"arch": "custom", "target": "test_paths:MLPBN"}
    c = cfg({"regime": "dense"}, model=model_cfg)
    c["train"]["steps"] = 80
    run = job.run({"id": "bn", "kind": "train", "config": c}, tmp_path / "bn", {}, cache)
    acc = run["scalars"]["final_train_acc"]
    # the same weights with the running statistics of a fresh model (as a curve's control point has)
    state = torch.load(tmp_path / "bn" / "final.pt", weights_only=True)
    fresh = MLPBN((1, 8, 8), 10).state_dict()
    for k in state:
        if "running" in k:
            state[k] = fresh[k]
    (tmp_path / "stale").mkdir()
    torch.save(state, tmp_path / "stale" / "final.pt")
    p = {"kind": "linear", "from": ref("stale"), "to": ref("bn"), "points": 3, "mask": "none"}
    inputs = {"stale": tmp_path / "stale", "bn": tmp_path / "bn"}
    stale = job.run({"id": "p0", "kind": "path", "config": path_cfg({**p, "bn_batches": 0}, model=model_cfg)},
                    tmp_path / "p0", inputs, cache)
    recal = job.run({"id": "p1", "kind": "path", "config": path_cfg({**p, "bn_batches": 30}, model=model_cfg)},
                    tmp_path / "p1", inputs, cache)
    assert stale["vars"]["train_acc"][-1] == acc  # interpolated statistics: the run itself
    assert stale["vars"]["train_acc"][0] < acc - 0.2  # stale statistics: far worse
    assert recal["vars"]["train_acc"][0] == pytest.approx(acc, abs=0.03)  # recomputed: restored
    assert recal["vars"]["train_acc"][-1] == pytest.approx(acc, abs=0.03)


# --- batched evaluation -----------------------------------------------------------

def test_batched_evaluation_matches_one_model_per_point(runs, cache):
    from runners import data

    root, _ = runs
    ends = [torch.load(root / n / "final.pt", weights_only=True) for n in ("scratch", "prune")]
    x, y, _, _ = data.load(CFG["data"], cache)
    model = mlp()
    coeffs = torch.tensor([paths.Linear().coeffs(t) for t in paths.grid(13, -0.2, 1.2)], dtype=torch.float64)
    stacked, fixed = paths.stack_points(ends, coeffs, None)
    loop = paths.evaluate_loop(model, stacked, fixed, x, y)
    # small chunks: several point chunks and several data chunks
    batched = paths.evaluate_batched(model, stacked, fixed, x, y, max_elements=3 * 64 * 48)
    assert batched[0] == pytest.approx(loop[0], rel=1e-5) and batched[1] == pytest.approx(loop[1], abs=1.5 / len(y))


# --- summaries --------------------------------------------------------------------

def test_summaries_on_hand_made_curves():
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    s = paths.summarize(ts, [1.0, 2.0, 3.0, 1.5, 0.5])
    assert s["barrier"] == pytest.approx(2.0)
    # straight line between 1.0 and 0.5: 0.875 at 0.25, 0.75 at 0.5, 0.625 at 0.75
    assert s["barrier_linear"] == pytest.approx(2.25)
    assert s["monotone"] == 0 and s["max_rise"] == pytest.approx(1.0)
    # trapezoids of width 0.25: (1.5 + 2.5 + 2.25 + 1.0) / 4
    assert s["mean_loss"] == pytest.approx(7.25 / 4) and s["length"] == pytest.approx(1.0)
    # length weighting: the segments next to the peak are 3x longer in parameter space
    s = paths.summarize(ts, [1.0, 2.0, 3.0, 1.5, 0.5], lengths=[1.0, 3.0, 3.0, 1.0])
    assert s["mean_loss"] == pytest.approx((1.5 + 3 * 2.5 + 3 * 2.25 + 1.0) / 8) and s["length"] == 8.0
    # decreasing within the tolerance: monotone and no barrier, yet above the straight line
    s = paths.summarize(ts, [2.0, 1.5, 1.50005, 0.7, 0.5])
    assert s["monotone"] == 1 and s["barrier"] == 0.0 and s["max_rise"] == pytest.approx(5e-5)
    assert s["barrier_linear"] == pytest.approx(1.50005 - 1.25)
    s = paths.summarize(ts, [2.0, 1.0, 0.9, 0.7, 0.5])
    assert s["barrier_linear"] == pytest.approx(0.0) and s["max_rise"] == 0.0
    # a convex dip: below the line everywhere inside
    s = paths.summarize([0.0, 0.5, 1.0], [1.0, 0.2, 1.0])
    assert s["barrier"] == 0.0 and s["barrier_linear"] == pytest.approx(0.0) and s["monotone"] == 0
    # extrapolated points do not count; missing endpoints come from the evaluator
    s = paths.summarize([-0.5, 0.0, 0.5, 1.0, 1.5], [9.0, 1.0, 4.0, 2.0, 9.0])
    assert s["barrier"] == pytest.approx(2.0) and s["barrier_linear"] == pytest.approx(2.5)
    s = paths.summarize([0.5], [3.0], endpoint_loss={0.0: 1.0, 1.0: 2.0}.get)
    assert s["barrier"] == pytest.approx(1.0) and s["mean_loss"] == pytest.approx((2.0 + 2.5) / 2)


# --- spec and plan ----------------------------------------------------------------

RUNS = """\
sweep: {seed: [0, 1]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.6, every: 10}}
  scratch: {regime: fixed_mask, mask: prune.final}
paths:
  ctl: {kind: linear, from: {ref: scratch.final, at: {seed: 0}}, to: {ref: scratch.final, at: {seed: 1}}}
  bz: {kind: bezier, from: scratch.final, to: prune.final, degree: 3, subspace: dense}
"""


def test_endpoints_across_sweep_points_are_planned():
    p = build(loads(SPEC_BASE + RUNS).study)
    jobs = {(c.name, c.index["seed"]): p.jobs[c.job] for c in p.cells}
    for seed in (0, 1):
        ctl = jobs[("ctl", seed)]
        assert ctl.config["path"]["from"] == {"job": jobs[("scratch", 0)].id, "artifact": "final"}
        assert ctl.config["path"]["to"] == {"job": jobs[("scratch", 1)].id, "artifact": "final"}
        assert set(ctl.deps) == {jobs[("scratch", 0)].id, jobs[("scratch", 1)].id}
        assert ctl.stage == 2
        bz = jobs[("bz", seed)].config["path"]
        assert bz["degree"] == 3 and bz["to"]["job"] == jobs[("prune", seed)].id
        assert bz["mask"] == "shared" and bz["train"]["schedule"] == "garipov"


@pytest.mark.parametrize("old, new, expected", [
    ("at: {seed: 1}", "at: {seed: 7}",
     r"^s.yaml:10:\d+: paths.ctl.to.at.seed: 7 is not a coordinate of dimension 'seed'\n  hint: seed takes the values 0, 1"),
    ("at: {seed: 1}", "at: {sed: 1}",
     r"^s.yaml:10:\d+: paths.ctl.to.at.sed: 'sed' is not a sweep dimension \(dimensions: seed\)\n  hint: did you mean 'seed'\?"),
    ("{ref: scratch.final, at: {seed: 0}}", "{ref: scrach.final, at: {seed: 0}}",
     r"paths.ctl.from.ref: no run named 'scrach'"),
    ("subspace: dense", "subspace: sparse, mask: none", r"paths.bz: a sparse subspace needs a mask"),
    ("degree: 3", "degree: 4", r"paths.bz.*degree"),
    ("subspace: dense", "subspace: dense, mask: shard", r"paths.bz.*mask.*\n  hint: did you mean 'shared'\?"),
])
def test_path_spec_errors_are_located(old, new, expected):
    import re

    text = SPEC_BASE + RUNS.replace(old, new)
    with pytest.raises(UserError) as e:
        loads(text, "s.yaml")
    assert re.search(expected, str(e.value)), str(e.value)


# --- end to end -------------------------------------------------------------------

@pytest.mark.slow  # ~14 job processes (each imports torch): about a minute on 2 idle cores
def test_paths_all_spec_end_to_end(tmp_path):
    import xarray as xr

    spec, store, out = ROOT / "specs" / "paths_all.yaml", tmp_path / "store", tmp_path / "paths_all.nc"
    studyspec("run", spec, "--store", store, "--out", out, "-j", "2", check=True)
    with xr.open_dataset(out) as ds:
        assert list(ds.path.values) == ["init_to_pruned", "scratch_to_pruned", "bezier_sparse",
                                        "bezier_dense", "scratch_seeds"]
        assert ds.path_train_loss.dims == ("path", "seed", "t")
        for var in ("barrier", "barrier_linear", "monotone", "max_rise", "mean_loss", "length"):
            v = ds[f"path_{var}"]
            assert v.dims == ("path", "seed") and bool(v.notnull().all()), var
            assert v.attrs["long_name"] and "units" in v.attrs
        assert bool(ds.path_curve_loss.sel(path="bezier_sparse").notnull().all())
        # the control joins the same two solutions at both sweep points
        ctl = ds.path_train_loss.sel(path="scratch_seeds").dropna("t")
        assert ctl.sizes["t"] == 11 and float(abs(ctl.sel(seed=0) - ctl.sel(seed=1)).max()) < 1e-5
        # endpoints of the linear paths: the runs' own final losses
        s2p = ds.path_train_loss.sel(path="scratch_to_pruned")
        assert (s2p.sel(t=1.0).values == ds.train_loss.sel(run="prune").isel(step=-1).values).all()


def test_batched_chunks_are_sized_by_activations_not_weights():
    """A conv net's feature maps (16 x 32 x 32 per example for a ResNet-20) bound a batched
    pass's memory; its weights' widths (16..64) would put far too many points in a chunk."""
    torch.manual_seed(0)
    conv = models.build({"arch": "resnet", "depth": 20}, (3, 32, 32), 10).eval()
    x1 = torch.randn(1, 3, 32, 32)
    assert paths.widest_activation(conv, dict(conv.state_dict()), x1) == 16 * 32 * 32
    mlp = models.build({"arch": "mlp", "hidden": [300, 100]}, 40, 10)
    assert paths.widest_activation(mlp, dict(mlp.state_dict()), torch.randn(1, 40)) == 300
    # the batched pass still agrees with the loop when the chunks are small
    ends = [{k: v.clone() for k, v in conv.state_dict().items()}]
    torch.manual_seed(1)
    ends.append({k: v.clone() for k, v in models.build({"arch": "resnet", "depth": 20}, (3, 32, 32), 10).state_dict().items()})
    coeffs = torch.tensor([paths.Linear().coeffs(t) for t in (0.0, 0.5, 1.0)], dtype=torch.float64)
    stacked, fixed = paths.stack_points(ends, coeffs, None)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    loop = paths.evaluate_loop(conv, stacked, fixed, x, y)
    batched = paths.evaluate_batched(conv, stacked, fixed, x, y, max_elements=2 * 8 * 16 * 32 * 32)  # 2 points a chunk
    assert batched[0] == pytest.approx(loop[0], rel=1e-4) and batched[1] == loop[1]
