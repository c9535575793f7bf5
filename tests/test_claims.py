"""Claims: located spec errors, ids untouched, statistics on synthetic data with known effects,
the claims table of the report, and adaptive seeds end to end."""

import json
import math

import numpy as np
import pytest
import xarray as xr

from analysis.claims import decide, effect
from analysis.stats import Effect, holm, t_quantile, t_sf
from conftest import BASE, studyspec
from studyspec.errors import UserError
from studyspec.load import loads
from studyspec.plan import build

RUNS = """\
sweep: {seed: [0, 1, 2]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.6, every: 10}}
  scratch: {regime: fixed_mask, mask: prune.final}
paths:
  line: {kind: linear, from: scratch.final, to: prune.final, points: 5, range: [-0.2, 1.2]}
"""


def error_of(text: str) -> str:
    with pytest.raises(UserError) as e:
        loads(text, "s.yaml", data_check=False)
    return str(e.value)


@pytest.mark.parametrize("claim, expected", [
    ("{kind: compare, metric: final_train_loss, a: scrach, b: prune, direction: greater}",
     r"claims.c.a: no run named 'scrach' .*\n  hint: did you mean 'scratch'\?"),
    ("{kind: barrier, path: lin}", r"claims.c.path: no path named 'lin' \(paths: line\)\n  hint: did you mean 'line'"),
    ("{kind: barrier, path: prune}", r"claims.c.path: 'prune' is a run, not a path"),
    ("{kind: compare, metric: final_train_loss, a: line, b: prune, direction: greater}",
     r"claims.c.a: 'line' is a path, not a run\n  hint: compare paths with `kind: relation`"),
    ("{kind: barrier, path: zzz}", r"claims.c.path: no path named 'zzz' \(paths: line\)\n  hint: name a path under `paths:`"),
    ("{kind: compare, metric: barrier, a: scratch, b: prune, direction: greater}",
     r"claims.c.metric: 'barrier' is a path summary.*\n  hint: use `kind: relation`"),
    ("{kind: relation, metric: final_test_acc, a: line, b: line, direction: less}",
     r"claims.c.metric: 'final_test_acc' is a per-run scalar"),
    ("{kind: compare, metric: final_test_accuracy, a: scratch, b: prune, direction: greater}",
     r"claims.c.metric: unknown metric 'final_test_accuracy'\n  hint: did you mean 'final_test_acc'\?"),
    ("{kind: compare, metric: final_test_acc, a: prune, b: scratch, direction: greater, margin: 2}",
     r"claims.c.margin: an accuracy is a fraction in \[0, 1\]: .* write 0.02 or '2 points'"),
    ("{kind: compare, metric: final_test_acc, a: prune, b: scratch, direction: greater, margin: 0.1 nats}",
     r"claims.c.margin: the metric is an accuracy \(a fraction\), not in nats"),
    ("{kind: barrier, path: line, margin: 5 points}", r"claims.c.margin: the metric is in nats, not points"),
    ("{kind: barrier, path: line, margin: 0.1 furlongs}", r"claims.c.margin: unknown unit 'furlongs'"),
    ("{kind: monotone, path: line, t: [0, 1.5]}", r"claims.c.t: t \[0.0, 1.5\] is outside the range of path 'line', \[-0.2, 1.2\]"),
    ("{kind: barier, path: line}", r"claims.c: unknown kind 'barier'.*\n  hint: did you mean 'barrier'\?"),
])
def test_bad_claims_are_located(claim, expected):
    import re

    msg = error_of(BASE + RUNS + "claims:\n  c: " + claim + "\n")
    assert re.search(r"^s.yaml:\d+:\d+: " + expected, msg, re.M | re.S), msg


def test_a_claim_on_a_path_of_a_study_without_paths():
    runs = RUNS[:RUNS.index("paths:")]
    msg = error_of(BASE + runs + "claims:\n  c: {kind: barrier, path: line}\n")
    assert "claims.c.path: no path named 'line' (this study has no paths)\n  hint: name a path under `paths:`" in msg, msg


def test_adaptive_seeds_need_claims_and_no_seed_sweep():
    msg = error_of(BASE + RUNS + "seeds: {start: 2, wave: 1, max: 4}\n")
    assert "seeds: `seeds:` (adaptive) and a swept seed both give the seeds" in msg
    assert "adaptive seeds need claims" in msg
    assert "max (1) is below start (2)" in error_of(BASE + RUNS.replace("sweep: {seed: [0, 1, 2]}\n", "")
                                                    + "seeds: {start: 2, max: 1}\n")


