"""Every mistake a user can make is caught at load time, located, with a hint; exit code 2."""

import re

import pytest

from conftest import BASE, studyspec
from studyspec.errors import UserError
from studyspec.load import loads

RUNS = """\
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.6, every: 10}}
  scratch: {regime: fixed_mask, mask: prune.final}
"""


def error_of(text: str) -> str:
    with pytest.raises(UserError) as e:
        loads(text, "s.yaml")
    return str(e.value)


def test_a_good_spec_loads():
    spec = loads(BASE + RUNS, "s.yaml")
    assert list(spec.study.runs) == ["prune", "scratch"]


@pytest.mark.parametrize("text, expected", [
    # misspelled key: located at the key, closest valid name suggested
    (BASE.replace("eval_every", "eval_evry") + RUNS,
     r"^s.yaml:4:20: train.eval_evry: unknown key 'eval_evry'\n  hint: did you mean 'eval_every'\?"),
    # wrong type
    (BASE.replace("steps: 60", "steps: many") + RUNS,
     r"^s.yaml:4:16: train.steps: Input should be a valid integer"),
    # reference to a missing run
    (BASE + RUNS.replace("mask: prune.final", "mask: prun.final"),
     r"^s.yaml:7:39: runs.scratch.mask: no run named 'prun' \(runs: prune, scratch\)\n  hint: did you mean 'prune.final'\?"),
    # a cycle
    (BASE + "runs:\n  a: {regime: fixed_mask, mask: b.final}\n  b: {regime: fixed_mask, mask: a.mask}\n",
     r"^s.yaml:\d+:\d+: runs.[ab].mask: runs reference each other in a cycle: a -> b -> a"),
    # an unknown regime
    (BASE + "runs:\n  a: {regime: prunne}\n",
     r"^s.yaml:6:15: runs.a: unknown regime 'prunne'; expected one of .*\n  hint: did you mean 'prune'\?"),
    # unknown artifact
    (BASE + "runs:\n  d: {regime: dense}\n  s: {regime: fixed_mask, mask: d.last}\n",
     r"runs.s.mask: 'd.last' is not a reference: write RUN.ARTIFACT"),
    # a dense run has no mask
    (BASE + "runs:\n  d: {regime: dense}\n  s: {regime: fixed_mask, mask: d.final}\n",
     r"runs.s.mask: run 'd' \(regime dense\) has no mask"),
    # a step that is not kept
    (BASE + "runs:\n  d: {regime: dense}\npaths:\n  p: {kind: linear, from: 'd.step[20]', to: d.final}\n",
     r"paths.p.from: step 20 is not kept\n  hint: add 20 to train.checkpoints"),
    # a missing required key
    (BASE + "runs:\n  p: {regime: prune}\n", r"runs.p.schedule: required key 'schedule' is missing"),
    # names become directories: no path tricks
    (BASE.replace("study: t", "study: ../t") + RUNS, r"^s.yaml:1:8: study: '../t' is not a plain name"),
    # sweep of a field that does not exist
    (BASE + "sweep: {train.optimizer.lrr: [0.1]}\n" + RUNS, r"sweep.train.optimizer.lrr\[0\]: .* is not a field"),
    # a bad sweep value
    (BASE + "sweep: {sparsity: [0.5, 1.5]}\n" + RUNS, r"^s.yaml:5:25: sweep.sparsity\[1\]: sweep value 1.5: Input should be less than 1"),
    # pruning that ends before it begins
    (BASE + "runs:\n  p: {regime: prune, schedule: {begin: 0.6, end: 0.1}}\n", r"end \(0.1\) comes before begin \(0.6\)"),
    # YAML that builds objects is refused
    (BASE + "runs: !!python/object:os.system {}\n", r"^s.yaml:5:\d+: "),
    # a key given twice
    (BASE + RUNS + "runs: {}\n", r"key 'runs' appears twice"),
])
def test_errors_are_located(text, expected):
    assert re.search(expected, error_of(text)), error_of(text)


def test_every_problem_reported_once(tmp_path):
    text = BASE.replace("eval_every", "eval_evry").replace("batch_size: 256", "batch_size: -1") + RUNS
    lines = [line for line in error_of(text).splitlines() if not line.startswith("  hint")]
    assert len(lines) == 2


@pytest.mark.parametrize("mistake", ["eval_evry", "steps: many", "prun.final", "cycle"])
def test_validate_exits_2_with_one_located_error(write_spec, mistake):
    text = BASE + RUNS
    if mistake == "eval_evry":
        text = text.replace("eval_every", mistake)
    elif mistake == "steps: many":
        text = text.replace("steps: 60", mistake)
    elif mistake == "prun.final":
        text = text.replace("prune.final", mistake)
    else:
        text = BASE + "runs:\n  a: {regime: fixed_mask, mask: b.final}\n  b: {regime: fixed_mask, mask: a.final}\n"
    path = write_spec(text)
    proc = studyspec("validate", path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if re.match(rf"^{re.escape(str(path))}:\d+:\d+: ", line)]
    assert len(errors) == 1, proc.stderr


def test_validate_missing_file(tmp_path):
    proc = studyspec("validate", tmp_path / "nope.yaml")
    assert proc.returncode == 2 and "cannot read spec" in proc.stderr and "Traceback" not in proc.stderr


def test_schema_is_json_schema():
    import json

    proc = studyspec("schema", check=True)
    schema = json.loads(proc.stdout)
    assert "runs" in schema["properties"] and "study" in schema["required"]
