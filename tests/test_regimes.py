"""Every training regime, for real (digits, a small MLP, a few dozen steps): pruned weights
stay exactly zero, masks have the promised sparsity, lottery/rewinding start where they
should, small_dense matches the parameter count; training options (optimizers, schedules,
epochs, label smoothing)."""
from __future__ import annotations

import copy

import pytest
import torch

from runners import job, masks as M, models, optim, regimes, train
from studyspec.spec.jobs import parse_job
from studyspec.spec.train import LRSchedule, Optimizer

torch.set_num_threads(1)

STEPS, SPARSITY = 40, 0.8
KEPT = [20, 30, 40]
BASE = {
    "kind": "train", "seed": 0,
    "data": {"dataset": "digits", "batch_size": 64},
    "model": {"arch": "mlp", "hidden": [48, 24]},
    "train": {"steps": STEPS,
              "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4},
              "schedule": {"name": "cosine", "warmup": 3},
              "eval_every": 10, "checkpoints": KEPT, "checkpoint_every": 0},
    "regime": {"regime": "dense"},
}
REF = lambda run, art: {"job": run, "artifact": art}
MASKED = {"init": "fresh", "shuffle": False, "scale_init": False, "distribution": "uniform"}
DST = dict(MASKED, mask="random", sparsity=SPARSITY, every=5, drop_fraction=0.3, stop=0.75)
REGIMES = {
    "prune": {"regime": "prune", "sparsity": SPARSITY, "distribution": "uniform", "scope": "layer",
              "schedule": {"initial": 0.0, "begin": 0.1, "end": 0.4, "every": 4}},
    "oneshot_global": {"regime": "prune", "sparsity": SPARSITY, "distribution": "uniform", "scope": "global",
                       "schedule": {"initial": 0.0, "begin": 0.25, "end": 0.25, "every": 100}},
    "imp": {"regime": "imp", "sparsity": SPARSITY, "rounds": 2, "fraction": None, "rewind": 5,
            "distribution": "uniform", "scope": "layer"},
    "scratch": dict(MASKED, regime="fixed_mask", mask=REF("prune", "final")),
    "shuffled": dict(MASKED, regime="fixed_mask", mask=REF("prune", "mask"), shuffle=True),
    "lottery": dict(MASKED, regime="fixed_mask", mask=REF("prune", "final"), init=REF("prune", "init")),
    "rewound": dict(MASKED, regime="fixed_mask", mask=REF("prune", "final"), init=REF("prune", "step[20]")),
    "continued": dict(MASKED, regime="fixed_mask", mask=REF("scratch", "mask"), init=REF("scratch", "final")),
    "static": dict(MASKED, regime="fixed_mask", mask="random", sparsity=SPARSITY, distribution="erk",
                   scale_init=True),
    "rigl": dict(DST, regime="rigl"),
    "set": dict(DST, regime="set"),
    "small_dense": {"regime": "small_dense", "sparsity": SPARSITY},
}
DEPS = {"scratch": ["prune"], "shuffled": ["prune"], "lottery": ["prune"], "rewound": ["prune"],
        "continued": ["scratch"]}


def cfg(regime, **train_kw):
    c = copy.deepcopy(BASE)
    c["regime"] = copy.deepcopy(regime)
    c["train"].update(train_kw)
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache):
    root = tmp_path_factory.mktemp("regimes")
    out = {}
    for name, regime in REGIMES.items():
        out[name] = job.run({"id": name, "kind": "train", "config": cfg(regime)}, root / name,
                            {d: root / d for d in DEPS.get(name, [])}, cache)
    return root, out


def load(root, name, file):
    return torch.load(root / name / file, weights_only=True)


def kept_per_layer(mask):
    return {k: int(m.sum()) for k, m in mask.items()}


def expected_kept(distribution="uniform"):
    torch.manual_seed(0)
    model = models.build(BASE["model"], 64, 10)
    sp = M.layer_sparsities(model, SPARSITY, distribution)
    return {k: M.n_keep(p.numel(), sp[k]) for k, p in M.prunable(model).items()}


