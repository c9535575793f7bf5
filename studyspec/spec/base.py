"""Shared building blocks of the spec models."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Strict(BaseModel):
    """A spec section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _identifier(value: str) -> str:
    if not IDENT.match(value):
        raise ValueError(
            f"{value!r} is not a plain name: use letters, digits and '_' only, "
            "starting with a letter (it becomes a directory and variable name)")
    return value


Name = Annotated[str, AfterValidator(_identifier)]

ARTIFACT = re.compile(r"^(init|final|mask|step\[(\d+)\])$")
REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.(.+)$")


def _reference(value: str) -> str:
    m = REF.match(value)
    if not m or not ARTIFACT.match(m.group(2)):
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
    m = ARTIFACT.match(artifact)
    return int(m.group(2)) if m and m.group(2) is not None else None
