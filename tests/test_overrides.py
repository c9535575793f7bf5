"""Command-line overrides (`studyspec plan SPEC train.steps=300 sweep.seed=[0,1]`): checked like
keys of the file, errors pointing at the override, ids changed only through the resolved config."""

import re

import pytest
import yaml

from conftest import BASE, studyspec
from studyspec.errors import UserError
from studyspec.load import loads
from studyspec.overrides import load
from studyspec.plan import build

SPEC = BASE + """\
sweep: {seed: [0, 1]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.6, every: 10}}
  scratch: {regime: fixed_mask, mask: prune.final}
"""


def ids(path, *items):
    return list(build(load(path, list(items), data_check=False).study).jobs)


def error_of(path, *items) -> str:
    with pytest.raises(UserError) as e:
        load(path, list(items), data_check=False)
    return str(e.value)


def test_an_override_is_the_same_as_editing_the_file(write_spec):
    spec = write_spec(SPEC)
    edited = write_spec(SPEC.replace("steps: 60", "steps: 30").replace("every: 10}", "every: 5}"), "edited.yaml")
    assert ids(spec, "train.steps=30", "runs.prune.schedule.every=5") == ids(edited)
    assert ids(spec, "train.steps=60") == ids(spec)  # the file's own value: same ids
    assert ids(spec, "train.steps=30") != ids(spec)
    assert len(ids(spec, "sweep.seed=[0, 1, 2]")) == 6
    assert len(ids(spec, "sweep.seed=[0, 1]", "sweep.sparsity=[0.5, 0.9]")) == 8
    got = load(spec, ["sweep.train.optimizer.lr=[0.1, 0.2]", "model.hidden[0]=16", "train.optimizer={name: adam}"],
               data_check=False)
    assert got.study.sweep["train.optimizer.lr"] == [0.1, 0.2]
    assert list(got.study.model.hidden) == [16]
    assert got.study.train.optimizer.name == "adam"
    # values read as in the file (the spec loader's YAML): a time limit stays text, not sexagesimal 5400
    slurm = load(spec, ["launch.slurm.time=1:30:00"], data_check=False)
    assert slurm.study.launch.slurm.time == "1:30:00" and "'1:30:00'" in slurm.source.text
    # the resolved spec (what collect records) loads and says what ran
    resolved = yaml.safe_load(got.source.text)
    assert resolved["model"]["hidden"] == [16] and got.source.overrides[1] == "model.hidden[0]=16"
    assert got.source.text.startswith(f"# {spec} with command-line overrides: sweep.train.optimizer.lr")
    assert loads(got.source.text, data_check=False).study == got.study  # the recorded spec is the one that ran


@pytest.mark.parametrize("items, expected", [
    (["train.stepz=30"], r"^<override 1: train.stepz=30>: train.stepz: unknown key 'stepz'\n"
                         r"  hint: did you mean 'steps'\?"),
    (["train.steps=30", "train.steps=abc"], r"^<override 2: train.steps=abc>: train.steps: Input should be a valid integer"),
    (["modl.arch=mlp"], r"^<override 1: modl.arch=mlp>: modl: unknown key 'modl'\n  hint: did you mean 'model'\?"),
    (["runs.scratch.mask=prun.final"], r"^<override 1: runs.scratch.mask=prun.final>: runs.scratch.mask: no run named "
                                       r"'prun'.*\n  hint: did you mean 'prune.final'\?"),
    (["sweep.train.optimizer.lrr=[0.1]"], r"^<override 1: sweep.train.optimizer.lrr=\[0.1\]>: .*is not a field"),
    (["sparsity=1.5"], r"^<override 1: sparsity=1.5>: sparsity: Input should be less than 1"),
    (["sweep.seed=[0,1"], r"^<override 1: sweep.seed=\[0,1>: sweep.seed: YAML syntax error"),
    (["train.steps=!!python/object:os.system 1"], r"^<override 1: .*>: train.steps: YAML tag .* is not allowed"),
    (["steps"], r"^<override 1: steps>: expected KEY.PATH=VALUE, got 'steps'"),
    (["train..steps=1"], r"^<override 1: train..steps=1>: expected KEY.PATH=VALUE"),
    (["train.steps.x=1"], r"^<override 1: train.steps.x=1>: train.steps.x: train.steps holds a value \(60\), not keys"),
    (["model.hidden[3]=1"], r"^<override 1: model.hidden\[3\]=1>: model.hidden\[3\]: model.hidden has no item \[3\] "
                            r"\(it has 1\)"),
])
def test_a_bad_override_is_located_at_the_override(write_spec, items, expected):
    assert re.search(expected, error_of(write_spec(SPEC), *items)), error_of(write_spec(SPEC), *items)


def test_an_error_in_the_file_still_points_at_the_file(write_spec):
    spec = write_spec(SPEC.replace("steps: 60", "steps: many"))
    assert re.search(r"spec.yaml:4:16: train.steps: Input should be a valid integer",
                     error_of(spec, "train.eval_every=10"))
    assert ids(spec, "train.steps=60") == ids(write_spec(SPEC, "good.yaml"))  # the override fixes it


def test_cli_overrides_plan_and_record_in_collect(write_spec, tmp_path):
    spec = write_spec(SPEC)
    bad = studyspec("plan", spec, "train.stepz=30", "--store", tmp_path / "store")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("<override 1: train.stepz=30>: train.stepz: unknown key 'stepz'")
    nc = tmp_path / "r.nc"
    studyspec("collect", spec, "train.steps=30", "sweep.seed=[0,1,2]", "--store", tmp_path / "store", "-o", nc,
              check=True)
    import xarray as xr

    with xr.open_dataset(nc) as ds:
        assert ds.attrs["overrides"] == "train.steps=30\nsweep.seed=[0,1,2]"
        assert yaml.safe_load(ds.attrs["spec"])["train"]["steps"] == 30
        assert ds.sizes["seed"] == 3 and "train.steps=30" in ds.attrs["history"]
