"""Shared building blocks of the spec models."""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # matched whole (fullmatch): no trailing newline
MAX_NAME = 100  # names become file and variable names

# Upper bounds of the numbers in a spec: far above any real study, far below what overflows
MAX_STEPS = 10**8  # optimizer steps (and any step number)
MAX_BATCH = 1 << 20  # examples in a mini-batch
MAX_EXAMPLES = 10**8  # examples of a subset
MAX_WIDTH = 1 << 16  # units or channels of one layer
MAX_LAYERS = 256  # entries of a width list
MAX_POINTS = 100_000  # points along a path
MAX_SEED = 2**31 - 1  # seed + seed_offset stays below 2**32 (numpy's and torch's limits)


class Strict(BaseModel):
    """A spec section: unknown keys are errors, values are immutable, numbers are finite
    and booleans are not numbers (`steps: true` is an error, not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        """A bool where a number is expected becomes a Boolean, which no number field takes:
        pydantic then reports it at its place ("Input should be a valid integer")."""
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            for key in {name, field.alias} - {None}:
                if key in data and _bool_as_number(field.annotation, data[key]):
                    data = {**data, key: _mark(field.annotation, data[key])}
        return data


class Boolean:
    """A YAML true/false given where a number is expected (never a number: `steps: true`)."""

    def __init__(self, value: bool):
        self.value = value

    def __repr__(self) -> str:
        return "true" if self.value else "false"


def _members(tp) -> list:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    members = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return [typing.get_args(m)[0] if typing.get_origin(m) is Annotated else m for m in members]


def _mark(tp, value):
    if isinstance(value, bool):
        return Boolean(value)
    for m in _members(tp):
        o = typing.get_origin(m)
        if o in (list, tuple) and isinstance(value, (list, tuple)):
            args = [a for a in typing.get_args(m) if a is not Ellipsis] or [Any]
            return [_mark(args[min(i, len(args) - 1)], v) if _bool_as_number(args[min(i, len(args) - 1)], v)
                    else v for i, v in enumerate(value)]
        if o is dict and isinstance(value, dict):
            vt = typing.get_args(m)[1]
            return {k: _mark(vt, v) if _bool_as_number(vt, v) else v for k, v in value.items()}
    return value


def _bool_as_number(tp, value) -> bool:
    """Whether `value` holds a bool where `tp` expects an int or float (and not also a bool)."""
    members = _members(tp)
    if isinstance(value, bool):
        return bool not in members and Any not in members and any(m in (int, float) for m in members)
    for m in members:
        o = typing.get_origin(m)
        if o in (list, tuple) and isinstance(value, (list, tuple)):
            args = [a for a in typing.get_args(m) if a is not Ellipsis] or [Any]
            return any(_bool_as_number(args[min(i, len(args) - 1)], v) for i, v in enumerate(value))
        if o is dict and isinstance(value, dict):
            return any(_bool_as_number(typing.get_args(m)[1], v) for v in value.values())
    return False


def _identifier(value: str) -> str:
    if not IDENT.fullmatch(value):
        raise ValueError(
            f"{value[:MAX_NAME]!r} is not a plain name: use letters, digits and '_' only, "
            "starting with a letter (it becomes a directory and variable name)")
    if len(value) > MAX_NAME:
        raise ValueError(f"a name of {len(value)} characters is too long (at most {MAX_NAME})")
    return value


Name = Annotated[str, AfterValidator(_identifier)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Step = Annotated[int, Field(ge=0, le=MAX_STEPS)]  # a step number, or 0 = never/none
Batch = Annotated[int, Field(ge=1, le=MAX_BATCH)]
Examples = Annotated[int, Field(ge=1, le=MAX_EXAMPLES)]
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Points = Annotated[int, Field(ge=2, le=MAX_POINTS)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{value[:60]!r} holds a newline or another control character")
    if len(value) > 4096:
        raise ValueError(f"a value of {len(value)} characters is too long (at most 4096)")
    return value


def _path(value: str) -> str:
    _text(value)
    if not value.strip():
        raise ValueError("an empty path: give a directory (`.` for the current one)")
    return value


Text = Annotated[str, AfterValidator(_text)]  # one line of plain text (a SLURM setting...)
PathText = Annotated[str, AfterValidator(_path)]  # a file system path: not empty, no control characters

ARTIFACT = re.compile(r"(init|final|mask|step\[(\d{1,9})\])")  # matched whole (fullmatch)
REF = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\.(.+)", re.S)


def _reference(value: str) -> str:
    m = REF.fullmatch(value)
    if not m or not ARTIFACT.fullmatch(m.group(2)) or len(m.group(1)) > MAX_NAME:
        raise ValueError(
            f"{value!r} is not a reference: write RUN.ARTIFACT, where ARTIFACT is "
            "init, final, mask or step[N] (for example prune.final)")
    return value


Ref = Annotated[str, AfterValidator(_reference)]


def split_ref(ref: str) -> tuple[str, str]:
    """'prune.step[200]' -> ('prune', 'step[200]')."""
    run, artifact = ref.split(".", 1)
    return run, artifact


def ref_step(artifact: str) -> int | None:
    m = ARTIFACT.fullmatch(artifact)
    return int(m.group(2)) if m and m.group(2) is not None else None
