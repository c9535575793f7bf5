"""Every ready study in specs/ validates and plans (full-scale ones without their data here),
and `plan` prints a GPU-hour estimate."""

from pathlib import Path

import pytest

from conftest import ROOT, studyspec
from studyspec.estimate import gpu_hours, seconds
from studyspec.load import load
from studyspec.plan import build
from studyspec.spec.jobs import parse_job

SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_spec_validates_and_plans(path: Path):
    loaded = load(path, data_check=False)  # full-scale data is not on this machine
    plan = build(loaded.study)
    assert plan.jobs and plan.cells
    hours = gpu_hours(plan)
    assert hours["total"] > 0 and hours["total"] == pytest.approx(hours["train"] + hours["path"])


def test_experiment_specs_exist():
    names = {p.name for p in SPECS}
    for exp in ("e0_", "e1_", "e2_", "e3_", "e4_", "e5_"):
        assert any(n.startswith(exp) for n in names), exp


def test_estimate_model():
    job = lambda data, model, steps, every, **kw: parse_job(
        {"kind": "train", "seed": 0, "data": data, "model": model, "train": {"steps": steps, "eval_every": every},
         "regime": {"regime": "dense"}, **kw})
    mlp = job({"dataset": "mnist1d", "batch_size": 256}, {"arch": "mlp"}, 1000, 100)
    imagenet = {"dataset": "imagenet", "root": "/data", "batch_size": 1024}
    resnet50 = job(imagenet, {"arch": "torchvision_resnet", "depth": 50}, 128000, 4000)
    # 128k steps x 1024 images x 2.9 ms: about 105 GPU-hours per ResNet-50 run
    assert seconds(resnet50) / 3600 == pytest.approx(128000 * (2e-3 + 1024 * 2.9e-3) / 3600, rel=0.05)
    assert seconds(mlp) < 10
    twice = job(imagenet, {"arch": "torchvision_resnet", "depth": 50}, 256000, 4000)
    assert seconds(twice) == pytest.approx(2 * seconds(resnet50), rel=0.01)
    # imp trains every round: 3 rounds rewound to step 0 cost 4 runs
    imp = job(imagenet, {"arch": "torchvision_resnet", "depth": 50}, 128000, 4000)
    imp = imp.model_copy(update={"regime": parse_job(
        {**imp.model_dump(mode="json"), "regime": {"regime": "imp", "rounds": 3}}).regime})
    assert seconds(imp) == pytest.approx(4 * seconds(resnet50), rel=0.01)
    # a curve's cost grows with its points: a polychain with 3 bends trains 5 points, one with 1 bend 3
    ends = {"from": {"job": "a", "artifact": "final"}, "to": {"job": "b", "artifact": "final"}}
    chain = lambda bends: parse_job({"kind": "path", "seed": 0, "data": imagenet, "model": {"arch": "torchvision_resnet"},
                                     "path": {"kind": "polychain", "bends": bends, "points": 2, **ends}})
    curve_part = lambda j: seconds(j) - 2 * (10000 + 50000) * resnet50.model.cost_per_example() / 3
    assert curve_part(chain(3)) / 1000 - 2e-3 == pytest.approx((curve_part(chain(1)) / 1000 - 2e-3) * 5 / 3)


def test_plan_prints_the_estimate():
    proc = studyspec("plan", ROOT / "specs" / "quickstart.yaml", "--store", ROOT / "nonexistent-store", check=True)
    assert "estimated" in proc.stderr and "GPU-hours" in proc.stderr
    assert not (ROOT / "nonexistent-store").exists()


def test_plan_cli_on_a_full_scale_spec_without_its_data():
    spec = ROOT / "specs" / "imagenet-resnet50-gale.yaml"
    refused = studyspec("plan", spec)
    assert refused.returncode == 2 and "data.root" in refused.stderr and "--no-data-check" in refused.stderr
    proc = studyspec("plan", spec, "--no-data-check", check=True)
    assert "GPU-hours" in proc.stderr.replace("\n", " ")