@pytest.mark.parametrize("name", [n for n in REGIMES if n != "small_dense"])
def test_mask_sparsity_and_zeros_stay_zero(runs, name):
    root, out = runs
    mask = load(root, name, "mask.pt")
    total = sum(m.numel() for m in mask.values())
    kept = sum(int(m.sum()) for m in mask.values())
    assert kept == pytest.approx((1 - SPARSITY) * total, abs=len(mask)), name
    if name != "oneshot_global" and name != "static":
        assert kept_per_layer(mask) == expected_kept(), name
    final = load(root, name, "final.pt")
    for k, m in mask.items():
        assert (final[k][~m] == 0).all(), (name, k)
    assert out[name]["scalars"]["final_weight_sparsity"] >= SPARSITY - 1e-3
    # fixed masks: every kept checkpoint of training is zero outside the mask
    fixed = REGIMES[name]["regime"] == "fixed_mask"
    for step in KEPT if fixed else []:
        sd = load(root, name, f"step_{step}.pt")
        for k, m in mask.items():
            assert (sd[k][~m] == 0).all(), (name, step, k)
    # the recorded sparsity never drops below the target once reached
    sp = out[name]["vars"]["weight_sparsity"]
    first = next(i for i, s in enumerate(sp) if s >= SPARSITY - 1e-3)
    assert all(s >= SPARSITY - 1e-3 for s in sp[first:]), (name, sp)


def test_static_random_mask_follows_distribution(runs):
    root, _ = runs
    mask = load(root, "static", "mask.pt")
    assert kept_per_layer(mask) == expected_kept("erk")
    # scale_init: the fresh init is scaled by 1/sqrt(density) per layer
    init = load(root, "static", "init.pt")
    torch.manual_seed(regimes.derive_seed(0, "fresh"))
    plain = models.build(BASE["model"], 64, 10).state_dict()
    for k, m in mask.items():
        d = float(m.sum()) / m.numel()
        assert torch.allclose(init[k][m], plain[k][m] / d**0.5)


def test_lottery_rewinding_continue_and_shuffle(runs):
    root, _ = runs
    mask = load(root, "prune", "mask.pt")
    for run, art in (("lottery", "init.pt"), ("rewound", "step_20.pt")):
        start, src = load(root, run, "init.pt"), load(root, "prune", art)
        for k, v in src.items():
            assert torch.equal(start[k], v * mask[k] if k in mask else v), (run, k)
    cont, scratch = load(root, "continued", "init.pt"), load(root, "scratch", "final.pt")
    assert all(torch.equal(cont[k], scratch[k]) for k in scratch)
    shuffled = load(root, "shuffled", "mask.pt")
    assert kept_per_layer(shuffled) == kept_per_layer(mask)
    assert not all(torch.equal(shuffled[k], mask[k]) for k in mask)


def test_oneshot_global_prunes_once_at_begin(runs):
    _, out = runs
    sp = dict(zip(out["oneshot_global"]["coord"], out["oneshot_global"]["vars"]["weight_sparsity"]))
    assert sp[0] == 0.0 and sp[10] >= SPARSITY - 1e-3  # begin = end = step 10: pruned once, before the eval at 10
    root, _ = runs
    mask = load(root, "oneshot_global", "mask.pt")
    # global magnitude: layers differ in sparsity
    dens = [float(m.float().mean()) for m in mask.values()]
    assert max(dens) - min(dens) > 0.01


def test_imp_rounds_and_rewind(runs):
    root, out = runs
    m = out["imp"]
    total = STEPS + 2 * (STEPS - 5)
    assert m["coord"][-1] == total == m["scalars"]["steps"]
    f = m["scalars"]["fraction_per_round"]
    assert 1 - (1 - f) ** 2 == pytest.approx(SPARSITY)
    for r, target in ((0, 0.0), (1, f), (2, SPARSITY)):
        assert m["scalars"][f"round{r}_weight_sparsity"] == pytest.approx(target, abs=2e-3), r
    assert sorted(set(m["vars"]["round"])) == [0.0, 1.0, 2.0]
    # the ticket is the init restricted to the final mask; rewind.pt holds step 5 of round 0
    assert (root / "imp" / "rewind.pt").exists()
    mask = load(root, "imp", "mask.pt")
    assert kept_per_layer(mask) == expected_kept()


