"""Hostile specs: a corpus of several hundred malformed specs, made by mutating the
project's own specs/*.yaml (types, keys, numbers, references, sweeps, YAML features,
encodings, sizes). Each must be a located UserError (file:line:col; the CLI exits 2),
never another exception, in bounded time and memory. Checked in-process (the loader
and the validator are called directly); a few go through the real command line."""

from __future__ import annotations

import copy
import time
import tracemalloc

import pytest
import yaml

from conftest import ROOT, studyspec
from studyspec.errors import UserError
from studyspec.load import load, loads
from studyspec.plan import build

SPECS = sorted((ROOT / "specs").glob("*.yaml"))
TEXTS = {p.stem: p.read_text() for p in SPECS}
DATA = {name: yaml.safe_load(text) for name, text in TEXTS.items()}
NAN, INF = float("nan"), float("inf")


def dump(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# ---- mutators: spec data -> mutated data (None: does not apply to this spec) -------------

def _set(*path, value):
    def mutate(d):
        node = d
        for p in path[:-1]:
            if not isinstance(node, dict) or p not in node:
                return None
            node = node[p]
        node[path[-1]] = value
        return d
    return mutate


def _first_run(field, value):
    def mutate(d):
        run = next(iter(d["runs"].values()))
        run[field] = value
        return d
    return mutate


def _first_path(field, value):
    def mutate(d):
        if not d.get("paths"):
            return None
        next(iter(d["paths"].values()))[field] = value
        return d
    return mutate


def _length(value):
    def mutate(d):
        d["train"].pop("epochs", None)
        d["train"]["steps"] = value
        return d
    return mutate


def _sweep(sweep):
    def mutate(d):
        d["sweep"] = copy.deepcopy(sweep)
        return d
    return mutate


def _ref_past_end(d):
    """A path from a step that only the longer of two swept training lengths reaches."""
    run = next(iter(d["runs"]))
    d["train"].pop("epochs", None)
    d["train"]["steps"] = 20
    d["train"]["checkpoints"] = [15]
    d["sweep"] = {k: v for k, v in (d.get("sweep") or {}).items() if k != "zip" and not k.startswith("train.")}
    d["sweep"]["train.steps"] = [10, 20]
    d["paths"] = {"p": {"kind": "linear", "from": f"{run}.step[15]", "to": f"{run}.final"}}
    return d


def _epochs_ref(d):
    run = next(iter(d["runs"]))
    d["train"].pop("steps", None)
    d["train"]["epochs"] = 0.001  # a handful of steps on any dataset
    d["train"]["checkpoints"] = [5000]
    d["paths"] = {"p": {"kind": "linear", "from": f"{run}.step[5000]", "to": f"{run}.final"}}
    return d


def _cycle(d):
    d["runs"]["a"] = {"regime": "fixed_mask", "mask": "b.final"}
    d["runs"]["b"] = {"regime": "fixed_mask", "mask": "a.mask"}
    return d


DATA_MUTATORS = {
    # types
    "steps-word": _length("many"), "steps-list": _length([1]), "steps-map": _length({"a": 1}),
    "steps-bool": _length(True), "steps-float": _length(10.5), "batch-word": _set("data", "batch_size", value="big"),
    "batch-bool": _set("data", "batch_size", value=False), "lr-word": _set("train", "optimizer", "lr", value="fast"),
    "runs-list": _set("runs", value=["prune"]), "data-scalar": _set("data", value="mnist1d"),
    "root-list": lambda d: [d], "root-scalar": lambda d: 42,
    # keys
    "unknown-top": _set("trian", value={}), "unknown-train": _set("train", "eval_evry", value=10),
    "unknown-run-key": _first_run("shedule", 1), "no-runs": lambda d: {k: v for k, v in d.items() if k != "runs"},
    "no-data": lambda d: {k: v for k, v in d.items() if k != "data"},
    "bad-regime": _first_run("regime", "prunne"), "bad-arch": _set("model", "arch", value="mlpp"),
    "int-key": lambda d: {**d, "runs": {**d["runs"], 7: {"regime": "dense"}}},
    # numbers: finite, bounded, not booleans
    "steps-huge": _length(10**40 // 10**22), "steps-zero": _length(0), "steps-neg": _length(-5),
    "batch-huge": _set("data", "batch_size", value=10**18), "lr-inf": _set("train", "optimizer", "lr", value=INF),
    "lr-nan": _set("train", "optimizer", "lr", value=NAN), "lr-neg": _set("train", "optimizer", "lr", value=-0.1),
    "betas-out": _set("train", "optimizer", "betas", value=[5, -3]),
    "betas-nan": _set("train", "optimizer", "betas", value=[NAN, 0.9]),
    "momentum-1": _set("train", "optimizer", "momentum", value=1.0),
    "seed-80bit": _set("seed", value=2**80), "seed-40bit": _set("seed", value=2**40), "seed-neg": _set("seed", value=-1),
    "seed-offset-neg": _first_run("seed_offset", -5), "sparsity-1": _set("sparsity", value=1.0),
    "sparsity-nan": _set("sparsity", value=NAN), "eval-every-0": _set("train", "eval_every", value=0),
    "checkpoint-huge": _set("train", "checkpoints", value=[10**12]),
    "hidden-huge": lambda d: _set("model", value={"arch": "mlp", "hidden": [10**12]})(d),
    "hidden-bool": lambda d: _set("model", value={"arch": "mlp", "hidden": [True]})(d),
    "points-huge": _first_path("points", 10**12), "points-1": _first_path("points", 1),
    "range-nan": _first_path("range", [NAN, 1.0]), "range-back": _first_path("range", [1.0, 0.0]),
    "workers-0": _set("launch", value={"workers": 0}),
    # names and paths
    "name-newline": _set("study", value="r8\n"), "name-long": _set("study", value="a" * 300),
    "name-dots": _set("study", value="../t"), "name-space": _set("study", value="my study"),
    "name-empty": _set("study", value=""), "run-name-bad": lambda d: {**d, "runs": {"a-b": {"regime": "dense"}}},
    "store-empty": _set("output", value={"store": ""}), "store-nul": _set("output", value={"store": "a\0b"}),
    "results-newline": _set("output", value={"results": "a\nb"}),
    # references
    "ref-missing-run": _first_path("from", "nope.final"), "ref-bad-artifact": _first_path("to", "x.last"),
    "ref-step-huge": _first_path("from", "a.step[99999999999]"), "ref-cycle": _cycle,
    "ref-sweep-length": _ref_past_end, "ref-epochs-length": _epochs_ref,
    # sweeps
    "sweep-dup": _sweep({"seed": [0, 0]}), "sweep-mixed": _sweep({"seed": [0, "1"]}),
    "sweep-bool-num": _sweep({"train.optimizer.lr": [True, 0.1]}), "sweep-empty": _sweep({"seed": []}),
    "zip-empty-group": _sweep({"zip": [{}]}), "zip-empty": _sweep({"zip": []}),
    "zip-empty-lists": _sweep({"zip": [{"seed": [], "sparsity": []}]}),
    "zip-lengths": _sweep({"zip": [{"seed": [0, 1], "sparsity": [0.5]}]}),
    "sweep-unknown": _sweep({"train.optimizer.lrr": [0.1, 0.2]}), "sweep-run": _sweep({"runs": [1, 2]}),
    "sweep-bad-value": _sweep({"sparsity": [0.5, 1.5]}),
    "sweep-huge": _sweep({"seed": list(range(200)), "sparsity": [i / 400 for i in range(200)],
                          "train.optimizer.lr": [(i + 1) / 1000 for i in range(200)]}),
    "sweep-nan": _sweep({"train.optimizer.lr": [0.1, NAN]}),
    # SLURM settings
    "time-zero-str": _set("launch", value={"slurm": {"time": "0"}}),
    "time-zero-int": _set("launch", value={"slurm": {"time": 0}}),
    "time-zero-hms": _set("launch", value={"slurm": {"time": "00:00:00"}}),
    "time-word": _set("launch", value={"slurm": {"time": "soon"}}),
    "partition-newline": _set("launch", value={"slurm": {"partition": "gpu\n#SBATCH --x"}}),
    "extra-newline": _set("launch", value={"slurm": {"extra": {"exclude": "a\nb"}}}),
    "extra-key": _set("launch", value={"slurm": {"extra": {"bad key\n": 1}}}),
}


# ---- mutators on text (YAML features, encodings, sizes): text -> str or bytes ------------

LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else ', '.join(['lol'] * 10)}]\n"
                 for i in range(9))

