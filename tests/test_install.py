"""The install: dependencies as ranges (pyproject.toml), the tested exact set in
constraints.txt (what CI and the README's two commands install), and an install into an
environment that already holds another torch keeping that torch (pip's own resolver,
asked with --dry-run --report)."""

import json
import re
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

from conftest import ROOT

OTHER_TORCH = "2.13.0"  # within the range, not the tested version; a CPU build lies on this machine's disk


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + sum(project["optional-dependencies"].values(), [])]


def test_constraints_pin_every_dependency_within_its_range():
    pins = _pins()
    for req in _requirements():
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"constraints.txt pins no version of {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req}"
    torch = next(r for r in _requirements() if r.name == "torch")
    assert torch.specifier.contains(OTHER_TORCH) and pins["torch"] != OTHER_TORCH


def test_install_into_an_environment_with_another_torch_keeps_that_torch(tmp_path):
    """A cluster user's environment already has a torch built for their CUDA: installing studyspec
    (without the constraints file) must not replace it. The environment here gets a real torch
    2.13.0 (no pip of its own: this venv's pip installs into it), then pip resolves the install.
    (torchvision stays optional for this reason: the `vision` extra; an environment with torch and
    no torchvision would otherwise get pip's newest torchvision and the newest torch with it.)"""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python")]
    subprocess.run([*pip, "install", "-q", "--no-deps", f"torch=={OTHER_TORCH}"], check=True,
                   capture_output=True)
    report = tmp_path / "report.json"
    proc = subprocess.run([*pip, "install", "-q", "--dry-run", "--report", str(report), "-e", str(ROOT)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    chosen = {item["metadata"]["name"].lower(): item["metadata"] for item in json.loads(report.read_text())["install"]}
    assert "torch" not in chosen, f"pip would replace torch {OTHER_TORCH} by {chosen['torch']['version']}"
    assert "studyspec" in chosen and "xarray" in chosen
    # torchvision is optional: had it been required, pip would pick the newest one, and the torch it pins
    assert "torchvision" not in chosen


def test_a_job_that_needs_torchvision_without_it_says_what_to_install(monkeypatch):
    import pytest

    from runners import models

    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed: import raises ImportError
    with pytest.raises(ImportError, match=r"model torchvision_resnet needs torchvision, which this job's Python "
                                          r".* does not have: install the torchvision built for its torch"):
        models.build({"arch": "torchvision_resnet", "depth": 18}, (3, 32, 32), 10)
    assert models.build({"arch": "mlp", "hidden": [4]}, (40,), 10) is not None  # the others need none
