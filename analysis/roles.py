"""What each run and path of a study *is*, read from the spec text stored in the dataset.

Roles of runs (by regime, not by name):
- ``prune``: regime prune; ``dense``: regime dense; ``small_dense``, ``static``: those regimes
- ``scratch``: a fixed mask with a fresh init (``init: fresh``)
- ``lottery``: a fixed mask started from a prune run's ``init`` or ``step[N]`` (rewinding)
- ``continue``: a fixed/static mask started from a scratch run's ``final`` weights (E5 control)
- ``escape``: a dynamic sparse regime (rigl, set) started from a scratch run's ``final`` (E5)
- otherwise the regime's name

Roles of paths (`experiment`):
- ``E1``: linear, scratch.init -> prune.final
- ``E2``: linear, scratch.final <-> prune.final
- ``E3``: curve (bezier) with subspace sparse, scratch.final <-> prune.final
- ``E4``: curve with subspace dense, scratch.final <-> prune.final
- ``C_lottery``: lottery.final <-> prune.final (does the lottery ticket re-learn the pruned solution?)
- ``C_scratch``: scratch.final <-> another scratch run's final (a barrier between any two solutions?)
- ``C_scratch_init``: scratch.init -> scratch.final (is plain training itself monotone?)
- ``other``
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

SPARSE_ROLES = ("prune", "scratch", "lottery")
DYNAMIC = ("rigl", "set")
CURVES = ("bezier", "polychain")


@dataclass(frozen=True)
class PathRole:
    name: str
    experiment: str
    kind: str  # linear, bezier, ...
    subspace: str | None  # sparse / dense for curves
    degree: int | None
    start: str  # "scratch.final"
    end: str


def _spec(ds) -> dict:
    try:
        data = yaml.safe_load(ds.attrs.get("spec", "") or "") or {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def run_roles(ds) -> dict[str, str]:
    """run name -> role, for every run in the dataset."""
    runs = (_spec(ds).get("runs") or {})
    names = [str(r) for r in ds["run"].values] if "run" in ds.coords else []
    out: dict[str, str] = {}

    def role(name, seen=()):
        if name in out:
            return out[name]
        cfg = runs.get(name)
        if not isinstance(cfg, dict):
            return name  # no spec: the name is the role (prune, scratch, lottery, dense)
        regime = str(cfg.get("regime", name))
        init = cfg.get("init", "fresh")
        src, _, art = str(init).partition(".")
        src_role = role(src, seen + (name,)) if src in runs and src not in seen + (name,) else None
        if regime in ("prune", "dense", "small_dense"):
            r = regime
        elif regime in DYNAMIC and src_role == "scratch" and art == "final":
            r = "escape"
        elif regime in ("fixed_mask", "static") and init in (None, "fresh"):
            r = "scratch" if regime == "fixed_mask" else "static"
        elif src_role == "prune" and (art == "init" or art.startswith("step[")):
            r = "lottery"
        elif src_role == "scratch" and art == "final":
            r = "continue"
        else:
            r = regime
        out[name] = r
        return r

    for name in set(names) | set(runs):
        role(name)
    return {n: out.get(n, n) for n in names} if names else out


def path_roles(ds) -> dict[str, PathRole]:
    """path name -> PathRole, for every path in the dataset."""
    if "path" not in ds.coords:
        return {}
    spec = _spec(ds)
    paths = spec.get("paths") or {}
    roles = run_roles(ds)
    for name in (spec.get("runs") or {}):
        roles.setdefault(name, name)
    out = {}
    for name in (str(p) for p in ds["path"].values):
        cfg = paths.get(name) or {}
        start, end = _end(cfg.get("from", "?.?")), _end(cfg.get("to", "?.?"))
        kind = str(cfg.get("kind", "linear"))
        subspace = cfg.get("subspace") or ("sparse" if kind in CURVES else None)
        degree = cfg.get("degree", 2 if kind == "bezier" else None)
        out[name] = PathRole(name, _experiment(start, end, kind, subspace, roles), kind,
                             subspace, degree, start, end)
    return out


def _end(end) -> str:
    """'scratch.final', or 'scratch.final@seed=1' for an endpoint pinned to another sweep point."""
    if isinstance(end, dict):
        at = ",".join(f"{k}={v}" for k, v in sorted((end.get("at") or {}).items()))
        return f"{end.get('ref', '?.?')}" + (f"@{at}" if at else "")
    return str(end)


def _experiment(start: str, end: str, kind: str, subspace, roles: dict) -> str:
    (ra, aa), (rb, ab) = (_split(start, roles), _split(end, roles))
    pair = {(ra, aa), (rb, ab)}
    if kind == "linear":
        if (ra, aa) == ("scratch", "init") and (rb, ab) == ("prune", "final"):
            return "E1"
        if pair == {("scratch", "final"), ("prune", "final")}:
            return "E2"
    elif pair == {("scratch", "final"), ("prune", "final")}:
        return "E4" if subspace == "dense" else "E3"
    if pair == {("lottery", "final"), ("prune", "final")}:
        return "C_lottery"
    if ra == rb == "scratch" and aa == ab == "final" and start != end:
        return "C_scratch"
    if (ra, aa) == ("scratch", "init") and (rb, ab) == ("scratch", "final") and start.split(".")[0] == end.split(".")[0] \
            and "@" not in start + end:
        return "C_scratch_init"
    return "other"


def _split(ref: str, roles: dict) -> tuple[str, str]:
    run, _, artifact = ref.split("@")[0].partition(".")
    return roles.get(run, run), artifact