TEXT_MUTATORS = {
    "tag-python-map": lambda t: t.replace("\nruns:", "\nruns: !!python/object/new:dict", 1),
    "tag-include": lambda t: t.replace("\ndata:", "\ndata: !include", 1),
    "tag-set": lambda t: t + "x-s: !!set {a, b}\n",
    "tag-binary": lambda t: t.replace("study: ", "study: !!binary ", 1),
    "tag-python-scalar": lambda t: t + "x-a: !!python/name:os.system ''\n",
    "tag-timestamp": lambda t: t.replace("study: ", "study: !!timestamp ", 1),
    "complex-key": lambda t: t + "? [a, b]\n: 1\n",
    "complex-key-map": lambda t: t + "? {a: 1}\n: 1\n",
    "recursive-alias": lambda t: t + "x-r: &a [*a]\n",
    "recursive-alias-map": lambda t: t + "x-r: &a {k: *a}\n",
    "undefined-alias": lambda t: t + "x-u: *nowhere\n",
    "int-word": lambda t: t + "x-i: !!int twenty\n",
    "float-word": lambda t: t + "x-f: !!float many\n",
    "int-5000-digits": lambda t: t + "x-n: " + "7" * 5000 + "\n",
    "int-70-bits": lambda t: t + "x-n: " + str(2**70) + "\n",
    "nesting-1500": lambda t: t + "x-d: " + "[" * 1500 + "]" * 1500 + "\n",
    "nesting-100": lambda t: t + "x-d: " + "[" * 100 + "]" * 100 + "\n",
    "nesting-maps": lambda t: t + "x-d: " + "{a: " * 200 + "1" + "}" * 200 + "\n",
    "billion-laughs": lambda t: t + LAUGHS,
    "merge-scalar": lambda t: t + "x-m: {<<: 5}\n",
    "merge-then-typo": lambda t: "x-d: &d {eval_evry: 1}\n" + t.replace("\ntrain:\n", "\ntrain:\n  <<: *d\n", 1),
    "duplicate-key": lambda t: t + "study: again\n",
    "two-documents": lambda t: t + "---\nstudy: x\n",
    "tab-indent": lambda t: t.replace("\n  ", "\n\t", 1),
    "unclosed": lambda t: t + "x-o: [1, 2\n",
    "bad-colon": lambda t: t.replace("\ntrain:", "\ntrain", 1),
    "empty": lambda t: "",
    "comments-only": lambda t: "# nothing\n",
    "scalar-doc": lambda t: "just text\n",
    "list-doc": lambda t: "- 1\n- 2\n",
    "nul": lambda t: t.replace("\nmodel:", "\nmo\0del:", 1),
    "bell": lambda t: t + "x-c: a\x07b\n",
    "escape": lambda t: t.replace("\nruns:", "\n\x1b[31mruns:", 1),
    "latin1-comment": lambda t: (t + "# caf\xe9\n").encode("latin-1", "replace"),
    "latin1-value": lambda t: t.replace("study: ", "study: \xe9", 1).encode("latin-1", "replace"),
    "utf16-bom": lambda t: t.encode("utf-16"),
    "utf16le": lambda t: t.encode("utf-16-le"),
    "utf32": lambda t: t.encode("utf-32"),
    "bad-utf8": lambda t: t.encode() + b"x-b: \xff\xfe\xfd\n",
    "truncated-utf8": lambda t: t.encode() + b"x-b: \xe2\x82\n",
    "too-large": lambda t: t + "#" * (1 << 20) + "\n",
    "many-unknown-keys": lambda t: t + "".join(f"k{i}: 1\n" for i in range(2000)),
}

