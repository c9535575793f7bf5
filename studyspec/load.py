"""Load a spec file: YAML -> pydantic Study, every error located in the file."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from .errors import Problem, UserError, closest
from .spec import Study
from .yamlpos import Located, load as load_yaml, loads as loads_yaml


MAX_PROBLEMS = 50  # shown at once (each with its hint); a file of 200,000 typos stays fast


@dataclass(frozen=True)
class LoadedSpec:
    study: Study
    source: Located

    def problem(self, path: tuple, message: str, hint: str | None = None) -> Problem:
        pos, _ = self.source.position(path)
        return Problem(message, file=self.source.file, line=pos[0] if pos else None,
                       col=pos[1] if pos else None, where=_dotted(path), hint=hint)


def load(path: str | Path, data_check: bool = True) -> LoadedSpec:
    """Load and fully check a spec file (schema, references, sweep, and with
    `data_check` that every dataset root holds its files)."""
    return check(load_yaml(path), data_check)


def loads(text: str, file: str = "<spec>", data_check: bool = True) -> LoadedSpec:
    return check(loads_yaml(text, file), data_check)


def check(source: Located, data_check: bool = True) -> LoadedSpec:
    data = source.data
    if isinstance(data, dict):  # top-level `x-...` keys hold YAML anchors to merge (`<<: *x`), nothing else
        data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        study = Study.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        problems = [_problem(source, err) for err in errors[:MAX_PROBLEMS]]
        if len(errors) > MAX_PROBLEMS:
            problems.append(Problem(f"... and {len(errors) - MAX_PROBLEMS} more problems", file=source.file,
                                    hint="fix the ones above first"))
        raise UserError(problems) from None
    from .spec.claims import check_claims, with_seeds

    problems = check_claims(LoadedSpec(study, source))
    if study.seeds is not None and not problems:  # adaptive: the first wave's seeds (studyspec/adaptive.py adds waves)
        study = with_seeds(study, study.seeds.start)
    spec = LoadedSpec(study, source)
    from .refs import check_references
    from .sweep import check_sweep, job_count

    if job_count(study)[1] > study.launch.max_jobs:  # refused before anything expands the sweep
        raise UserError(check_sweep(spec))
    from .datasets import check_shapes

    problems += check_references(spec) + check_sweep(spec)
    if not problems:
        problems = check_shapes(spec)
    if not problems and data_check:
        from .datasets import check_data

        problems = check_data(spec)
    if problems:
        raise UserError(problems)
    return spec


def _dotted(path) -> str:
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def _problem(source: Located, err: dict) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "union_tag_invalid":  # point at the tag's value
        loc += (err["ctx"]["discriminator"].strip("'"),)
    pos, found = source.position(loc, key=kind == "extra_forbidden")
    message = err["msg"]
    hint = None
    # the path shown is the one in the file (tags of unions and type names dropped)
    shown = found + loc[-1:] if kind == "missing" else found[:-1] if kind == "union_tag_invalid" else found
    if kind == "extra_forbidden":
        allowed = _fields_at(Study, loc[:-1])
        message = f"unknown key {loc[-1]!r}"
        if allowed:
            guess = closest(loc[-1], allowed)
            hint = (f"did you mean {guess!r}? " if guess else "") + "valid keys here: " + ", ".join(allowed)
    elif kind == "missing":
        message = f"required key {loc[-1]!r} is missing"
        hint = f"add `{loc[-1]}: ...` here"
    elif kind in ("literal_error", "union_tag_invalid", "enum"):
        ctx = err.get("ctx", {})
        expected = ctx.get("expected") or ctx.get("expected_tags") or ""
        choices = [c.strip(" '\"") for c in expected.replace(" or ", ",").split(",") if c.strip()]
        value = err.get("input") if kind != "union_tag_invalid" else ctx.get("tag")
        if kind == "union_tag_invalid":
            message = f"unknown {ctx.get('discriminator', 'kind').strip(chr(39))} {value!r}; expected one of {', '.join(choices)}"
        guess = closest(value, choices) if value is not None else None
        hint = f"did you mean {guess!r}?" if guess else None
    elif kind == "union_tag_not_found":
        message = f"missing {err.get('ctx', {}).get('discriminator', 'kind')} (which kind of entry this is)"
    elif type(err.get("input")).__name__ == "Boolean":  # spec.base.Boolean: true/false for a number
        message = f"{err['input']!r} is a boolean, not a number: write a number"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return Problem(message, file=source.file, line=pos[0] if pos else None,
                   col=pos[1] if pos else None, where=_dotted(shown), hint=hint)


def _fields_at(model: type, loc: tuple) -> list[str]:
    """The keys allowed at `loc` (walking models, dicts, lists and tagged unions)."""
    tp = model
    for item in loc:
        tp = _step(tp, item)
        if tp is None:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


def _unwrap(tp):
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union and len(args) == 1:
        return _unwrap(args[0])
    return tp


def _step(tp, item):
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            if item in (name, f.alias):
                return f.annotation
        return None
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin in (list, tuple):
        return typing.get_args(tp)[0]
    if origin is typing.Union:
        for member in typing.get_args(tp):
            member = _unwrap(member)
            if isinstance(member, type) and issubclass(member, BaseModel):
                for f in member.model_fields.values():
                    if typing.get_origin(f.annotation) is typing.Literal and item in typing.get_args(f.annotation):
                        return member
        return None
    return None
