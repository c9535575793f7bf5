"""Tests of the torch runners (real training on small real data, no mocks)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from runners import data, job, masks as M, models, paths, schedule, train
from studyspec.spec.train import LRSchedule

torch.set_num_threads(1)

STEPS = 60
BASE = {
    "kind": "train", "seed": 0,
    "data": {"dataset": "digits", "batch_size": 64},
    "model": {"arch": "mlp", "hidden": [64, 32]},
    "train": {"steps": STEPS,
              "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4},
              "schedule": {"name": "cosine", "warmup": 5},
              "eval_every": 10, "checkpoints": [40, 50]},
    "regime": {"regime": "dense"},
}
PRUNE = {"regime": "prune", "sparsity": 0.9, "distribution": "uniform",
         "schedule": {"initial": 0.0, "begin": 0.2, "end": 0.6, "every": 5}}  # steps 12..36


def cfg(regime, seed=0, **train_kw):
    c = copy.deepcopy(BASE)
    c["seed"], c["regime"] = seed, copy.deepcopy(regime)
    c["train"].update(train_kw)
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache):
    """A prune run and its scratch / lottery / dense siblings (seed 0)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}

    def go(name, config, inputs=None, kind="train"):
        out[name] = job.run({"id": name, "kind": kind, "config": config}, root / name,
                            {k: root / k for k in (inputs or [])}, cache)
        return out[name]

    go("prune", cfg(PRUNE))
    go("prune_again", cfg(PRUNE))
    go("dense", cfg({"regime": "dense"}))
    ref = lambda art: {"job": "prune", "artifact": art}
    go("scratch", cfg({"regime": "fixed_mask", "mask": ref("final"), "init": "fresh"}), ["prune"])
    go("lottery", cfg({"regime": "fixed_mask", "mask": ref("mask"), "init": ref("init")}), ["prune"])
    return root, out


def load(root, name, file):
    return torch.load(root / name / file, weights_only=True)


# --- schedule ---------------------------------------------------------------------

def test_cubic_schedule_values():
    f = lambda t: schedule.cubic_sparsity(t, 0.0, 0.9, 10, 20)
    assert f(0) == 0.0 and f(10) == 0.0
    assert f(15) == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert f(12) == pytest.approx(0.9 - 0.9 * 0.8**3)
    assert f(20) == 0.9 and f(100) == 0.9
    assert schedule.cubic_sparsity(5, 0.5, 0.95, 0, 10) == pytest.approx(0.95 - 0.45 * 0.125)
    # one-shot
    assert schedule.cubic_sparsity(9, 0.0, 0.8, 10, 10) == 0.0
    assert schedule.cubic_sparsity(10, 0.0, 0.8, 10, 10) == 0.8


def test_update_steps():
    upd = [t for t in range(40) if schedule.is_update_step(t, 10, 25, 10)]
    assert upd == [10, 20, 25]
    assert [t for t in range(40) if schedule.is_update_step(t, 7, 7, 30)] == [7]
    assert schedule.step_bounds(0.1, 0.6, 3000) == (300, 1800)