TEXT_SPECS = ["quickstart", "e2_barrier", "e3_sparse_curves", "imagenet-resnet50-gale", "paths_all",
              "mnist-lenet5", "cifar10-wrn"]


def _cases(per_mutator: int = 3):
    """Each data mutator on `per_mutator` specs (taking turns over specs/), each text mutator
    on two of TEXT_SPECS: several hundred cases, every spec and every mutator used."""
    cases = []
    names = list(DATA)
    turn = 0
    for name, mutate in DATA_MUTATORS.items():
        made = 0
        for k in range(len(names)):
            if made == per_mutator:
                break
            spec = names[(turn + k) % len(names)]
            out = mutate(copy.deepcopy(DATA[spec]))
            if out is not None:
                cases.append(pytest.param(spec, dump(out), id=f"{spec}-{name}"))
                made += 1
        turn += per_mutator
    for i, (name, mutate) in enumerate(TEXT_MUTATORS.items()):
        for spec in (TEXT_SPECS[i % len(TEXT_SPECS)], TEXT_SPECS[(i + 3) % len(TEXT_SPECS)]):
            text = dump(DATA[spec])  # block style, so that text mutators find their lines
            out = mutate(text)
            assert out != text, (name, spec)  # the mutator applied
            cases.append(pytest.param(spec, out, id=f"{spec}-{name}"))
    return cases


