"""`--json` on validate, plan and status: real output validated against the JSON Schemas in docs/json.md."""

import json
import re

import jsonschema
import pytest

from typer.testing import CliRunner

from conftest import BASE, ROOT, studyspec
from studyspec.cli import app
from studyspec.jsonout import VERSION

SPEC = BASE + """\
sweep: {seed: [0, 1], zip: [{sparsity: [0.5, 0.9], train.optimizer.lr: [0.1, 0.05]}]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.6, every: 10}}
  scratch: {regime: fixed_mask, mask: prune.final}
paths:
  p: {kind: linear, from: scratch.final, to: prune.final, points: 3}
  seeds: {kind: linear, from: {ref: prune.final, at: {seed: 0}}, to: {ref: prune.final, at: {seed: 1}}, points: 3}
"""


def schemas() -> list[dict]:
    doc = (ROOT / "docs" / "json.md").read_text()
    found = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", doc, re.S)]
    assert len(found) == 2
    for s in found:
        jsonschema.Draft202012Validator.check_schema(s)
        assert f"version {VERSION}" in s["title"]
    return found


def run_json(*args, code=0) -> dict:
    """The real command, in-process (the JSON goes to stdout alone; errors and tables to stderr)."""
    got = CliRunner().invoke(app, [*map(str, args), "--json"])
    assert got.exit_code == code, got.stderr
    return json.loads(got.stdout)


def test_validate_json(write_spec):
    validate, _ = schemas()
    good = run_json("validate", write_spec(SPEC))
    jsonschema.validate(good, validate)
    assert good["ok"] and good["runs"] == ["prune", "scratch"] and good["paths"] == ["p", "seeds"]
    assert [(d["name"], d["axes"], d["size"]) for d in good["dims"]] == [
        ("seed", ["seed"], 2), ("sparsity", ["sparsity", "train.optimizer.lr"], 2)]
    assert good["dims"][1]["values"]["train.optimizer.lr"] == [0.1, 0.05]
    bad = run_json("validate", write_spec(SPEC.replace("steps: 60", "steps: many")), "train.stepz=1", code=2)
    jsonschema.validate(bad, validate)
    assert not bad["ok"] and bad["overrides"] == ["train.stepz=1"]
    errors = {(e["file"].rsplit("/", 1)[-1], e["line"], e["where"]) for e in bad["errors"]}
    assert errors == {("spec.yaml", 4, "train.steps"), ("<override 1: train.stepz=1>", None, "train.stepz")}


def test_plan_and_status_json(write_spec, tmp_path):
    _, jobs_schema = schemas()
    spec, store = write_spec(SPEC), tmp_path / "store"
    plan = run_json("plan", spec, "--store", store)
    jsonschema.validate(plan, jobs_schema)
    assert plan["format"] == "studyspec.plan" and plan["store"] == str(store)
    jobs = plan["jobs"]
    # 2 seeds x 2 sparsities x (prune, scratch, p) + the seed path once per sparsity (filling both seeds' cells)
    assert len(jobs) == 14 and plan["counts"] == {"to run": 14}
    assert [s["kinds"] for s in plan["stages"]] == [{"train": 4}, {"train": 4, "path": 2}, {"path": 4}]
    seeds = [j for j in jobs if j["name"] == "seeds"]
    assert len(seeds) == 2 and all(len(j["cells"]) == 2 for j in seeds)
    assert {json.dumps(c["point"], sort_keys=True) for c in seeds[0]["cells"]} == {
        '{"seed": 0, "sparsity": 0.5}', '{"seed": 1, "sparsity": 0.5}'}
    prune = next(j for j in jobs if j["name"] == "prune" and j["point"] == {"seed": 1, "sparsity": 0.9})
    scratch = next(j for j in jobs if j["name"] == "scratch" and j["point"] == {"seed": 1, "sparsity": 0.9})
    assert scratch["deps"] == [prune["id"]] and scratch["stage"] == 1
    assert prune["log"] == str(store / prune["id"] / "log.txt") and prune["slurm_task"] is None
    assert plan["estimate_gpu_hours"]["total"] == pytest.approx(sum(j["estimate_gpu_hours"] for j in jobs))
    # states as a local launch leaves them: one finished (its shard), one failed (a log, no shard, no lock)
    (store / prune["id"]).mkdir(parents=True)
    (store / prune["id"] / "shard.json").write_text('{"coord": [], "vars": {}}')  # a valid (empty) shard
    (store / scratch["id"]).mkdir()
    (store / scratch["id"] / "log.txt").write_text("Traceback ...")
    status = run_json("status", spec, "--store", store, "train.steps=60")
    jsonschema.validate(status, jobs_schema)
    assert status["format"] == "studyspec.status" and status["overrides"] == ["train.steps=60"]
    states = {j["id"]: j["state"] for j in status["jobs"]}
    assert states[prune["id"]] == "done" and states[scratch["id"]] == "failed"
    assert status["counts"] == {"done": 1, "failed": 1, "to run": 12}
    assert [s["done"] for s in status["stages"]] == [1, 0, 0]
    assert studyspec("status", spec, "--store", store, "--json").stdout == CliRunner().invoke(
        app, ["status", str(spec), "--store", str(store), "--json"]).stdout  # the same from the installed command
