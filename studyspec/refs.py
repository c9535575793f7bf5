"""References between runs (`prune.final`, `prune.init`, `prune.step[200]`): checks and order."""

from __future__ import annotations

from .errors import Problem, closest
from .spec import Study, ref_step, split_ref


def run_edges(study: Study) -> dict[str, dict[str, str]]:
    """run -> {field: reference} for every run."""
    return {name: regime.refs() for name, regime in study.runs.items()}


def run_order(study: Study) -> list[str]:
    """Run names, each after the runs it references (the spec was checked: no cycles)."""
    order: list[str] = []
    edges = run_edges(study)

    def visit(name):
        if name in order:
            return
        for ref in edges[name].values():
            visit(split_ref(ref)[0])
        order.append(name)

    for name in study.runs:
        visit(name)
    return order


LENGTH_AXES = ("train.steps", "train.epochs", "data.")  # what the length of training depends on


def train_lengths(study: Study) -> dict[int, str]:
    """Every length of training (in steps) the study takes over its sweep -> the sweep point
    that gives it (e.g. "train.steps=10"; "" when nothing swept changes it). Lengths given in
    epochs are turned into steps with the dataset's training-set size."""
    import itertools

    from .datasets import facts
    from .sweep import apply, dims

    relevant = [d for d in dims(study) if any(a.startswith(LENGTH_AXES) for a in d.axes)]
    out: dict[int, str] = {}
    for combo in itertools.product(*(range(len(d.values)) for d in relevant)):
        point = {a: v for d, i in zip(relevant, combo) for a, v in zip(d.axes, d.values[i])}
        try:
            at = apply(study, point) if point else study
        except Exception:  # noqa: BLE001 -- a bad sweep value, reported by check_sweep
            continue
        steps = at.train.total_steps(facts(at.data).train, at.data.batch_size)
        out.setdefault(steps, ", ".join(f"{a}={v}" for a, v in point.items()))
    return out


def _shortest(study: Study) -> tuple[int, str] | None:
    lengths = train_lengths(study)
    if not lengths:
        return None
    steps = min(lengths)
    return steps, lengths[steps]


def check_references(spec) -> list[Problem]:
    study: Study = spec.study
    problems: list[Problem] = []
    runs = list(study.runs)
    shortest = _shortest(study)

    def check(where: tuple, ref: str, as_mask: bool):
        run, artifact = split_ref(ref)
        if run not in study.runs:
            guess = closest(run, runs)
            problems.append(spec.problem(
                where, f"no run named {run!r} (runs: {', '.join(runs)})",
                f"did you mean '{guess}.{artifact}'?" if guess else "reference a run defined under `runs:`"))
            return
        target = study.runs[run]
        step = ref_step(artifact)
        if as_mask and not target.has_mask:
            problems.append(spec.problem(
                where, f"run {run!r} (regime {target.regime}) has no mask",
                "take the mask of a run that has one, e.g. a prune run"))
        elif artifact == "mask" and not as_mask:
            problems.append(spec.problem(
                where, "a mask is not a set of weights", f"use {run}.init, {run}.final or {run}.step[N]"))
        elif step is not None:
            length = shortest
            if getattr(target, "steps", None) is not None:  # the run's own length
                length = (target.steps, f"runs.{run}.steps")
            if length is not None and step > length[0]:
                at = f" at {length[1]}" if length[1] else ""
                problems.append(spec.problem(
                    where, f"step {step} is past the end of training ({length[0]} steps{at})",
                    "reference a step every sweep point reaches" if at else None))
            elif step not in study.train.checkpoints:
                problems.append(spec.problem(
                    where, f"step {step} is not kept", f"add {step} to train.checkpoints"))

    for name, regime in study.runs.items():
        for field, ref in regime.refs().items():
            check(("runs", name, field), ref, as_mask=(field == "mask"))
        problems += _regime_checks(spec, name, regime, shortest)
    for name, path in study.paths.items():
        ats = path.ats()
        for field, ref in path.refs().items():
            check(("paths", name, field) + (("ref",) if field in ats else ()), ref, as_mask=False)
        problems += _at_checks(spec, name, ats)
    if not problems:
        problems += _cycles(spec)
    return problems


def _at_checks(spec, name: str, ats: dict) -> list[Problem]:
    """`at: {dim: value}` of path endpoints: a sweep dimension and one of its coordinates."""
    from .sweep import dims

    out = []
    coords = {d.name: [v[0] for v in d.values] for d in dims(spec.study)}
    for field, at in ats.items():
        for dim, value in at.items():
            where = ("paths", name, field, "at", dim)
            if dim not in coords:
                guess = closest(dim, coords)
                out.append(spec.problem(
                    where, f"{dim!r} is not a sweep dimension"
                    + (f" (dimensions: {', '.join(coords)})" if coords else " (this study sweeps nothing)"),
                    f"did you mean {guess!r}?" if guess else "`at` picks a coordinate of a dimension under `sweep:`"))
            elif not any(value == c and type(value) is not bool for c in coords[dim]):
                out.append(spec.problem(
                    where, f"{value!r} is not a coordinate of dimension {dim!r}",
                    f"{dim} takes the values {', '.join(map(str, coords[dim]))}"))
    return out


def _regime_checks(spec, name: str, regime, shortest) -> list[Problem]:
    """Checks of a regime against the rest of the study (not references). (small_dense
    scales the widths of every arch: runners/regimes.py, nothing to check here.)"""
    out = []
    if getattr(regime, "steps", None) is not None:
        shortest = (regime.steps, f"runs.{name}.steps")
    if regime.regime == "imp" and shortest is not None and regime.rewind >= shortest[0]:
        at = f" at {shortest[1]}" if shortest[1] else ""
        out.append(spec.problem(("runs", name, "rewind"),
                                f"rewind step {regime.rewind} is not before the end of training "
                                f"({shortest[0]} steps{at})", "rewind to an early step, e.g. 0"))
    return out


def _cycles(spec) -> list[Problem]:
    edges = run_edges(spec.study)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = finished

    def visit(name, stack):
        state[name] = 1
        for field, ref in edges[name].items():
            target = split_ref(ref)[0]
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [name, target] if target != name else [name, name]
                cycle = list(dict.fromkeys(cycle[:-1])) + [target]
                return spec.problem(("runs", name, field),
                                    "runs reference each other in a cycle: " + " -> ".join(cycle),
                                    "a run can only use artifacts of runs that do not depend on it")
            if state.get(target) is None:
                found = visit(target, stack + [name])
                if found:
                    return found
        state[name] = 2
        return None

    for name in edges:
        if name not in state:
            found = visit(name, [])
            if found:
                return [found]
    return []
