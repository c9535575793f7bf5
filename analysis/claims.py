"""Deciding a study's claims (the `claims:` section of its spec) from a collected Dataset.

Every claim is decided at every point of the sweep dims other than `seed` (e.g. per
sparsity) from its per-seed effects (analysis/stats.py: Student t interval, three-way
decision, Holm correction across all the study's decisions). What a claim's effect is:

| kind | per-seed effect | claimed |
|---|---|---|
| compare | metric(a) - metric(b) | > margin (greater) or < -margin (less) |
| relation | path summary(a) - path summary(b) | > margin (greater) or < -margin (less) |
| barrier / no_barrier | path_barrier | > margin / < margin |
| monotone | largest rise of the training loss above its running minimum over t | < tolerance |
| low_loss | max training loss over t minus the higher endpoint loss | < margin (the dip below the lower endpoint is reported) |

A seed counts once per distinct job: a path whose ends are pinned to given seeds is one
job shared by every seed, so it gives one value, not one per seed (no false replication).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from .stats import ALPHA, Effect, holm

NON_SWEEP = ("run", "path", "step", "t", "seed")


@dataclass
class Decided:
    claim: str  # its name in the spec
    kind: str
    where: str  # the sweep point, e.g. "sparsity=0.9" ("" without sweep)
    statement: str  # the claim in words
    effect: Effect

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "effect"}
        out.update(asdict(self.effect))
        return out


def points(ds):
    """(label, {dim: index}) for every point of the sweep dims other than seed."""
    dims = [d for d in ds.dims if d not in NON_SWEEP]
    for combo in itertools.product(*(range(ds.sizes[d]) for d in dims)):
        sel = dict(zip(dims, combo))
        label = ", ".join(f"{d}={ds[d].values[i]}" for d, i in sel.items())
        yield label, sel


def final(ds, var: str = "train_loss"):
    """The value at the last evaluated step of every run (NaN steps skipped)."""
    da = ds[var]
    if "step" not in da.dims:
        return da
    out = da.isel(step=-1, drop=True)
    for i in range(da.sizes["step"] - 2, -1, -1):  # runs of fewer steps end earlier
        out = out.fillna(da.isel(step=i, drop=True))
    return out


def claims_of(ds) -> dict:
    """The validated claims of the spec text stored in the dataset (empty if none or invalid)."""
    from studyspec.errors import UserError
    from studyspec.load import loads

    try:
        return dict(loads(ds.attrs.get("spec", "") or "", file="<dataset spec>", data_check=False).study.claims)
    except UserError:
        return {}


def decide(ds, claims: dict | None = None, alpha: float = ALPHA) -> list[Decided]:
    """Every claim at every non-seed sweep point, Holm-corrected together."""
    claims = claims_of(ds) if claims is None else claims
    out: list[Decided] = []
    for where, sel in points(ds):
        at = ds.isel(sel)
        for name, claim in claims.items():
            out.append(Decided(name, claim.kind, where, statement(claim), effect(at, claim)))
    holm([d.effect for d in out], alpha)
    return out


def undecided(decided: list[Decided]) -> list[Decided]:
    """The decisions more seeds could settle (not those without any data)."""
    return [d for d in decided if d.effect.decision == "undecided"]


def statement(claim) -> str:
    if claim.text:
        return claim.text
    k = claim.kind
    if k in ("compare", "relation"):
        m = claim.margin_in_units()
        op = ">" if claim.direction == "greater" else "<"
        sign = "+" if claim.direction == "greater" else "-"
        return f"{claim.metric}({claim.a}) {op} {claim.metric}({claim.b}) {sign} {m:g}"
    if k == "barrier":
        return f"barrier({claim.path}) > {claim.margin_in_units():g} nats"
    if k == "no_barrier":
        return f"barrier({claim.path}) < {claim.margin_in_units():g} nats"
    if k == "monotone":
        return f"train loss along {claim.path} non-increasing within {claim.margin_in_units():g} nats on t in {list(claim.t)}"
    return f"max train loss along {claim.path} (t in {list(claim.t)}) < higher endpoint + {claim.margin_in_units():g} nats"


def effect(at, claim) -> Effect:
    """The per-seed effect of one claim at one sweep point (`at`: the dataset at that point)."""
    k = claim.kind
    m = claim.margin_in_units()
    if k in ("compare", "relation"):
        a, ja = _values(at, claim, claim.a)
        b, jb = _values(at, claim, claim.b)
        vals, seeds = _distinct(at, a - b, [f"{x}|{y}" for x, y in zip(ja, jb)])
        thr, side = (m, ">") if claim.direction == "greater" else (-m, "<")
        return Effect(vals, seeds, thr, side)
    if "path" not in at.dims or claim.path not in list(at["path"].values) or "path_barrier" not in at:
        return Effect([], [], m, "<")
    sub = at.sel(path=claim.path)
    jobs = _jobs(sub, "path_job_id")
    if k in ("barrier", "no_barrier"):
        vals, seeds = _distinct(at, _per_seed(sub["path_barrier"]), jobs)
        return Effect(vals, seeds, m, ">" if k == "barrier" else "<")
    loss = sub["path_train_loss"]
    curves = _curves(loss)  # seeds x t
    ts = np.asarray(loss["t"].values, float)
    inside = (ts >= claim.t[0] - 1e-9) & (ts <= claim.t[1] + 1e-9)
    ends = _ends(sub, curves, ts)
    if k == "monotone":
        stat = np.array([_max_rise(c[inside]) for c in curves])
        vals, seeds = _distinct(at, stat, jobs)
        return Effect(vals, seeds, m, "<")
    # low_loss
    with np.errstate(invalid="ignore"):
        peak = np.array([np.nanmax(c[inside]) if np.isfinite(c[inside]).any() else np.nan for c in curves])
        low = np.array([np.nanmin(c[inside]) if np.isfinite(c[inside]).any() else np.nan for c in curves])
    excess = peak - np.fmax(ends[:, 0], ends[:, 1])
    dip = np.fmin(ends[:, 0], ends[:, 1]) - low
    vals, seeds = _distinct(at, excess, jobs)
    dips, _ = _distinct(at, dip, jobs)
    e = Effect(vals, seeds, m, "<")
    e.extra = {"dip below the lower endpoint (nats)": dips,
               "lowest loss": _distinct(at, low, jobs)[0]}
    return e


def _values(at, claim, name):
    """Per-seed values of the claim's metric for run or path `name`, and their job ids."""
    if claim.kind == "compare":
        if "run" not in at.dims or name not in list(at["run"].values):
            return np.full(_n_seeds(at), np.nan), [""] * _n_seeds(at)
        var = claim.metric
        if var in at and "step" not in at[var].dims:
            da = at[var]
        elif var.removeprefix("final_") in at:
            da = final(at, var.removeprefix("final_"))
        else:
            return np.full(_n_seeds(at), np.nan), [""] * _n_seeds(at)
        sub = at.sel(run=name)
        return _per_seed(da.sel(run=name)), _jobs(sub, "run_job_id")
    var = "path_" + claim.metric
    if "path" not in at.dims or name not in list(at["path"].values) or var not in at:
        return np.full(_n_seeds(at), np.nan), [""] * _n_seeds(at)
    sub = at.sel(path=name)
    return _per_seed(sub[var]), _jobs(sub, "path_job_id")


