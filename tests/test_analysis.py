"""analysis/: roles and figures on a synthetic Dataset (claims and their statistics: tests/test_claims.py)."""

import json

import numpy as np
import pytest
import xarray as xr

from analysis import final, path_roles, run_roles, write_report

# runs named unlike their roles: the roles come from the regimes in the spec
SPEC = """\
study: synth
data: {dataset: digits}
model: {arch: mlp}
train: {steps: 100}
runs:
  gmp:     {regime: prune, schedule: {begin: 0.1, end: 0.5}}
  fresh:   {regime: fixed_mask, mask: gmp.final, init: fresh}
  fresh_b: {regime: fixed_mask, mask: gmp.final, init: fresh}
  ticket:  {regime: fixed_mask, mask: gmp.final, init: gmp.init}
  full:    {regime: dense}
  stay:    {regime: fixed_mask, mask: gmp.final, init: fresh.final}
  jump:    {regime: rigl, init: fresh.final}
paths:
  e1:  {kind: linear, from: fresh.init, to: gmp.final}
  e2:  {kind: linear, from: fresh.final, to: gmp.final}
  e3:  {kind: bezier, from: fresh.final, to: gmp.final, degree: 2, subspace: sparse}
  e4:  {kind: bezier, from: fresh.final, to: gmp.final, degree: 2, subspace: dense}
  lot: {kind: linear, from: ticket.final, to: gmp.final}
  two: {kind: linear, from: fresh.final, to: fresh_b.final}
  own: {kind: linear, from: fresh.init, to: fresh.final}
"""
RUNS = ["gmp", "fresh", "fresh_b", "ticket", "full", "stay", "jump"]
PATHS = ["e1", "e2", "e3", "e4", "lot", "two", "own"]
SEEDS = [0, 1, 2]
SPARSITY = [0.8, 0.9]


def synthetic():
    """Final train losses (sparsity 0.9): gmp 0.5, fresh 1.0, ticket 0.6/0.6/0.4 (mixed),
    full 0.1, stay 1.0, jump 0.7. At sparsity 0.8 every sparse run equals gmp (no gap).
    Barriers: e1 0 (monotone), e2 1.0, e3 0.8, e4 0.004 (below threshold), lot 0.3, two 0.2, own 0."""
    steps = np.array([0, 10, 20])
    shape = (len(RUNS), len(SPARSITY), len(SEEDS), len(steps))
    end = {"gmp": 0.5, "fresh": 1.0, "fresh_b": 1.0, "ticket": [0.6, 0.6, 0.4], "full": 0.1,
           "stay": 1.0, "jump": 0.7}
    loss = np.zeros(shape)
    for i, r in enumerate(RUNS):
        loss[i, 1, :, -1] = end[r]
        loss[i, 0, :, -1] = 0.5
        loss[i, :, :, :-1] = 2.3
    loss[RUNS.index("full"), 0, :, -1] = 0.1
    acc = 1.0 - loss / 3  # lower loss, higher accuracy
    ts = np.linspace(0, 1, 5)
    pshape = (len(PATHS), len(SPARSITY), len(SEEDS))
    barrier = np.zeros(pshape)
    for j, (p, b) in enumerate(zip(PATHS, [0.0, 1.0, 0.8, 0.004, 0.3, 0.2, 0.0])):
        barrier[j] = b
    curve = 0.5 + barrier[..., None] * np.sin(np.pi * ts)  # endpoints 0.5, bump of height `barrier`
    curve[0] = 2.3 - 1.8 * ts  # e1 decreases from init
    monotone = (barrier == 0).astype(float)
    sweep = ("sparsity", "seed")
    ds = xr.Dataset(
        {"train_loss": (("run", *sweep, "step"), loss), "test_acc": (("run", *sweep, "step"), acc),
         "test_loss": (("run", *sweep, "step"), loss + 0.1),
         "path_train_loss": (("path", *sweep, "t"), curve), "path_test_loss": (("path", *sweep, "t"), curve + 0.2),
         "path_barrier": (("path", *sweep), barrier), "path_monotone": (("path", *sweep), monotone),
         "path_train_loss_from": (("path", *sweep), curve[..., 0]),
         "path_train_loss_to": (("path", *sweep), curve[..., -1])},
        coords={"run": RUNS, "path": PATHS, "sparsity": SPARSITY, "seed": SEEDS, "step": steps, "t": ts},
        attrs={"study": "synth", "spec": SPEC})
    return ds




def test_roles_come_from_regimes_not_names():
    ds = synthetic()
    assert run_roles(ds) == {"gmp": "prune", "fresh": "scratch", "fresh_b": "scratch", "ticket": "lottery",
                             "full": "dense", "stay": "continue", "jump": "escape"}
    assert {n: r.experiment for n, r in path_roles(ds).items()} == {
        "e1": "E1", "e2": "E2", "e3": "E3", "e4": "E4", "lot": "C_lottery", "two": "C_scratch",
        "own": "C_scratch_init"}
    assert path_roles(ds)["e3"].degree == 2 and path_roles(ds)["e4"].subspace == "dense"








def test_final_step():
    ds = synthetic()
    ds["train_loss"].loc[{"run": "fresh", "step": 20}] = np.nan  # a run that stopped early
    last = final(ds.isel(sparsity=1))
    assert last.sel(run="fresh").values.tolist() == [2.3, 2.3, 2.3]
    assert last.sel(run="gmp").values.tolist() == [0.5, 0.5, 0.5]


def test_report_writes_figures_and_table(tmp_path):
    md = write_report(synthetic(), tmp_path / "report", source="synth.nc", command="studyspec report synth.yaml")
    text = md.read_text()
    assert "No claims in this study's spec" in text  # claims: tests/test_claims.py
    for kind in ("curves", "paths", "barriers"):
        for where in ("sparsity-0.8", "sparsity-0.9"):
            png = tmp_path / "report" / f"{kind}_{where}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
            assert f"]({png.name})" in text
    assert json.loads((tmp_path / "report" / "claims.json").read_text()) == []


def test_report_without_sweep_or_paths(tmp_path):
    ds = synthetic().isel(sparsity=1, drop=True).drop_vars([v for v in synthetic().data_vars if v.startswith("path_")])
    ds = ds.drop_dims(["path", "t"])
    md = write_report(ds, tmp_path)
    assert (tmp_path / "curves.png").exists() and not (tmp_path / "paths.png").exists()
    assert md.name == "claims.md" and "![curves](curves.png)" in md.read_text()