def test_lr_schedule():
    s = LRSchedule(name="cosine", warmup=4)
    assert [train.lr_at(t, 1.0, s, 14) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert train.lr_at(9, 1.0, s, 14) == pytest.approx(0.5)
    assert train.lr_at(13, 1.0, LRSchedule(), 14) == 1.0


# --- masks ------------------------------------------------------------------------

def test_magnitude_masks_exact_count_and_largest():
    torch.manual_seed(0)
    model = models.build({"arch": "mlp", "hidden": [30, 20]}, 17, 10)
    assert list(M.prunable(model)) == ["net.1.weight", "net.3.weight", "net.5.weight"]
    sp = M.layer_sparsities(model, 0.9, "uniform")
    masks = M.magnitude_masks(model, sp)
    for name, w in M.prunable(model).items():
        m = masks[name]
        assert int(m.sum()) == round(0.1 * w.numel())
        assert w[m].abs().min() >= w[~m].abs().max()
    M.apply(model, masks)
    assert M.sparsity(model) == pytest.approx(M.sparsity(model, masks))
    assert M.sparsity(model) == pytest.approx(0.9, abs=2e-3)
    for name, w in M.prunable(model).items():  # biases untouched, weights exactly +0
        assert torch.equal(w[~masks[name]], torch.zeros(int((~masks[name]).sum())))


def test_erk_hits_target_and_unknown_distribution():
    torch.manual_seed(0)
    model = models.build({"arch": "mlp", "hidden": [300, 100]}, 40, 10)
    n = {k: p.numel() for k, p in M.prunable(model).items()}
    for dist in ("erk", "erdos_renyi"):
        sp = M.layer_sparsities(model, 0.95, dist)
        kept = sum((1 - sp[k]) * n[k] for k in n)
        assert kept == pytest.approx(0.05 * sum(n.values()))
        assert all(0.0 <= s <= 1.0 for s in sp.values())
    with pytest.raises(ValueError, match="uniform"):
        M.layer_sparsities(model, 0.9, "nope")


# --- data -------------------------------------------------------------------------

def test_datasets(cache):
    x, y, xt, yt = data.load({"dataset": "digits"}, cache)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (1437, 1, 8, 8) and xt.shape == (360, 1, 8, 8)  # the shape of studyspec.datasets.FACTS
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    x, y, xt, yt = data.load({"dataset": "mnist1d"}, cache)
    assert x.shape == (4000, 1, 40) and xt.shape == (1000, 1, 40) and y.dtype == torch.int64
    assert len(list(Path(cache).glob("mnist1d-*.npz"))) == 1
    assert torch.equal(data.load({"dataset": "mnist1d"}, cache)[0], x)
    with pytest.raises(ValueError, match="mnist1d"):
        data.load({"dataset": "cifar7"}, cache)


# --- training regimes -------------------------------------------------------------

def test_metrics_shape(runs):
    _, out = runs
    m = out["prune"]
    assert m["dim"] == "step" and m["coord"] == list(range(0, STEPS + 1, 10))
    for v in m["vars"].values():
        assert len(v) == len(m["coord"]) and all(isinstance(a, float) for a in v)
    assert m["vars"]["weight_sparsity"][0] == 0.0  # pruning starts at step 12
    assert m["vars"]["train_loss"][-1] < m["vars"]["train_loss"][0]


def test_prune_reaches_target_and_zeros_stay_zero(runs):
    root, out = runs
    mask = load(root, "prune", "mask.pt")
    for name, m in mask.items():
        assert int((~m).sum()) == m.numel() - round(0.1 * m.numel())
    target = M.sparsity(None, mask)
    # after the last update (step 36) the recorded sparsity is the target at every eval
    sp = dict(zip(out["prune"]["coord"], out["prune"]["vars"]["weight_sparsity"]))
    assert all(sp[t] == pytest.approx(target, abs=1e-6) for t in (40, 50, 60))
    for f in ("step_40.pt", "step_50.pt", "final.pt"):
        sd = load(root, "prune", f)
        for name, m in mask.items():
            assert (sd[name][~m] == 0).all(), (f, name)
    assert not (root / "dense" / "mask.pt").exists()


def test_fixed_mask_zeros_stay_zero(runs):
    root, out = runs
    mask = load(root, "prune", "mask.pt")
    for run in ("scratch", "lottery"):
        assert all(torch.equal(a, b) for a, b in zip(mask.values(), load(root, run, "mask.pt").values()))
        for f in ("init.pt", "step_40.pt", "final.pt"):
            sd = load(root, run, f)
            for name, m in mask.items():
                assert (sd[name][~m] == 0).all(), (run, f, name)
        assert min(out[run]["vars"]["weight_sparsity"]) >= M.sparsity(None, mask) - 1e-9


def test_lottery_starts_from_prune_init_scratch_does_not(runs):
    root, _ = runs
    mask = load(root, "prune", "mask.pt")
    p_init, l_init, s_init = (load(root, r, "init.pt") for r in ("prune", "lottery", "scratch"))
    for k, v in p_init.items():
        expected = v * mask[k] if k in mask else v
        assert torch.equal(l_init[k], expected), k
    assert not torch.equal(s_init["net.1.weight"], l_init["net.1.weight"])
    assert not torch.equal(s_init["net.1.bias"], p_init["net.1.bias"])
    # dense and prune share init (same seed)
    assert all(torch.equal(v, load(root, "dense", "init.pt")[k]) for k, v in p_init.items())


def test_determinism(runs):
    root, out = runs
    assert out["prune"] == out["prune_again"]
    a, b = load(root, "prune", "final.pt"), load(root, "prune_again", "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_adam_and_seed_changes_numbers(tmp_path, cache):
    c = cfg({"regime": "dense"}, seed=1, steps=20, checkpoints=[])
    c["train"]["optimizer"] = {"name": "adam", "lr": 1e-3, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    m1 = job.run({"id": "a", "kind": "train", "config": c}, tmp_path / "a", {}, cache)
    c["seed"] = 2
    m2 = job.run({"id": "b", "kind": "train", "config": c}, tmp_path / "b", {}, cache)
    assert m1["coord"] == [0, 10, 20] and m1["vars"] != m2["vars"]


# --- paths ------------------------------------------------------------------------

def run_path(root, cache, name, frm, to, points, rng):
    c = {"kind": "path", "seed": 0, "data": BASE["data"], "model": BASE["model"],
         "path": {"kind": "linear", "from": frm, "to": to, "points": points, "range": rng}}
    return job.run({"id": name, "kind": "path", "config": c}, root / name,
                   {r["job"]: root / r["job"] for r in (frm, to)}, cache)


def test_linear_path_endpoints_reproduce_runs(runs, cache):
    root, out = runs
    frm, to = {"job": "scratch", "artifact": "final"}, {"job": "prune", "artifact": "final"}
    m = run_path(root, cache, "path_grid", frm, to, 15, [-0.2, 1.2])
    assert m["dim"] == "t" and len(m["coord"]) == 15 and m["coord"][2] == 0.0 and m["coord"][12] == 1.0
    assert all(len(v) == 15 for v in m["vars"].values())
    tl = m["vars"]["train_loss"]
    assert tl[2] == out["scratch"]["scalars"]["final_train_loss"]
    assert tl[12] == out["prune"]["scalars"]["final_train_loss"]
    assert m["vars"]["test_acc"][12] == out["prune"]["scalars"]["final_test_acc"]
    s = m["scalars"]
    assert s["barrier"] == pytest.approx(max(tl[2:13]) - max(tl[2], tl[12]))
    # grid without the endpoints: they are evaluated separately
    m2 = run_path(root, cache, "path_off", frm, to, 4, [0.1, 0.9])
    assert m2["scalars"]["train_loss_from"] == out["scratch"]["scalars"]["final_train_loss"]
    assert m2["scalars"]["train_loss_to"] == out["prune"]["scalars"]["final_train_loss"]


def test_barrier_and_monotone_constructed(runs, cache):
    s = paths.summarize([0.0, 0.5, 1.0], [1.0, 2.5, 0.5])
    assert s["barrier"] == pytest.approx(1.5) and s["monotone"] == 0
    s = paths.summarize([-0.5, 0.0, 0.5, 1.0, 1.5], [9.0, 1.0, 0.7, 0.5, 9.0])
    assert s["barrier"] == 0.0 and s["monotone"] == 1  # extrapolated points do not count
    assert paths.summarize([0.0, 0.5, 1.0], [1.0, 1.00005, 0.5])["monotone"] == 1
    s = paths.summarize([0.25, 0.75], [2.0, 3.0], endpoint_loss=lambda t: {0.0: 1.0, 1.0: 2.5}[t])
    assert s["barrier"] == pytest.approx(0.5) and s["monotone"] == 0
    # a real degenerate path (a point to itself) is flat: no barrier, monotone
    root, _ = runs
    ref = {"job": "prune", "artifact": "final"}
    m = run_path(root, cache, "path_self", ref, ref, 5, [0.0, 1.0])
    assert abs(m["scalars"]["barrier"]) < 1e-5 and m["scalars"]["monotone"] == 1
    # the straight line from a point to a much worse one rises: barrier 0, not monotone
    m = run_path(root, cache, "path_up", ref, {"job": "prune", "artifact": "init"}, 5, [0.0, 1.0])
    tl = m["vars"]["train_loss"]
    assert tl[-1] > tl[0] and m["scalars"]["monotone"] == 0
    assert m["scalars"]["barrier"] == pytest.approx(max(tl) - max(tl[0], tl[-1]))


def test_bezier_coefficients_and_errors():
    assert paths.Bezier(1).coeffs(0.3) == pytest.approx(paths.Linear().coeffs(0.3))
    c = paths.Bezier(3).coeffs(0.4)
    assert sum(c) == pytest.approx(1.0) and c[0] == pytest.approx(0.6**3)
    with pytest.raises(ValueError, match="train"):
        job.run({"id": "x", "kind": "nope", "config": {"kind": "nope"}}, Path("/tmp"), {}, Path("/tmp"))


def test_importing_runners_job_is_torch_free():
    import subprocess, sys
    root = Path(__file__).resolve().parents[1]
    code = "import sys, runners.job; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
