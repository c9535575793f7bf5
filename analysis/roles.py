"""What each run and path of a study *is*, read from the spec stored in the dataset
(``ds.attrs["spec"]``, validated into a ``Study``: its defaults are the spec's).

Roles of runs (by regime, not by name):
- ``prune``: regime prune; ``dense``: regime dense; ``small_dense``: that regime
- ``scratch``: a fixed mask with a fresh init (``init: fresh``)
- ``lottery``: a fixed mask started from a prune run's ``init`` or ``step[N]`` (rewinding)
- ``continue``: a fixed mask started from a scratch run's ``final`` weights (E5 control)
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

from studyspec.spec import Study, split_ref
from studyspec.spec.paths import Bezier, Curve, Endpoint
from studyspec.spec.regimes import MaskedStart

SPARSE_ROLES = ("prune", "scratch", "lottery")
DYNAMIC = ("rigl", "set")


@dataclass(frozen=True)
class PathRole:
    name: str
    experiment: str
    kind: str  # linear, bezier, ...
    subspace: str | None  # sparse / dense for curves
    degree: int | None
    start: str  # "scratch.final"
    end: str


def study_of(ds) -> Study | None:
    """The validated study of the spec text stored in the dataset (None: none, or invalid)."""
    from studyspec.errors import UserError
    from studyspec.load import loads

    text = ds.attrs.get("spec", "") or ""
    if not text:
        return None
    try:
        return loads(text, file="<dataset spec>", data_check=False).study
    except UserError:
        return None


def run_roles(ds, study: Study | None = None) -> dict[str, str]:
    """run name -> role, for every run in the dataset."""
    study = study_of(ds) if study is None else study
    runs = study.runs if study is not None else {}
    names = [str(r) for r in ds["run"].values] if "run" in ds.coords else []
    out: dict[str, str] = {}

    def role(name, seen=()):
        if name in out:
            return out[name]
        regime = runs.get(name)
        if regime is None:
            return name  # no spec: the name is the role (prune, scratch, lottery, dense)
        init = regime.init if isinstance(regime, MaskedStart) else None  # the other regimes start fresh
        src, art = split_ref(init) if init not in (None, "fresh") else (None, "")
        src_role = role(src, seen + (name,)) if src in runs and src not in seen + (name,) else None
        if regime.regime in ("prune", "dense", "small_dense"):
            r = regime.regime
        elif regime.regime in DYNAMIC and src_role == "scratch" and art == "final":
            r = "escape"
        elif regime.regime == "fixed_mask" and init == "fresh":
            r = "scratch"
        elif src_role == "prune" and (art == "init" or art.startswith("step[")):
            r = "lottery"
        elif src_role == "scratch" and art == "final":
            r = "continue"
        else:
            r = regime.regime
        out[name] = r
        return r

    for name in set(names) | set(runs):
        role(name)
    return {n: out.get(n, n) for n in names} if names else out


def path_roles(ds, study: Study | None = None) -> dict[str, PathRole]:
    """path name -> PathRole, for every path in the dataset."""
    if "path" not in ds.coords:
        return {}
    study = study_of(ds) if study is None else study
    paths = study.paths if study is not None else {}
    roles = run_roles(ds, study)
    for name in (study.runs if study is not None else {}):
        roles.setdefault(name, name)
    out = {}
    for name in (str(p) for p in ds["path"].values):
        path = paths.get(name)
        if path is None:
            out[name] = PathRole(name, "other", "linear", None, None, "?.?", "?.?")
            continue
        start, end = _end(path.from_), _end(path.to)
        subspace = path.subspace if isinstance(path, Curve) else None
        degree = path.degree if isinstance(path, Bezier) else None
        out[name] = PathRole(name, _experiment(start, end, path.kind, subspace, roles), path.kind,
                             subspace, degree, start, end)
    return out


def _end(end) -> str:
    """'scratch.final', or 'scratch.final@seed=1' for an endpoint pinned to another sweep point."""
    if isinstance(end, Endpoint):
        at = ",".join(f"{k}={v}" for k, v in sorted(end.at.items()))
        return end.ref + (f"@{at}" if at else "")
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
