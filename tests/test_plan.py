"""The planner: sweep expansion, references resolved per point, content-addressed ids."""

from conftest import BASE
from studyspec.load import loads
from studyspec.plan import build

RUNS = """\
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.6, every: 10}}
  scratch: {regime: fixed_mask, mask: prune.final}
  lottery: {regime: fixed_mask, mask: prune.final, init: prune.init}
  dense: {regime: dense}
paths:
  bad_to_good: {kind: linear, from: scratch.final, to: prune.final}
"""


def plan_of(text):
    return build(loads(text).study)


def test_sweep_is_cartesian_and_dense_is_shared_across_sparsities():
    p = plan_of(BASE + "sweep: {seed: [0, 1, 2], sparsity: [0.9, 0.95]}\n" + RUNS)
    assert [d.name for d in p.dims] == ["seed", "sparsity"]
    # 6 points x (prune, scratch, lottery, path) + dense once per seed (sparsity does not touch it)
    assert len(p.jobs) == 6 * 4 + 3
    assert len(p.cells) == 6 * 5
    assert [len(s) for s in p.stages()] == [6 + 3, 12, 6]


def test_zip_groups_vary_together():
    p = plan_of(BASE + "sweep:\n  seed: [0, 1]\n  zip:\n    - {train.optimizer.lr: [0.1, 0.2], train.steps: [60, 120]}\n"
                "runs:\n  dense: {regime: dense}\n")
    assert [d.name for d in p.dims] == ["seed", "lr"]
    steps = sorted({(j.config["train"]["optimizer"]["lr"], j.config["train"]["steps"]) for j in p.jobs.values()})
    assert steps == [(0.1, 60), (0.2, 120)]
    assert len(p.jobs) == 4


def test_references_resolve_to_the_same_sweep_point():
    p = plan_of(BASE + "sweep: {seed: [0, 1]}\n" + RUNS)
    by_cell = {(c.name, c.index["seed"]): p.jobs[c.job] for c in p.cells}
    for seed in (0, 1):
        prune, scratch, lottery = (by_cell[(n, seed)] for n in ("prune", "scratch", "lottery"))
        assert scratch.config["regime"]["mask"] == {"job": prune.id, "artifact": "final"}
        assert lottery.config["regime"]["init"] == {"job": prune.id, "artifact": "init"}
        assert scratch.deps == (prune.id,) and prune.config["seed"] == seed
        path = by_cell[("bad_to_good", seed)]
        assert set(path.deps) == {scratch.id, prune.id}
        assert path.config["path"]["from"] == {"job": scratch.id, "artifact": "final"}


def test_a_path_between_given_seeds_is_one_job_for_the_whole_seed_sweep():
    p = plan_of(BASE + "sweep: {seed: [0, 1, 2]}\n" + RUNS + "  seeds: {kind: linear, from: {ref: scratch.final, "
                "at: {seed: 0}}, to: {ref: scratch.final, at: {seed: 1}}}\n"
                "  half: {kind: linear, from: scratch.final, to: {ref: scratch.final, at: {seed: 1}}}\n")
    cells = {(c.name, c.index["seed"]): c.job for c in p.cells}
    assert len({cells[("seeds", s)] for s in (0, 1, 2)}) == 1  # one job fills the three seed cells
    job = p.jobs[cells[("seeds", 0)]]
    assert job.config["seed"] == 0
    assert set(job.deps) == {cells[("scratch", 0)], cells[("scratch", 1)]}
    assert len({cells[("half", s)] for s in (0, 1, 2)}) == 3  # one free end: one job per seed, as before
    # at seed 0, `half` asks for exactly the `seeds` path: content addressing makes them one job
    assert cells[("half", 0)] == cells[("seeds", 0)]
    assert p.names_of(cells[("seeds", 2)]) == ["half", "seeds"]


def test_defaults_are_left_out_of_the_id():
    explicit = BASE.replace("eval_every: 20}", "eval_every: 20, optimizer: {name: sgd, momentum: 0.0}}")
    a = plan_of(BASE + RUNS)
    b = plan_of(explicit + RUNS)
    assert list(a.jobs) == list(b.jobs)
    c = plan_of(BASE.replace("eval_every: 20}", "eval_every: 20, optimizer: {momentum: 0.5}}") + RUNS)
    assert not set(a.jobs) & set(c.jobs)


def test_launch_settings_do_not_change_ids():
    a = plan_of(BASE + RUNS)
    b = plan_of(BASE + RUNS + "launch: {workers: 1}\noutput: {store: elsewhere}\n")
    assert list(a.jobs) == list(b.jobs)


