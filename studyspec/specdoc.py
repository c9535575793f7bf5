"""Render the spec reference (docs/spec.md) from the pydantic models, so it cannot drift."""

from __future__ import annotations

import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .spec import Study

INTRO = """\
# Spec reference

Generated from the pydantic models by `studyspec schema --markdown > docs/spec.md`;
a test fails when this file and the code disagree. Unknown keys are errors everywhere.
References such as `prune.final` name an artifact (`init`, `final`, `mask`, `step[N]`)
of another run at the same sweep point. `studyspec schema` prints the JSON Schema.

The YAML a spec may use (studyspec/yamlpos.py): one UTF-8 document of at most 1 MiB;
plain mappings, lists, strings, numbers, booleans and null (any other tag, such as
`!!python/...`, `!!set` or `!include`, is an error); anchors and aliases (`&a`, `*a`)
and the merge key (`<<: *defaults`, or `<<: [*a, *b]`: keys written in the mapping win);
top-level keys starting with `x-` are ignored, a place for anchors. Numbers are finite
(no `.inf`, `.nan`), integers fit in 64 bits, and `true`/`false` are never numbers. A
colon-separated number such as `1:30:00` stays a string (YAML 1.1 would read 5400). At
most 64 levels of nesting and 1,000,000 values with aliases expanded.

Numbers have upper bounds far above any real study (steps and step numbers 10^8,
batch sizes 2^20, layer widths 2^16, path points 100,000, seeds and seed offsets
2^31 - 1). Names (study, runs, paths) are letters, digits and `_`, at most 100
characters. A sweep's values are all of one kind (numbers, strings, booleans or lists),
each once; a study of more than `launch.max_jobs` jobs (default 50,000) is refused
before it is expanded.
"""


def _type(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return " \\| ".join(_type(a) for a in args if a is not type(None)) + (
            " \\| null" if type(None) in args else "")
    if origin in (list, tuple):
        inner = ", ".join(_type(a) for a in args if a is not Ellipsis)
        return f"list of {inner}" if origin is list else f"[{inner}]"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _models(tp, seen: list) -> None:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return
        seen.append(tp)
        for f in tp.model_fields.values():
            _models(f.annotation, seen)
    for a in args:
        _models(a, seen)


def markdown() -> str:
    models: list[type[BaseModel]] = []
    _models(Study, models)
    out = [INTRO]
    for model in models:
        out.append(f"## {model.__name__}\n")
        doc = (model.__doc__ or "").strip().split("\n\n")[0]  # the first paragraph
        if doc and model.__doc__ != BaseModel.__doc__:
            out.append(" ".join(line.strip() for line in doc.splitlines()) + "\n")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        for name, f in model.model_fields.items():
            default = "required" if f.default is PydanticUndefined and f.default_factory is None else (
                f"`{f.get_default(call_default_factory=True)!r}`")
            if isinstance(f.default, BaseModel):
                default = "defaults"
            kind = "map of axis to list of values" if model is Study and name == "sweep" else _type(f.annotation)
            out.append(f"| `{f.alias or name}` | {kind} | {default} | {f.description or ''} |")
        out.append("")
    return "\n".join(out)