def test_dynamic_sparse_changes_mask_keeps_counts(runs, cache, tmp_path):
    root, out = runs
    for name in ("rigl", "set"):
        assert out[name]["scalars"]["mask_updates"] == len([t for t in range(1, 30) if t % 5 == 0])
        start = M.nonzero_masks(load(root, name, "init.pt"), models.build(BASE["model"], 64, 10))
        final = load(root, name, "mask.pt")
        assert kept_per_layer(final) == expected_kept()
        assert not all(torch.equal(start[k], final[k]) for k in final), name
        # after the last update (t=25 < stop=30) the mask is fixed: step 30 and 40 agree with it
        for step in (30, 40):
            sd = load(root, name, f"step_{step}.pt")
            for k, m in final.items():
                assert (sd[k][~m] == 0).all(), (name, step, k)
    # the drop fraction is cosine-annealed from its initial value to 0 at `stop`
    spec = parse_job(cfg(REGIMES["rigl"]))
    ctx = regimes.Context(spec, tmp_path, {}, STEPS, (64,), 10, torch.device("cpu"))
    r = regimes.make(spec.regime, ctx)
    r.start()
    assert r.drop_fraction(0) == pytest.approx(0.3) and r.drop_fraction(15) == pytest.approx(0.15)
    assert r.drop_fraction(30) == pytest.approx(0.0, abs=1e-12)


def test_drop_grow_grows_at_zero_by_score():
    w = torch.tensor([0.5, -0.1, 0.0, 0.0, 0.3, 0.0])
    mask = torch.tensor([True, True, False, False, True, False])
    score = torch.tensor([0.0, 0.0, 0.2, 0.9, 0.0, 0.1])
    new = M.drop_grow(mask, w, 1, score)
    assert new.tolist() == [True, False, False, True, True, False]


def test_small_dense_matches_parameter_count(runs):
    _, out = runs
    s = out["small_dense"]["scalars"]
    assert s["n_params"] == s["small_dense_params"]
    assert abs(s["small_dense_params"] - s["small_dense_target"]) <= 0.01 * s["small_dense_target"]
    assert s["final_weight_sparsity"] < 0.05
    for sparsity, hidden in ((0.9, [300, 100]), (0.95, [300, 100]), (0.98, [300, 100]), (0.5, [128, 64])):
        ws, n, target = regimes.small_dense_widths({"arch": "mlp", "hidden": hidden}, sparsity, (40,), 10)
        assert abs(n - target) <= 0.01 * target, (sparsity, hidden, n, target)
        assert all(h < h0 for h, h0 in zip(ws, hidden))


def _one_unit_step(model_cfg, in_shape, ws, n):
    """The largest change of the parameter count from moving one width by one unit."""
    steps = []
    for i in range(len(ws)):
        for d in (-1, 1):
            if ws[i] + d >= 1:
                w2 = list(ws)
                w2[i] += d
                steps.append(abs(regimes.n_params(model_cfg, in_shape, 10, w2) - n))
    return max(steps)


@pytest.mark.parametrize("model_cfg, in_shape, sparsities", [
    ({"arch": "lenet300_100"}, (1, 28, 28), (0.8, 0.95, 0.98)),
    ({"arch": "lenet5"}, (1, 28, 28), (0.8, 0.95, 0.98)),
    ({"arch": "conv1d", "channels": [32, 32, 32], "kernel": 5}, (1, 40), (0.8, 0.95, 0.98)),
    ({"arch": "resnet", "depth": 20, "width": 16}, (3, 32, 32), (0.8, 0.95, 0.98)),
    ({"arch": "wrn", "depth": 16, "width": 2}, (3, 32, 32), (0.9, 0.98)),
    ({"arch": "torchvision_resnet", "depth": 18}, (3, 64, 64), (0.9,)),
])
def test_small_dense_matches_the_count_for_every_arch(model_cfg, in_shape, sparsities):
    """Target = kept prunable weights + every other parameter (biases, BatchNorm) of the full
    model; the small model's count is all its parameters. Within 2% of the target up to 95%
    sparsity; at any sparsity within 2% or one unit of width (what integer widths allow)."""
    full = models.build(model_cfg, in_shape, 10)
    n_prunable = sum(p.numel() for p in M.prunable(full).values())
    n_full = sum(p.numel() for p in full.parameters())
    for sparsity in sparsities:
        widths, n, target = regimes.small_dense_widths(model_cfg, sparsity, in_shape, 10)
        assert target == M.n_keep(n_prunable, sparsity) + n_full - n_prunable
        small = models.build(model_cfg, in_shape, 10, widths)  # a real model, with the count claimed
        assert sum(p.numel() for p in small.parameters()) == n
        base = models.widths(model_cfg)
        assert len(widths) == len(base) and all(1 <= w < w0 for w, w0 in zip(widths, base)), (widths, base)
        err = abs(n - target)
        assert err <= max(0.02 * target, _one_unit_step(model_cfg, in_shape, widths, n)), (sparsity, widths, n, target)
        if sparsity <= 0.95:
            assert err <= 0.02 * target, (sparsity, widths, n, target)
        if model_cfg["arch"] not in ("mlp", "lenet300_100"):  # conv nets keep their proportions:
            assert any(all(abs(w - max(1, round(w0 * f))) <= 1 for w, w0 in zip(widths, base))  # every width
                       for f in (i / 4000 for i in range(1, 4001))), (widths, base)  # 1 unit from round(w0 f)