def _n_seeds(at) -> int:
    return at.sizes.get("seed", 1)


def _per_seed(da) -> np.ndarray:
    return np.atleast_1d(np.asarray(da.values, dtype=float))


def _jobs(sub, var: str) -> list[str]:
    """Per-seed job ids (distinct strings per seed when the dataset has none)."""
    n = sub.sizes.get("seed", 1)
    if var in sub:
        return [str(j) for j in np.atleast_1d(sub[var].values)]
    return [f"seed{i}" for i in range(n)]


def _seed_coords(at) -> list:
    return [v.item() if hasattr(v, "item") else v for v in np.atleast_1d(at["seed"].values)] if "seed" in at.coords \
        else [None]


def _distinct(at, values, jobs) -> tuple[list[float], list]:
    """NaN-free values, one per distinct job (or pair of jobs), in seed order."""
    seeds = _seed_coords(at)
    seen, vals, where = set(), [], []
    for v, j, s in zip(np.atleast_1d(values), jobs, seeds):
        if not np.isfinite(v) or j in seen:
            continue
        seen.add(j)
        vals.append(float(v))
        where.append(s)
    return vals, where


def _curves(loss) -> np.ndarray:
    """seeds x t array of a path's training loss."""
    dims = [d for d in loss.dims if d != "t"]
    arr = loss.transpose(*dims, "t").values if dims else loss.values[None, :]
    return np.asarray(arr, float).reshape(-1, loss.sizes["t"])


def _ends(sub, curves, ts) -> np.ndarray:
    """seeds x 2: training loss at t = 0 and t = 1."""
    if "path_train_loss_from" in sub and "path_train_loss_to" in sub:
        return np.stack([_per_seed(sub["path_train_loss_from"]), _per_seed(sub["path_train_loss_to"])], axis=1)
    i0, i1 = int(np.argmin(abs(ts - 0.0))), int(np.argmin(abs(ts - 1.0)))
    return curves[:, [i0, i1]]


def _max_rise(c) -> float:
    """The largest rise of a curve above its running minimum (0 for a non-increasing curve)."""
    c = c[np.isfinite(c)]
    if not len(c):
        return math.nan
    return float(np.max(c - np.minimum.accumulate(c)))


def fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3g}"


def table(decided: list[Decided]) -> str:
    """The decisions as a markdown table."""
    rows = ["| claim | where | statement | n | mean effect | 95% CI (t) | Holm level | CI at Holm level | decision | "
            "per seed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for d in decided:
        e = d.effect
        per = ", ".join(f"{fmt(v)}" + (f" (s{s})" if s is not None else "") for v, s in zip(e.values, e.seeds))
        extra = "".join(f"; {k}: {', '.join(fmt(v) for v in vs)}" for k, vs in e.extra.items())
        rows.append(f"| {d.claim} | {d.where or '-'} | {d.statement} | {e.n} | {fmt(e.mean)} | "
                    f"[{fmt(e.ci95[0])}, {fmt(e.ci95[1])}] | {e.level:.3g} | [{fmt(e.ci[0])}, {fmt(e.ci[1])}] | "
                    f"**{e.decision}** | {per}{extra} |")
    return "\n".join(rows) + "\n"