def test_cli_exit_2_on_a_bad_claim(write_spec):
    proc = studyspec("validate", write_spec(BASE + RUNS + "claims:\n  c: {kind: barrier, path: nope}\n"),
                     "--no-data-check")
    assert proc.returncode == 2 and "claims.c.path: no path named 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_claims_and_adaptive_seeds_leave_job_ids_unchanged():
    plain = build(loads(BASE + RUNS, "s.yaml", data_check=False).study)
    claimed = build(loads(BASE + RUNS + "claims:\n  c: {kind: barrier, path: line}\n", "s.yaml",
                          data_check=False).study)
    adaptive = build(loads(BASE + RUNS.replace("sweep: {seed: [0, 1, 2]}\n", "")
                           + "claims:\n  c: {kind: barrier, path: line}\nseeds: {start: 3, wave: 2, max: 9}\n",
                           "s.yaml", data_check=False).study)
    assert list(plain.jobs) == list(claimed.jobs) == list(adaptive.jobs)


def test_run_level_steps_and_lr_leave_other_ids_unchanged():
    base = build(loads(BASE + RUNS, "s.yaml", data_check=False).study)
    more = RUNS + "  long: {regime: fixed_mask, mask: prune.final, steps: 120, lr: 0.2}\n"
    more = more.replace("paths:\n  line: {kind: linear, from: scratch.final, to: prune.final, points: 5, "
                        "range: [-0.2, 1.2]}\n", "") + \
        "paths:\n  line: {kind: linear, from: scratch.final, to: prune.final, points: 5, range: [-0.2, 1.2]}\n"
    plan = build(loads(BASE + more, "s.yaml", data_check=False).study)
    assert set(base.jobs) < set(plan.jobs)
    long = [j for j in plan.jobs.values() if j.id not in base.jobs]
    assert len(long) == 3 and all(j.config["train"]["steps"] == 120 for j in long)
    assert all(j.config["train"]["optimizer"]["lr"] == 0.2 and "steps" not in j.config["regime"] for j in long)


# --- statistics ------------------------------------------------------------------------

def test_t_distribution():
    for df, q in [(1, 12.706204736174705), (2, 4.302652729911275), (4, 2.7764451051977987), (30, 2.042272456300452)]:
        assert t_quantile(0.975, df) == pytest.approx(q, rel=1e-9)
    assert t_sf(2.0, 5) == pytest.approx(0.0509697394, rel=1e-8)
    assert t_sf(0.0, 3) == pytest.approx(0.5)


def decided(values, thr=0.0, side=">", alpha=0.05):
    e = Effect(list(values), list(range(len(values))), thr, side)
    holm([e], alpha)
    return e


def test_a_clear_effect_holds():
    rng = np.random.default_rng(1)
    e = decided(1.0 + 0.1 * rng.standard_normal(5), thr=0.2)
    assert e.decision == "holds" and e.ci[0] > 0.2 and e.n == 5
    assert e.ci95 == e.ci and e.boot95[0] < e.mean < e.boot95[1]


def test_a_null_effect_at_small_n_is_undecided_not_failing():
    rng = np.random.default_rng(2)
    got = [decided(0.3 * rng.standard_normal(3), thr=0.0).decision for _ in range(300)]
    # a null effect at n = 3 is undecided; either side is wrongly decided 2.5% of the time
    assert got.count("undecided") > 270 and got.count("holds") < 18 and got.count("does not hold") < 18
    e = decided([0.1, -0.2, 0.05], thr=0.0)
    assert e.decision == "undecided" and e.ci[0] < 0 < e.ci[1]
    assert decided([0.4]).decision == "undecided" and decided([]).decision == "no data"


def test_an_effect_inside_the_margin_does_not_hold():
    rng = np.random.default_rng(3)
    e = decided(0.02 + 0.01 * rng.standard_normal(8), thr=0.1)  # real but smaller than what matters
    assert e.decision == "does not hold" and e.ci[1] < 0.1
    less = decided(-0.02 + 0.01 * rng.standard_normal(8), thr=-0.1, side="<")
    assert less.decision == "does not hold" and less.ci[0] > -0.1


def test_holm_flips_a_borderline_decision():
    borderline = [0.9, 1.6, 0.3, 1.0]  # p about 0.038: decided alone at 0.05, not at 0.05 / 4
    alone = decided(borderline)
    assert alone.decision == "holds" and 0.0125 < alone.p < 0.05
    others = [Effect(list(v), [0, 1, 2, 3], 0.0, ">") for v in ([0.0, 0.1, -0.1, 0.05],) * 3]  # nulls, p large
    family = [Effect(borderline, [0, 1, 2, 3], 0.0, ">")] + others
    holm(family)
    assert family[0].level == pytest.approx(0.05 / 4) and family[0].decision == "undecided"
    assert family[0].ci[0] < 0 < family[0].ci[1]  # its interval at the corrected level straddles 0
    strong = [Effect([5.0, 5.1, 4.9, 5.05], [0, 1, 2, 3], 0.0, ">")] + [Effect(borderline, [0, 1, 2, 3], 0.0, ">")]
    holm(strong)  # the strong one uses 0.05 / 2, the borderline one then 0.05 / 1: holds
    assert [e.decision for e in strong] == ["holds", "holds"] and strong[1].level == pytest.approx(0.05)