def test_torchvision_resnet_with_its_own_widths_is_torchvision_resnet():
    """The width-scaled ResNet (small_dense) is torchvision's construction: at the default
    widths the same parameters, the same init under a seed, the same outputs."""
    for depth in (18, 50):
        torch.manual_seed(0)
        ref = models.build({"arch": "torchvision_resnet", "depth": depth}, (3, 32, 32), 10)
        torch.manual_seed(0)
        ours = models.build({"arch": "torchvision_resnet", "depth": depth}, (3, 32, 32), 10, [64, 64, 128, 256, 512])
        a, b = ref.state_dict(), ours.state_dict()
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(ref.eval()(x), ours.eval()(x))


def test_every_regime_records_grad_norm(runs):
    _, out = runs
    for name, m in out.items():
        g = m["vars"]["grad_norm"]
        assert len(g) == len(m["coord"]) and all(v > 0 for v in g), name


# --- training options -----------------------------------------------------------

def test_lr_schedules():
    ms = LRSchedule(name="multistep", warmup=0, milestones=[0.5, 75], gamma=0.1)
    assert optim.milestone_steps([0.5, 75], 100) == [50, 75]
    lrs = [optim.lr_at(t, 1.0, ms, 100) for t in (0, 49, 50, 74, 75, 99)]
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    warm = ms.model_copy(update={"warmup": 10})
    assert optim.lr_at(4, 1.0, warm, 100) == pytest.approx(0.5) and optim.lr_at(60, 1.0, warm, 100) == pytest.approx(0.1)


@pytest.mark.parametrize("opt", [
    {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    {"name": "adam", "lr": 1e-3, "momentum": 0.0, "nesterov": False, "weight_decay": 1e-4, "betas": [0.9, 0.99]},
    {"name": "adamw", "lr": 1e-3, "momentum": 0.0, "nesterov": False, "weight_decay": 0.01, "betas": [0.9, 0.999]},
])
def test_optimizers_epochs_label_smoothing(tmp_path, cache, opt):
    c = cfg(REGIMES["static"], checkpoints=[], label_smoothing=0.1, eval_every=5,
            schedule={"name": "multistep", "warmup": 2, "milestones": [0.5], "gamma": 0.1})
    c["train"]["steps"], c["train"]["epochs"] = None, 0.5  # 1437 train images / 64 -> 12 steps
    c["train"]["optimizer"] = opt
    m = job.run({"id": "o", "kind": "train", "config": c}, tmp_path / "o", {}, cache)
    assert m["coord"] == [0, 5, 10, 12] and m["scalars"]["steps"] == 12
    assert m["vars"]["train_loss"][-1] < m["vars"]["train_loss"][0]
    mask = load(tmp_path, "o", "mask.pt")
    final = load(tmp_path, "o", "final.pt")
    assert all((final[k][~v] == 0).all() for k, v in mask.items())
    assert isinstance(train.make_optimizer([torch.zeros(1, requires_grad=True)], Optimizer(**opt)),
                      {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[opt["name"]])