CASES = _cases()


def test_the_corpus_is_large():
    assert len(CASES) >= 300


def _load(tmp_path, content):
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return load(path, data_check=False)


@pytest.mark.parametrize("spec, content", CASES)
def test_a_hostile_spec_is_a_located_error(tmp_path, spec, content):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(UserError) as e:
            _load(tmp_path, content)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    first = e.value.problems[0]
    assert first.file.endswith("hostile.yaml") and first.line is not None and first.col is not None, str(e.value)
    assert str(e.value).startswith(f"{first.file}:{first.line}:{first.col}: ")
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MB"
    assert seconds < 10, f"{seconds:.1f} s"  # the bound is 2 s on an idle machine; CI may be busy


def test_unmutated_specs_still_load():
    for spec, data in DATA.items():
        loads(dump(data), f"{spec}.yaml", data_check=False)


def test_dev_zero_and_a_directory_are_refused_quickly(tmp_path):
    start = time.perf_counter()
    for path in ("/dev/zero", tmp_path):
        with pytest.raises(UserError) as e:
            load(path, data_check=False)
        assert str(path) in str(e.value)
    assert time.perf_counter() - start < 5


BASE = """\
x-train: &train {steps: 60, eval_every: 20}
study: t
data: &data {dataset: mnist1d, batch_size: 256}
model: {arch: mlp, hidden: [32]}
train: {<<: *train, eval_every: 30}
runs:
  prune: &prune {regime: prune, schedule: {begin: 0.1, end: 0.6, every: 10}}
  prune_b: {<<: *prune, seed_offset: 1000}
  scratch: &scratch {regime: fixed_mask, mask: prune.final}
  lottery: {<<: [{init: prune.init, mask: prune.mask}, *scratch], shuffle: true}
"""