# --- claims on a synthetic dataset -----------------------------------------------------

SPEC = BASE + """\
sweep: {sparsity: [0.8, 0.9], seed: [0, 1, 2, 3]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.6, every: 10}}
  scratch: {regime: fixed_mask, mask: prune.final}
paths:
  up: {kind: linear, from: scratch.init, to: prune.final, points: 5}
  bump: {kind: linear, from: scratch.final, to: prune.final, points: 5}
  dip: {kind: bezier, subspace: dense, mask: none, from: scratch.final, to: prune.final, points: 5}
  pinned: {kind: linear, from: {ref: scratch.final, at: {seed: 0}}, to: {ref: scratch.final, at: {seed: 1}}, points: 5}
claims:
  gap: {kind: compare, metric: final_train_loss, a: scratch, b: prune, direction: greater, margin: 0.1 nats}
  acc: {kind: compare, metric: final_test_acc, a: prune, b: scratch, direction: greater, margin: 2 points}
  e1: {kind: monotone, path: up, tolerance: 0.01}
  e2: {kind: barrier, path: bump, margin: 0.1}
  low: {kind: low_loss, path: dip, margin: 0.05}
  near_monotone: {kind: monotone, path: dip, tolerance: 0.05}
  rel: {kind: relation, a: pinned, b: bump, direction: less}
"""
SEEDS, T = [0, 1, 2, 3], np.linspace(0, 1, 5)


def synthetic():
    """sparsity 0.9: scratch 0.5 nats above prune (+-0.02 per seed); 0.8: equal. Paths: `up`
    decreases with a 0.004 wiggle; `bump` has a 1.0 barrier; `dip` goes 0.3 below its
    endpoints and climbs back (low-loss, not monotone); `pinned` is one job (barrier 0.2)."""
    noise = np.array([0.02, -0.01, 0.0, -0.01])
    loss = np.zeros((2, 2, 4, 2))  # run, sparsity, seed, step
    loss[:, :, :, 0] = 2.3
    loss[0, :, :, 1] = 0.6
    loss[1, 0, :, 1] = 0.6 + noise
    loss[1, 1, :, 1] = 1.1 + noise
    acc = 1 - loss / 3
    curves = np.zeros((4, 2, 4, 5))
    curves[0] = [2.3, 1.8, 1.804, 1.0, 0.6]
    curves[1] = 0.6 + np.sin(np.pi * T)
    curves[2] = [1.1, 0.5, 0.3, 0.45, 0.6]
    curves[3] = 1.0 + 0.2 * np.sin(np.pi * T)
    barrier = np.maximum(0, curves.max(-1) - np.maximum(curves[..., 0], curves[..., -1]))
    jobs = np.array([[[f"{p}{s}{i}" for i in SEEDS] for s in (8, 9)] for p in ("u", "b", "d", "p")], dtype=object)
    jobs[3] = "pinned-job"
    sweep = ("sparsity", "seed")
    return xr.Dataset(
        {"train_loss": (("run", *sweep, "step"), loss), "test_acc": (("run", *sweep, "step"), acc),
         "path_train_loss": (("path", *sweep, "t"), curves), "path_barrier": (("path", *sweep), barrier),
         "path_train_loss_from": (("path", *sweep), curves[..., 0]),
         "path_train_loss_to": (("path", *sweep), curves[..., -1]), "path_job_id": (("path", *sweep), jobs)},
        coords={"run": ["prune", "scratch"], "path": ["up", "bump", "dip", "pinned"], "sparsity": [0.8, 0.9],
                "seed": SEEDS, "step": [0, 100], "t": T},
        attrs={"study": "synth", "spec": SPEC})


def test_claims_decided_per_sweep_point():
    got = {(d.claim, d.where): d.effect for d in decide(synthetic())}
    assert got["gap", "sparsity=0.9"].decision == "holds"
    assert got["gap", "sparsity=0.9"].mean == pytest.approx(0.5)
    assert got["gap", "sparsity=0.9"].values == pytest.approx([0.52, 0.49, 0.5, 0.49])
    assert got["gap", "sparsity=0.8"].decision == "does not hold"  # no gap at all: inside the margin
    assert got["acc", "sparsity=0.9"].threshold == pytest.approx(0.02)
    assert got["acc", "sparsity=0.9"].decision == "holds"
    assert got["e1", "sparsity=0.9"].values == pytest.approx([0.004] * 4) and got["e1", "sparsity=0.9"].decision == "holds"
    assert got["e2", "sparsity=0.9"].decision == "holds"
    low, mono = got["low", "sparsity=0.9"], got["near_monotone", "sparsity=0.9"]
    assert low.decision == "holds" and low.extra["dip below the lower endpoint (nats)"] == pytest.approx([0.3] * 4)
    assert mono.decision == "does not hold" and mono.values == pytest.approx([0.3] * 4)  # climbs 0.3 back
    rel = got["rel", "sparsity=0.9"]
    assert rel.n == 4 and rel.decision == "holds"  # one pinned job against 4 distinct seeds of `bump`


