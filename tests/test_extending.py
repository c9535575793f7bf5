"""The recipes of docs/extending.md, followed from a test module: a model and a dataset of
one's own by import path (plan, launch, collect; located errors), and a toy regime added
through the spec layer and the runners' registry."""

from __future__ import annotations

import math
import re
from typing import ClassVar, Literal

import numpy as np
import pytest
import torch
from torch import nn

from conftest import ROOT, studyspec
from studyspec.errors import UserError
from studyspec.load import loads
from studyspec.plan import build

TESTS = ROOT / "tests"


# --- a model and a dataset of one's own (named by import path "test_extending:...") ------

class WideMLP(nn.Module):
    """model: {arch: custom, target: "test_extending:WideMLP", args: {width: N}}"""

    def __init__(self, in_shape, n_classes, width):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), width), nn.ReLU(),
                                 nn.Linear(width, n_classes))

    def forward(self, x):
        return self.net(x)


def blobs(n, classes=3):
    """data: {dataset: custom, target: "test_extending:blobs", args: {n: N}}: Gaussian blobs."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (classes, 2))

    def draw(m):
        y = rng.integers(0, classes, m)
        return (centres[y] + rng.normal(0, 1, (m, 2))).astype(np.float32), y

    x, y = draw(n)
    x_test, y_test = draw(n // 4)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test, "classes": classes}


BYO = """\
study: byo
data: {dataset: custom, target: "test_extending:blobs", args: {n: 300}, batch_size: 32}
model: {arch: custom, target: "test_extending:WideMLP", args: {width: 24}}
train: {steps: 30, eval_every: 10}
sparsity: 0.8
runs:
  prune: {regime: prune, schedule: {begin: 0.2, end: 0.6, every: 5}}
  scratch: {regime: fixed_mask, mask: prune.final}
paths:
  lin: {kind: linear, from: scratch.final, to: prune.final, points: 5}
"""


def test_own_model_and_data_by_import_path_end_to_end(tmp_path):
    import xarray as xr

    spec = tmp_path / "byo.yaml"
    spec.write_text(BYO)
    out = tmp_path / "byo.nc"
    # run from the folder holding the module, as a user runs from their project
    studyspec("run", spec, "--store", tmp_path / "store", "--out", out, "-j", "1", cwd=TESTS, check=True)
    ds = xr.open_dataset(out)
    loss = ds.train_loss.sel(run="prune")
    assert float(loss.isel(step=-1)) < float(loss.isel(step=0))
    assert float(ds.final_train_acc.sel(run="prune")) > 0.5  # three well separated blobs
    assert ds.path_train_loss.sizes["t"] == 5
    # the target, its args and the code's version are in the ids: other args, other jobs
    plan = build(loads(BYO, "byo.yaml").study)
    job = next(j for j in plan.jobs.values() if j.kind == "train")
    assert job.key["model"]["target"] == "test_extending:WideMLP" and job.key["model"]["args"] == {"width": 24}
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", job.key["model"]["version"])
    assert job.key["data"]["version"] == job.key["model"]["version"]  # the same file
    other = build(loads(BYO.replace("width: 24", "width: 25"), "byo.yaml").study)
    assert not set(plan.jobs) & {j.id for j in other.jobs.values() if j.kind == "train"}


@pytest.mark.parametrize("model, where, message", [
    ('{arch: custom, target: "no_such_module:Net"}', "model.target",
     r"module 'no_such_module' not found on the import path"),
    ('{arch: custom, target: "test_extending.sub:Net"}', "model.target", r"is a module, not a package"),
    ('{arch: custom, target: "test_extending:WideMPL"}', "model.target",
     r"'WideMPL' is not defined at the top of module 'test_extending' .*did you mean WideMLP\?"),
    ('{arch: custom, target: "test_extending:WideMLP"}', "model", r"missing width"),
    ('{arch: custom, target: "test_extending:WideMLP", args: {width: 3, depth: 2}}', "model",
     r"unknown 'depth'; it takes width"),
    ('{arch: custom, target: "WideMLP"}', "model.target", r"not an import path"),
])
def test_own_code_errors_are_located(model, where, message):
    text = BYO.replace('{arch: custom, target: "test_extending:WideMLP", args: {width: 24}}', model)
    with pytest.raises(UserError) as e:
        loads(text, "byo.yaml")
    assert re.search(rf"byo.yaml:3:\d+: {re.escape(where)}: .*{message}", str(e.value)), str(e.value)


def test_own_code_errors_exit_2_on_the_command_line(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(BYO.replace("test_extending:blobs", "test_extending:blobz"))
    proc = studyspec("validate", spec, cwd=TESTS)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"bad.yaml:2:\d+: data.target: 'blobz' is not defined .*did you mean blobs\?", proc.stderr)


# --- a toy regime, added from this module (docs/extending.md, "a new regime") ------------

from studyspec.spec.regimes import Regime as RegimeSpec  # noqa: E402


class Toy(RegimeSpec):
    """Spec side: keep the largest weights of the initial model, at the study's sparsity."""

    uses_sparsity: ClassVar[bool] = True
    has_mask: ClassVar[bool] = True
    regime: Literal["toy"]
    scale: float = 1.0  # a field with its default: not in the id unless set


def test_a_toy_regime_through_the_spec_and_the_registry(tmp_path, cache):
    from runners import job, masks as M, registry, regimes
    from studyspec.spec import jobs

    @registry.implements(Toy)
    class ToyRunner(regimes.Regime):
        def start(self):
            self.ctx.model = self.ctx.build()
            sp = M.layer_sparsities(self.ctx.model, self.r.sparsity, "uniform")
            self.ctx.set_masks(M.magnitude_masks(self.ctx.model, sp))
            with torch.no_grad():
                for p in self.ctx.model.parameters():
                    p.mul_(self.r.scale)

    jobs.add_regime(Toy)
    try:
        spec = ("study: t\ndata: {dataset: digits, batch_size: 64}\nmodel: {arch: mlp, hidden: [32]}\n"
                "train: {steps: 20, eval_every: 10}\nsparsity: 0.7\n"
                "runs:\n  toy: {regime: toy}\n  toy2: {regime: toy, scale: 0.5}\n  scratch: {regime: fixed_mask, mask: toy.mask}\n")
        plan = build(loads(spec, "t.yaml").study)
        cells = {c.name: plan.jobs[c.job] for c in plan.cells}
        toy = cells["toy"]
        assert toy.key["regime"] == {"regime": "toy", "sparsity": 0.7}  # the default scale stays out of the id
        assert cells["toy2"].key["regime"]["scale"] == 0.5 and cells["scratch"].deps == (toy.id,)
        # every spec member still has exactly one implementation, the toy's included
        impls = registry.registered()
        assert (Toy, None) in [m for ms in registry.members().values() for m in ms] and impls[(Toy, None)] is ToyRunner
        out = job.run({"id": toy.id, "kind": "train", "config": toy.config}, tmp_path / toy.id, {}, cache)
        assert out["scalars"]["final_weight_sparsity"] == pytest.approx(0.7, abs=0.01)
        assert (tmp_path / toy.id / "mask.pt").exists()  # has_mask: a scratch run can take its mask
        sc = cells["scratch"]
        out = job.run({"id": sc.id, "kind": "train", "config": sc.config}, tmp_path / sc.id,
                      {toy.id: tmp_path / toy.id}, cache)
        assert out["scalars"]["final_weight_sparsity"] == pytest.approx(0.7, abs=0.01)
    finally:
        jobs.remove_regime(Toy)
        registry.unregister(Toy)
    with pytest.raises(UserError, match="toy"):
        loads(spec, "t.yaml")
