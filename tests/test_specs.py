"""Every ready study in specs/ validates and plans (full-scale ones without their data here),
and `plan` prints a GPU-hour estimate."""

from pathlib import Path

import pytest

from conftest import ROOT, studyspec
from studyspec.estimate import gpu_hours, seconds
from studyspec.load import load
from studyspec.plan import build

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
    mlp = {"kind": "train", "data": {"dataset": "mnist1d", "batch_size": 256}, "model": {"arch": "mlp"},
           "train": {"steps": 1000, "eval_every": 100}}
    resnet50 = {"kind": "train", "data": {"dataset": "imagenet", "batch_size": 1024},
                "model": {"arch": "torchvision_resnet", "depth": 50}, "train": {"steps": 128000, "eval_every": 4000}}
    # 128k steps x 1024 images x 2.9 ms: about 105 GPU-hours per ResNet-50 run
    assert seconds(resnet50) / 3600 == pytest.approx(128000 * (2e-3 + 1024 * 2.9e-3) / 3600, rel=0.05)
    assert seconds(mlp) < 10
    twice = dict(resnet50, train={"steps": 256000, "eval_every": 4000})
    assert seconds(twice) == pytest.approx(2 * seconds(resnet50), rel=0.01)


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