def test_the_merge_key_shares_settings():
    spec = loads(BASE, "s.yaml")
    s = spec.study
    assert s.train.steps == 60 and s.train.eval_every == 30  # the written key wins
    assert s.runs["prune_b"].schedule == s.runs["prune"].schedule and s.runs["prune_b"].seed_offset == 1000
    # the first merged mapping that gives a key wins
    assert s.runs["lottery"].regime == "fixed_mask" and s.runs["lottery"].mask == "prune.mask"
    assert s.runs["lottery"].init == "prune.init" and s.runs["lottery"].shuffle
    # a merged value is located where it is written (the anchor's mapping)
    assert spec.source.position(("train", "steps"))[0] == (1, 25)


def test_a_colon_number_stays_text_and_a_date_too():
    spec = loads(BASE + "launch: {slurm: {time: 1:30:00, partition: 2024-01-01}}\n", "s.yaml")
    assert spec.study.launch.slurm.time == "1:30:00" and spec.study.launch.slurm.partition == "2024-01-01"


def test_a_sweep_too_large_is_refused_before_expanding_and_max_jobs_raises_the_limit():
    sweep = "sweep: {seed: [%s], sparsity: [%s]}\n" % (",".join(map(str, range(300))),
                                                       ",".join(str(i / 400) for i in range(300)))
    start = time.perf_counter()
    with pytest.raises(UserError) as e:
        loads(BASE + sweep, "s.yaml")
    assert time.perf_counter() - start < 5
    assert "360,000 jobs (90,000 points x 4 runs and paths), more than launch.max_jobs (50,000)" in str(e.value)
    assert "s.yaml:11:8: sweep:" in str(e.value)
    small = "sweep: {seed: [0, 1, 2], sparsity: [0.5, 0.9]}\n"
    with pytest.raises(UserError, match=r"24 jobs \(6 points x 4 runs and paths\), more than launch.max_jobs \(20\)"):
        loads(BASE + small + "launch: {max_jobs: 20}\n", "s.yaml")
    assert len(build(loads(BASE + small + "launch: {max_jobs: 24}\n", "s.yaml").study).jobs) == 24


def test_references_are_checked_at_every_swept_length():
    text = BASE.replace("{steps: 60, eval_every: 20}", "{steps: 60, eval_every: 5, checkpoints: [15]}")
    text += "paths:\n  p: {kind: linear, from: 'prune.step[15]', to: prune.final}\n"
    assert loads(text + "sweep: {train.steps: [20, 30]}\n", "s.yaml")
    with pytest.raises(UserError) as e:
        loads(text + "sweep: {train.steps: [10, 20]}\n", "s.yaml")
    assert "paths.p.from: step 15 is past the end of training (10 steps at train.steps=10)" in str(e.value)


def test_many_unknown_keys_give_a_bounded_report():
    text = BASE.replace("{steps: 60,", "{" + ", ".join(f"k{i}: 1" for i in range(5000)) + ", steps: 60,")
    with pytest.raises(UserError) as e:
        loads(text, "s.yaml")
    assert len(e.value.problems) == 51 and "and 4950 more problems" in str(e.value)


@pytest.mark.parametrize("content, expected", [
    (b"study: t\n# caf\xe9\n", "hostile.yaml:2:6: byte 0xe9 is not UTF-8"),
    ("study: t\n".encode("utf-16"), "hostile.yaml:1:1: the spec is UTF-16"),
    ("study: t\nx: [*a]\n", "hostile.yaml:2:5: alias *a names no anchor"),
])
def test_through_the_command_line_exit_2_and_no_traceback(tmp_path, content, expected):
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = studyspec("validate", path)
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_plan_refuses_an_oversized_sweep_from_the_command_line(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(BASE + "sweep: {seed: [%s], sparsity: [%s], train.optimizer.lr: [%s]}\n" % (
        ",".join(map(str, range(1000))), ",".join(str(i / 2000) for i in range(1000)),
        ",".join(str((i + 1) / 1000) for i in range(100))))
    proc = studyspec("plan", path)
    assert proc.returncode == 2 and "more than launch.max_jobs" in proc.stderr and "Traceback" not in proc.stderr
