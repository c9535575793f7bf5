"""Command-line overrides: `studyspec plan SPEC train.steps=300 sweep.seed=[0,1]`.

Each override is `KEY.PATH=VALUE`, the value read as YAML (`300`, `[0, 1]`, `{name: adam}`,
`null`). It is written into the spec's data before validation, so it is checked exactly like
a key in the file, and a job's id changes only through its resolved config. An error about
an overridden value points at the override (`<override 2: train.steps=abc>`) instead of the
file. Under `sweep:` the rest of the key is one axis (`sweep.train.optimizer.lr=[0.1, 0.2]`);
`sweep.random.axes.AXIS=...` sets one axis of a random search.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import Problem, UserError
from .yamlpos import Located, load as load_yaml, loads as loads_yaml

PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*)((?:\[\d+\])*)$")


@dataclass(frozen=True)
class Override:
    index: int  # 1-based position on the command line
    text: str  # as typed
    path: tuple  # keys (str) and list indices (int) into the spec
    value: object

    @property
    def label(self) -> str:
        return f"<override {self.index}: {self.text}>"


def _dotted(path) -> str:
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def _split(key: str) -> list | None:
    """'model.hidden[0]' -> ['model', 'hidden', 0]; a sweep axis stays one key
    ('sweep.train.optimizer.lr' -> ['sweep', 'train.optimizer.lr'])."""
    parts = key.split(".")
    whole = []  # a dotted sweep axis at the end
    if parts[0] == "sweep" and len(parts) > 2 and parts[1] not in ("random", "zip"):
        parts, whole = ["sweep"], [".".join(parts[1:])]
    elif parts[:3] == ["sweep", "random", "axes"] and len(parts) > 4:
        parts, whole = parts[:3], [".".join(parts[3:])]
    out: list = []
    for part in parts:
        m = PART.match(part)
        if not m:
            return None
        out.append(m.group(1))
        out += [int(x) for x in re.findall(r"\[(\d+)\]", m.group(2))]
    return out + whole


def parse(items: list[str] | None) -> list[Override]:
    """KEY.PATH=VALUE strings -> overrides; a malformed one is a located error."""
    out = []
    problems = []
    for i, text in enumerate(items or [], start=1):
        label = f"<override {i}: {text}>"
        key, eq, raw = text.partition("=")
        path = _split(key.strip()) if eq else None
        if not path:
            problems.append(Problem(
                f"expected KEY.PATH=VALUE, got {text!r}", file=label,
                hint="e.g. train.steps=300, sweep.seed=[0,1], runs.prune.schedule.every=20 (the value is YAML)"))
            continue
        try:  # the spec loader's YAML, so a value reads as it would in the file (1:30:00 stays text)
            value = loads_yaml(raw, label).data if raw.strip() else None
        except UserError as e:
            for p in e.problems:  # the override is the place; a line:col inside the value would mislead
                p.where, p.line, p.col = _dotted(path), None, None
                if "syntax" in p.message:
                    p.hint = "write the value as in the file, quoted for the shell, e.g. 'sweep.seed=[0, 1]'"
            problems += e.problems
            continue
        out.append(Override(i, text, tuple(path), value))
    if problems:
        raise UserError(problems)
    return out


def apply(source: Located, overrides: list[Override]) -> tuple[Located, dict[str, Override]]:
    """A copy of `source` with the overrides written in, and for each override the path
    (dotted) of the first node it put there: errors at or under it are the override's."""
    if not overrides:
        return source, {}
    data = copy.deepcopy(source.data)
    anchors: dict[str, Override] = {}
    for o in overrides:
        node, anchor = data, None
        for depth, item in enumerate(o.path):
            last = depth == len(o.path) - 1
            here = o.path[:depth + 1]
            if isinstance(item, int):
                if not isinstance(node, list) or not 0 <= item < len(node):
                    n = len(node) if isinstance(node, list) else 0
                    raise UserError.single(
                        f"{_dotted(o.path[:depth]) or 'the spec'} has no item [{item}]"
                        + (f" (it has {n})" if isinstance(node, list) else " (it is not a list)"),
                        file=o.label, where=_dotted(o.path))
            elif not isinstance(node, dict):
                raise UserError.single(f"{_dotted(o.path[:depth])} holds a value ({node!r}), not keys",
                                       file=o.label, where=_dotted(o.path),
                                       hint=f"set it whole: {_dotted(o.path[:depth])}=VALUE")
            elif item not in node:
                anchor = anchor or here
                if not last:
                    node[item] = {}
            if last:
                node[item] = copy.deepcopy(o.value)
            else:
                node = node[item]
        anchors[_dotted(anchor or o.path)] = o
    text = (f"# {source.file} with command-line overrides: {' '.join(o.text for o in overrides)}\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    out = Located(data, source.positions, source.keys, source.file, text)
    out.overrides = [o.text for o in overrides]  # recorded in the collected dataset's attributes
    return out, anchors


def relabel(error: UserError, anchors: dict[str, Override]) -> UserError:
    """Point each problem at or under an overridden node at its override (the last one wins)."""
    for p in error.problems:
        for anchor, o in anchors.items():
            if p.where == anchor or p.where.startswith(anchor + ".") or p.where.startswith(anchor + "["):
                p.file, p.line, p.col = o.label, None, None
    return error


def load(path: str | Path, items: list[str] | None = None, data_check: bool = True):
    """Load a spec file with command-line overrides (see the module doc); the result's
    `source.text` is the resolved spec when there are overrides."""
    from .load import check

    overrides = parse(items)
    source, anchors = apply(load_yaml(path), overrides)
    try:
        return check(source, data_check)
    except UserError as e:
        raise relabel(e, anchors) from None


def describe(items: list[str] | None) -> str:
    """How the overrides are recorded in a result's attributes: one per line, as typed."""
    return "\n".join(items or [])
