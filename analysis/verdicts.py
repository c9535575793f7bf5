"""The paper's claims (E0-E5) and their controls, decided from a collected Dataset.

Every verdict is computed separately at each point of the sweep dimensions other than
`seed` (for example per sparsity) and summarises the seeds: numbers are mean +- std
(sample std, ddof=1) over seeds, and a claim "holds" when it holds at every seed,
"mixed" when at some, "does not hold" when at none ("no data" when nothing ran).

Thresholds (documented in docs/results.md):
- a path has a *barrier* when its `path_barrier` exceeds BARRIER_ABS nats and
  BARRIER_REL times the larger endpoint training loss; otherwise it is *near-monotone*
  (small numerical wiggles, e.g. 4e-4 nats, do not count as a barrier).
- E0 compares final training loss (last evaluated step) and final test accuracy, paired
  by seed: "holds" when the sparse run is worse than prune on both, at every seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .roles import path_roles, run_roles

BARRIER_ABS = 0.01  # nats
BARRIER_REL = 0.02  # of the larger endpoint loss
NON_SWEEP = ("run", "path", "step", "t", "seed")

CLAIMS = {
    "E0": "{run} ends worse than prune at the same sparsity (train loss and test accuracy)",
    "E1": "the line scratch.init -> prune.final has monotonically decreasing training loss",
    "E2": "the line scratch.final -> prune.final crosses a loss barrier",
    "E3": "a sparse-subspace curve ({kind}, degree {degree}) between scratch and prune still has a barrier",
    "E4": "a dense-subspace curve ({kind}, degree {degree}) between scratch and prune is barrier-free",
    "E5": "{run} (dynamic sparse from scratch.final) escapes: lower final train loss than continued static training",
    "C_lottery": "control: the lottery solution and the pruned solution are connected without a barrier",
    "C_scratch": "control: two scratch solutions are separated by a smaller barrier than scratch vs prune",
    "C_scratch_init": "control: training's own path scratch.init -> scratch.final is near-monotone",
}


@dataclass
class Verdict:
    experiment: str
    name: str  # run or path the verdict is about
    where: str  # the sweep point, e.g. "sparsity=0.9" ("" without sweep)
    claim: str
    verdict: str  # holds | mixed | does not hold | no data
    numbers: dict[str, str] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)  # raw numbers, for tests and JSON


def mean_std(x) -> str:
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return "n/a"
    std = x.std(ddof=1) if len(x) > 1 else 0.0
    std = 0.0 if std < 1e-12 * max(1.0, abs(x.mean())) else std  # equal values: no float noise
    return f"{x.mean():.4g} ± {std:.2g} (n={len(x)})"


def _decide(flags) -> str:
    flags = [bool(f) for f in flags]
    if not flags:
        return "no data"
    return "holds" if all(flags) else "does not hold" if not any(flags) else "mixed"


def points(ds):
    """(label, {dim: index}) for every point of the sweep dims other than seed."""
    dims = [d for d in ds.dims if d not in NON_SWEEP]
    for combo in itertools.product(*(range(ds.sizes[d]) for d in dims)):
        sel = dict(zip(dims, combo))
        label = ", ".join(f"{d}={ds[d].values[i]}" for d, i in sel.items())
        yield label, sel


def _seeds(da) -> np.ndarray:
    """A per-seed 1-d array (a single value when there is no seed dim)."""
    return np.atleast_1d(np.asarray(da.values, dtype=float))


def final(ds, var: str = "train_loss"):
    """The value at the last evaluated step of every run (NaN steps skipped)."""
    da = ds[var]
    if "step" not in da.dims:
        return da
    out = da.isel(step=-1, drop=True)
    for i in range(da.sizes["step"] - 2, -1, -1):  # runs of fewer steps end earlier
        out = out.fillna(da.isel(step=i, drop=True))
    return out


def barrier_flags(barrier, ends) -> np.ndarray:
    """True where a barrier counts (see BARRIER_ABS, BARRIER_REL); NaN barriers give False."""
    barrier, ends = np.asarray(barrier, float), np.asarray(ends, float)
    with np.errstate(invalid="ignore"):
        return (barrier > BARRIER_ABS) & (barrier > BARRIER_REL * ends)


def _endpoint_max(ds, sub) -> np.ndarray:
    if "path_train_loss_from" in ds and "path_train_loss_to" in ds:
        return np.fmax(_seeds(sub["path_train_loss_from"]), _seeds(sub["path_train_loss_to"]))
    tl = sub["path_train_loss"]
    return np.fmax(_seeds(tl.sel(t=0.0, method="nearest")), _seeds(tl.sel(t=1.0, method="nearest")))


def verdicts(ds) -> list[Verdict]:
    out: list[Verdict] = []
    roles = run_roles(ds) if "run" in ds.dims else {}
    proles = path_roles(ds)
    for where, sel in points(ds):
        at = ds.isel(sel)
        if roles and "train_loss" in ds:
            out += _e0(at, roles, where)
            out += _e5(at, roles, where)
        if proles and "path_barrier" in ds:
            out += _paths(at, proles, where)
    return out


def _e0(at, roles, where) -> list[Verdict]:
    prune = [r for r, role in roles.items() if role == "prune"]
    if not prune:
        return []
    p = prune[0]
    loss, acc = final(at, "train_loss"), final(at, "test_acc") if "test_acc" in at else None
    out = []
    for run, role in roles.items():
        if role not in ("scratch", "lottery", "static", "small_dense"):
            continue
        dloss = _seeds(loss.sel(run=run)) - _seeds(loss.sel(run=p))
        ok = ~np.isnan(dloss)
        flags = dloss[ok] > 0
        nums = {"train loss gap (run - prune)": mean_std(dloss),
                f"final train loss {run}": mean_std(_seeds(loss.sel(run=run))),
                f"final train loss {p}": mean_std(_seeds(loss.sel(run=p)))}
        values = {"loss_gap": float(np.nanmean(dloss)) if ok.any() else np.nan}
        if acc is not None:
            dacc = _seeds(acc.sel(run=p)) - _seeds(acc.sel(run=run))
            flags = flags & (dacc[ok] > 0)
            nums["test acc gap (prune - run)"] = mean_std(dacc)
            nums[f"final test acc {run}"] = mean_std(_seeds(acc.sel(run=run)))
            nums[f"final test acc {p}"] = mean_std(_seeds(acc.sel(run=p)))
            values["acc_gap"] = float(np.nanmean(dacc)) if ok.any() else np.nan
        dense = [r for r, role_ in roles.items() if role_ == "dense"]
        if dense and acc is not None:
            nums[f"final test acc {dense[0]} (dense)"] = mean_std(_seeds(acc.sel(run=dense[0])))
        out.append(Verdict("E0", run, where, CLAIMS["E0"].format(run=run if run == role else f"{run} ({role})"),
                           _decide(flags), nums, values))
    return out


def _e5(at, roles, where) -> list[Verdict]:
    loss = final(at, "train_loss")
    cont = [r for r, role in roles.items() if role == "continue"]
    out = []
    for run in (r for r, role in roles.items() if role == "escape"):
        if not cont:
            continue
        d = _seeds(loss.sel(run=cont[0])) - _seeds(loss.sel(run=run))
        out.append(Verdict("E5", run, where, CLAIMS["E5"].format(run=run), _decide(d[~np.isnan(d)] > 0),
                           {"train loss gain (continue - escape)": mean_std(d),
                            f"final train loss {run}": mean_std(_seeds(loss.sel(run=run))),
                            f"final train loss {cont[0]}": mean_std(_seeds(loss.sel(run=cont[0])))},
                           {"gain": float(np.nanmean(d))}))
    return out


def _paths(at, proles, where) -> list[Verdict]:
    out = []
    barriers: dict[str, np.ndarray] = {}
    for name, role in proles.items():
        sub = at.sel(path=name)
        b = _seeds(sub["path_barrier"])
        done = ~np.isnan(b)
        barriers[role.experiment] = b
        has = barrier_flags(b, _endpoint_max(at, sub))[done]
        nums = {"barrier (nats)": mean_std(b)}
        values = {"barrier": float(np.nanmean(b)) if done.any() else np.nan}
        if "path_monotone" in sub:
            mono = _seeds(sub["path_monotone"])[done]
            nums["strictly monotone"] = f"{int(np.nansum(mono))}/{len(mono)}"
            values["monotone"] = float(np.nansum(mono))
        exp = role.experiment
        if exp in ("E2", "E3"):
            flags = has
        elif exp in ("E1", "E4", "C_lottery", "C_scratch_init"):
            flags = ~has
        elif exp == "C_scratch":
            continue  # decided below, against E2
        else:
            flags = None
        claim = CLAIMS.get(exp, "path {name}: barrier and monotonicity (no claim attached)")
        claim = claim.format(kind=role.kind, degree=role.degree, name=name)
        out.append(Verdict(exp, name, where, claim, _decide(flags) if flags is not None else "reported",
                           nums, values))
    for name, role in proles.items():
        if role.experiment != "C_scratch":
            continue
        b = barriers["C_scratch"] = _seeds(at.sel(path=name)["path_barrier"])
        if "@" in role.start + role.end:  # endpoints pinned to sweep points: one pair, repeated
            b = np.unique(b[~np.isnan(b)])
        e2 = barriers.get("E2")
        nums = {"barrier (nats)": mean_std(b)}
        if e2 is None:
            verdict = "no data"
        else:
            nums["E2 barrier (nats)"] = mean_std(e2)
            pair = b if len(b) == len(e2) else np.full(len(e2), np.nanmean(b) if len(b) else np.nan)
            verdict = _decide((pair < e2)[~(np.isnan(pair) | np.isnan(e2))])
        out.append(Verdict("C_scratch", name, where, CLAIMS["C_scratch"], verdict, nums,
                           {"barrier": float(np.nanmean(b))}))
    e3 = [v for v in out if v.experiment == "E3"]
    for v in out:
        if v.experiment == "E4" and e3:
            v.numbers["sparse-curve barrier (nats)"] = e3[0].numbers["barrier (nats)"]
    return out


def table(vs: list[Verdict]) -> str:
    """The verdicts as a markdown table."""
    rows = ["| experiment | about | where | claim | verdict | numbers (mean ± std over seeds) |",
            "|---|---|---|---|---|---|"]
    for v in vs:
        nums = "; ".join(f"{k}: {x}" for k, x in v.numbers.items())
        rows.append(f"| {v.experiment} | {v.name} | {v.where or '-'} | {v.claim} | **{v.verdict}** | {nums} |")
    return "\n".join(rows) + "\n"