def test_ids_are_pinned():
    """Changing these ids orphans every user's finished jobs: do it only on purpose."""
    p = plan_of(BASE + RUNS)
    names = {c.name: c.job for c in p.cells}
    assert names == {
        "prune": "7e496cfd7e17b21a",
        "scratch": "4d700b9d58ccc5ee",
        "lottery": "2da3e3a773262937",
        "dense": "b806ca09ce2b9f6c",
        "bad_to_good": "a6538dfc203de8f5",
    }


def test_seed_offset_gives_a_run_its_own_seed_and_keeps_other_ids():
    runs = RUNS.replace("paths:", "  scratch_b: {regime: fixed_mask, mask: prune.final, seed_offset: 1000}\npaths:")
    p = plan_of(BASE + "sweep: {seed: [0, 1]}\n" + runs
                + "  same_mask: {kind: linear, from: scratch.final, to: scratch_b.final}\n")
    cells = {(c.name, c.index["seed"]): p.jobs[c.job] for c in p.cells}
    for s in (0, 1):
        a, b = cells[("scratch", s)], cells[("scratch_b", s)]
        assert (a.config["seed"], b.config["seed"]) == (s, s + 1000)
        assert a.config["regime"]["mask"] == b.config["regime"]["mask"]  # the same mask
        assert "seed_offset" not in b.config["regime"] and a.id != b.id
    # seed_offset: 0 is the default: ids as before (pinned above)
    explicit = plan_of(BASE + RUNS.replace("{regime: dense}", "{regime: dense, seed_offset: 0}"))
    assert {c.name: c.job for c in explicit.cells}["dense"] == "b806ca09ce2b9f6c"


def test_each_id_is_the_hash_of_the_jobs_key_made_in_full():
    """build() hashes each job's key as a template's JSON with the job's seed and referenced
    ids filled in; that must be the hash of the job's key made in full, for references,
    seed offsets, a run's own lr and steps, imp, and paths with ends at other seeds."""
    from studyspec.hashing import job_id
    from studyspec.spec.jobs import parse_job

    runs = RUNS.replace("paths:", "  lottery_b: {regime: fixed_mask, mask: prune.final, init: prune.init, "
                                  "seed_offset: 7, lr: 0.1, steps: 40}\n  imp: {regime: imp, rounds: 2}\npaths:")
    p = plan_of(BASE + "sweep: {seed: [0, 1, 2], sparsity: [0.9, 0.95]}\n" + runs
                + "  seeds: {kind: linear, from: {ref: scratch.final, at: {seed: 0}}, to: {ref: scratch.final, "
                "at: {seed: 1}}}\n  half: {kind: linear, from: prune.init, to: {ref: prune.final, at: {seed: 2}}}\n")
    assert len(p.jobs) == 6 * 5 + 3 + 6 + 2 + 6  # dense once per seed, `seeds` once per sparsity
    for job in p.jobs.values():
        assert job_id(job.key) == job.id
        assert parse_job(job.config).model_dump(mode="json", by_alias=True) == job.config
    lottery_b = [j for j in p.jobs.values() if p.names_of(j.id) == ["lottery_b"]]
    assert {j.config["seed"] for j in lottery_b} == {7, 8, 9} and len(lottery_b) == 6


def test_a_template_falls_back_to_full_keys_when_its_format_does_not_reproduce_them():
    """A key that holds the template's stand-in text itself (here in a string of its own)
    cannot be filled in: the check against the first job's full key catches it, and every
    id is then the hash of the full key."""
    from studyspec.hashing import job_id
    from studyspec.plan import SEED, Template

    def key(seed, ref):
        return {"seed": seed, "note": SEED, "mask": {"job": ref}}

    t = Template("train", ("prune",), key, spec=None)
    values = [(0, "a" * 16), (1, "b" * 16), (2, "c" * 16)]
    assert [t.job_id(v) for v in values] == [job_id(key(*v)) for v in values]
    assert t.format is False
    def key(seed, ref):
        return {"seed": seed, "mask": {"job": ref, "artifact": "final"}, "note": "100%s {0}"}

    ok = Template("train", ("prune",), key, None)
    assert [ok.job_id(v) for v in values] == [job_id(key(*v)) for v in values]
    assert ok.format == '{"mask":{"artifact":"final","job":"%s"},"note":"100%%s {0}","seed":%s}'
    assert ok.pick((7, "x")) == ("x", 7)
