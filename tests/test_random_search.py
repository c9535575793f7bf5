"""Random search in the sweep: deterministic points (pinned), combined with grid axes, located errors."""

import math
import re

import pytest

from conftest import BASE
from studyspec.collect import gather
from studyspec.errors import UserError
from studyspec.load import loads
from studyspec.overrides import apply, parse
from studyspec.plan import build
from studyspec.spec.search import Distribution, quantile, samples
from studyspec.store import Store
from studyspec.yamlpos import loads as loads_yaml

RANDOM = "{n: 5, seed: 0, axes: {train.optimizer.lr: {loguniform: [1.0e-3, 1]}, train.steps: {choice: [30, 60]}}}"
SPEC = BASE + f"""\
sweep:
  seed: [0, 1]
  random: {RANDOM}
runs:
  dense: {{regime: dense}}
"""


def test_points_and_ids_are_pinned():
    spec = loads(SPEC, data_check=False)
    assert samples(spec.study.sweep["random"]) == [
        (0.00124564, 30), (0.0012025, 60), (0.00567973, 60), (0.397248, 60), (0.434404, 60)]
    plan = build(spec.study)
    assert [d.name for d in plan.dims] == ["seed", "sample"] and len(plan.jobs) == 10
    assert list(plan.jobs)[:3] == ["3eb79b4a3736df33", "f8a3159b51d26e7d", "bdb8cb201d1693c4"]
    first = plan.jobs["3eb79b4a3736df33"].config
    assert (first["seed"], first["train"]["optimizer"]["lr"], first["train"]["steps"]) == (0, 0.00124564, 30)
    # a random point is an ordinary point: the same job as the grid spec with those values
    grid = loads(BASE.replace("steps: 60", "steps: 30").replace("eval_every: 20}", "eval_every: 20, optimizer: "
                                                                "{name: sgd, lr: 0.00124564}}") + "runs:\n  dense: {regime: dense}\n",
                 data_check=False)
    assert list(build(grid.study).jobs) == ["3eb79b4a3736df33"]


def test_draws_are_stable_when_the_search_grows():
    one = loads(SPEC, data_check=False).study.sweep["random"]
    more = loads(SPEC.replace("n: 5, seed: 0", "n: 8, seed: 0").replace(
        "train.steps: {choice: [30, 60]}", "train.steps: {choice: [30, 60]}, model.hidden: {choice: [[16], [32]]}"),
        data_check=False).study.sweep["random"]
    assert [p[:2] for p in samples(more)[:5]] == samples(one)  # more points and another axis: the first ones stay
    other = loads(SPEC.replace("seed: 0, axes", "seed: 1, axes"), data_check=False).study.sweep["random"]
    assert samples(other) != samples(one)
    # through an override too
    source, _ = apply(loads_yaml(SPEC), parse(["sweep.random.n=3"]))
    assert len(build(loads(source.text, data_check=False).study).jobs) == 6


def test_distributions_cover_their_range():
    u = [quantile(7, "x", i) for i in range(2000)]
    assert all(0 <= x < 1 for x in u) and abs(sum(u) / len(u) - 0.5) < 0.03
    log = [Distribution(loguniform=(1e-3, 1)).draw(x) for x in u]
    assert min(log) >= 1e-3 and max(log) <= 1 and 0.45 < sum(v < math.sqrt(1e-3) for v in log) / len(log) < 0.55
    ints = [Distribution(randint=(2, 4)).draw(x) for x in u]
    assert set(ints) == {2, 3, 4} and all(abs(ints.count(k) / len(ints) - 1 / 3) < 0.05 for k in (2, 3, 4))
    assert {Distribution(choice=["a", "b"]).draw(x) for x in u} == {"a", "b"}
    flat = [Distribution(uniform=(-1, 1)).draw(x) for x in u]
    assert -1 <= min(flat) < -0.99 and 0.99 < max(flat) <= 1


def test_collected_dataset_has_a_sample_dim_with_the_drawn_values(tmp_path):
    plan = build(loads(SPEC, data_check=False).study)
    ds = gather(plan, Store(tmp_path)).ds
    assert ds.sizes["sample"] == 5 and list(ds["sample"].values) == [0, 1, 2, 3, 4]
    assert ds["lr"].dims == ("sample",) and ds["lr"].values[3] == 0.397248
    assert list(ds["steps"].values) == [30, 60, 60, 60, 60]
    assert "random" in ds["lr"].attrs["long_name"]


@pytest.mark.parametrize("random, expected", [
    ("{n: 3, axes: {train.optimizer.lr: {loguniform: [0, 1]}}}",
     r"^s.yaml:7:\d+: sweep.random.axes.train.optimizer.lr: loguniform: \[lo, hi\] needs 0 < lo"),
    ("{n: 3, axes: {train.optimizer.lr: {logunifrom: [0.1, 1]}}}",
     r"sweep.random.axes.train.optimizer.lr: unknown distribution 'logunifrom' \(did you mean 'loguniform'\?\)"),
    ("{n: 3, axes: {train.optimizer.lr: {uniform: [1, 0.5]}}}", r"uniform: \[lo, hi\] needs lo < hi"),
    ("{n: 3, axes: {train.optimizer.lr: {uniform: [0, 1], choice: [1]}}}", r"give exactly one distribution"),
    ("{n: 3, axes: {train.optimizer.lr: [0.1, 0.2]}}", r"train.optimizer.lr: Input should be a valid dictionary"),
    ("{n: 0, axes: {train.optimizer.lr: {uniform: [0, 1]}}}", r"^s.yaml:7:15: sweep.random.n: Input should be greater"),
    ("{n: 3, axes: {}}", r"sweep.random.axes: Dictionary should have at least 1 item"),
    ("{n: 3, axes: {train.steps: {uniform: [1, 5]}}}",
     r"sweep.random.axes.train.steps: drawn sweep value [\d.]+: Input should be a valid integer"),
    ("{n: 3, axes: {train.stepz: {randint: [1, 5]}}}", r"sweep.random.axes.train.stepz: .*'train.stepz' is not a field"),
    ("{n: 3, axes: {seed: {randint: [0, 9]}}}", r"axis 'seed' would make a second dimension named 'seed'"),
    ("[1, 2]", r"sweep: `random` takes \{n: N, axes"),
])
def test_bad_random_search_is_located(random, expected):
    with pytest.raises(UserError) as e:
        loads(SPEC.replace(RANDOM, random), "s.yaml", data_check=False)
    assert re.search(expected, str(e.value)), str(e.value)


def test_only_random_takes_a_mapping():
    with pytest.raises(UserError) as e:
        loads(SPEC.replace("seed: [0, 1]", "seed: {n: 3}"), "s.yaml", data_check=False)
    assert re.search(r"^s.yaml:6:3: sweep: sweep axis 'seed' needs a non-empty list of values", str(e.value))