def test_a_path_shared_by_every_seed_counts_once():
    ds = synthetic()
    claim = loads(SPEC.replace("claims:", "claims:\n  one: {kind: barrier, path: pinned, margin: 0.1}"), "s.yaml",
                  data_check=False).study.claims["one"]
    e = effect(ds.isel(sparsity=1), claim)
    assert e.n == 1 and e.values == pytest.approx([0.2])
    holm([e])
    assert e.decision == "undecided"  # one job is one observation, however many seeds share it


def test_report_writes_the_claims_table(tmp_path):
    from analysis import write_report

    md = write_report(synthetic(), tmp_path / "report", source="synth.nc", command="studyspec report s.yaml")
    text = md.read_text()
    assert "| gap | sparsity=0.9 | final_train_loss(scratch) > final_train_loss(prune) + 0.1 | 4 | 0.5 |" in text
    assert "Holm" in text and "**does not hold**" in text and "(s0)" in text
    saved = json.loads((tmp_path / "report" / "claims.json").read_text())
    gap = next(d for d in saved if d["claim"] == "gap" and d["where"] == "sparsity=0.9")
    assert gap["decision"] == "holds" and gap["n"] == 4 and gap["ci95"][0] > 0.1
    m = sum(d["n"] >= 2 for d in saved)
    assert min(d["level"] for d in saved if d["n"] >= 2) == pytest.approx(0.05 / m)
    assert (tmp_path / "report" / "paths_sparsity-0.9.png").stat().st_size > 5000
    assert (tmp_path / "report" / "claims.png").stat().st_size > 5000 and "![claims](claims.png)" in text


# --- adaptive seeds, end to end ----------------------------------------------------------

ADAPTIVE = """\
study: waves
data: {dataset: mnist1d, batch_size: 128}
model: {arch: mlp, hidden: [16]}
train: {steps: 30, eval_every: 30, optimizer: {lr: 0.05, momentum: 0.9}}
seeds: {start: 2, wave: 1, max: 3}
runs:
  a: {regime: dense}
  b: {regime: dense, seed_offset: 1000}
claims:
  same: {kind: compare, metric: final_train_loss, a: a, b: b, direction: greater, margin: 0.001 nats}
"""


def test_an_undecided_claim_adds_a_wave_and_nothing_reruns(tmp_path):
    spec = tmp_path / "waves.yaml"
    spec.write_text(ADAPTIVE)
    store, out = tmp_path / "store", tmp_path / "waves.nc"
    first = studyspec("run", spec, "--store", store, "--out", out, "-j", "2", check=True)
    assert "seeds: 2; undecided: same; adding seeds 2 .. 2" in first.stderr.replace("\n", " "), first.stderr
    assert "seeds: 3; still undecided at seeds.max: same" in first.stderr.replace("\n", " ")
    with xr.open_dataset(out) as ds:
        assert ds["seed"].values.tolist() == [0, 1, 2] and not np.isnan(ds.final_train_loss.values).any()
    jobs = {p.name for p in store.iterdir() if not p.name.startswith("_")}
    assert len(jobs) == 6
    again = studyspec("run", spec, "--store", store, "--out", out, check=True)
    assert "ran 0, already done 6" in again.stderr.replace("\n", " ")
    status = studyspec("status", spec, "--store", store, check=True)  # sees all three seeds
    assert "6 jobs" in status.stderr and "6 done" in status.stderr


def test_the_seed_count_is_read_from_the_store(tmp_path):
    from studyspec.adaptive import current, seed_count
    from studyspec.spec.claims import with_seeds
    from studyspec.store import Store

    loaded = loads(ADAPTIVE.replace("max: 3", "max: 6"), "s.yaml", data_check=False)
    store = Store(tmp_path / "store")
    assert seed_count(loaded, store) == 2 and loaded.study.sweep["seed"] == [0, 1]
    full = build(with_seeds(loaded.study, 6))
    begun = next(c.job for c in full.cells if c.index["seed"] == 2)  # one job of the second wave started
    store.run_dir(begun).mkdir(parents=True)
    assert seed_count(loaded, store) == 3
    assert current(loaded, store).study.sweep["seed"] == [0, 1, 2]
    assert build(current(loaded, store).study).jobs.keys() <= full.jobs.keys()  # ids do not depend on the count
    assert loaded.study.seeds.counts() == [2, 3, 4, 5, 6]
