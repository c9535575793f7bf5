"""Bring your own model or dataset: code named by import path, checked without importing it.

    model: {arch: custom, target: "mypkg.nets:WideMLP", args: {width: 512}}
    data:  {dataset: custom, target: "mypkg.data:load", args: {n: 1000}, batch_size: 64}

The job imports the target; the engine only finds it (torch-free, nothing runs):
- the module is located on the import path (``sys.path`` and the current directory)
  without importing it or its packages (importlib's path finder, folder by folder);
- the object is looked up in the module's source (``ast``): a top-level class, function or
  assignment of that name;
- the args are checked against the signature when the source shows one (a class's
  ``__init__`` or a function's parameters): an unknown name (unless it takes ``**kwargs``)
  or a missing required one is an error.

The target, its args and a version of the code are part of the job id: the version of the
installed distribution holding the module when there is one, else ``sha256:<12 hex>`` of
the module's source file, so editing the code gives new jobs.

Contracts (what the runners call): a model target is called as
``target(in_shape, n_classes, **args)`` (``in_shape``: one example's shape, a tuple) and
returns a ``torch.nn.Module``; a data target is called as ``target(**args)`` and returns a
dict with ``x``, ``y``, ``x_test``, ``y_test`` (arrays; ``x`` shaped (N, *example shape),
uint8 images are scaled to [0, 1], anything else used as is) and ``classes`` (an int).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from .base import Strict

TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def search_path() -> list[str]:
    """Where targets are looked for: sys.path, with the current directory first (as a job
    started with ``python -m`` from there sees it)."""
    cwd = os.getcwd()
    return [cwd] + [p for p in sys.path if p and os.path.abspath(p) != cwd]


def locate(module: str) -> Path:
    """The source file of ``module``, found without importing anything; ValueError if not found."""
    path, origin = search_path(), None
    parts = module.split(".")
    for i, part in enumerate(parts):
        spec = PathFinder.find_spec(part, path)
        if spec is None:
            where = "on the import path (sys.path and the current directory)" if i == 0 else \
                f"in package {'.'.join(parts[:i])!r}"
            raise ValueError(f"module {'.'.join(parts[:i + 1])!r} not found {where}: install the package "
                             "or run studyspec from the folder that holds it")
        origin = spec.origin
        if i < len(parts) - 1:
            if not spec.submodule_search_locations:
                raise ValueError(f"{'.'.join(parts[:i + 1])!r} is a module, not a package: cannot hold "
                                 f"{module!r}")
            path = list(spec.submodule_search_locations)
    if not origin or not origin.endswith(".py"):
        raise ValueError(f"module {module!r} has no Python source to check ({origin}); give a .py module")
    return Path(origin)


def _signature(tree: ast.Module, name: str):
    """The top-level definition of ``name`` in the module: (node or None when defined by an
    assignment or import, found?)."""
    found = None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            found = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = "assigned"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                found = "assigned"
    return found


def check_target(target: str) -> Path:
    """Check that ``target`` ("module:object") can be found; the module's source file."""
    if not TARGET.fullmatch(target):
        raise ValueError(f"{target!r} is not an import path: write 'package.module:Object'")
    module, name = target.split(":")
    source = locate(module)
    tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    if _signature(tree, name) is None:
        import difflib

        defined = [n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
        close = difflib.get_close_matches(name, defined, n=3)
        raise ValueError(f"{name!r} is not defined at the top of module {module!r} ({source})"
                         + (f"; did you mean {', '.join(close)}?" if close else
                            f"; it defines {len(defined)} classes and functions, e.g. {', '.join(defined[:5])}"))
    return source


def check_args(target: str, args: dict, given: tuple[str, ...]) -> None:
    """Check ``args`` against the target's signature, when its source shows one. ``given``:
    the parameters the runner passes first, positionally (model: in_shape, n_classes)."""
    module, name = target.split(":")
    source = locate(module)
    node = _signature(ast.parse(source.read_text(encoding="utf-8")), name)
    if isinstance(node, ast.ClassDef):
        node = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if node is None:
            return  # inherited: not checkable from the source
        params = node.args.posonlyargs + node.args.args
        params = params[1:]  # self
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        params = node.args.posonlyargs + node.args.args
    else:
        return
    a = node.args
    names = [p.arg for p in params] + [p.arg for p in a.kwonlyargs]
    if len(params) < len(given) and a.vararg is None:
        raise ValueError(f"{target} takes {len(params)} positional parameter(s); it is called with "
                         f"{', '.join(given)} first, then the args")
    rest = params[len(given):]
    n_defaults = len(a.defaults)
    required = [p.arg for p in rest[:len(rest) - n_defaults]] if n_defaults <= len(rest) else []
    required += [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    missing = [r for r in required if r not in args]
    if missing:
        raise ValueError(f"args of {target}: missing {', '.join(missing)} (required by its signature)")
    if a.kwarg is None:
        known = set(names[len(given):])
        unknown = [k for k in args if k not in known]
        if unknown:
            raise ValueError(f"args of {target}: unknown {', '.join(map(repr, unknown))}; it takes "
                             f"{', '.join(sorted(known)) or 'no args'}")


def version_of(target: str) -> str:
    """The version of the code behind ``target``: its distribution's, else a hash of its source."""
    from importlib import metadata

    module = target.split(":")[0]
    top = module.split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "sha256:" + hashlib.sha256(locate(module).read_bytes()).hexdigest()[:12]


def import_target(target: str):
    """The object ``target`` names, imported (the runners call this inside the job; the
    current directory is on the path, as for the checks above)."""
    import importlib

    module, name = target.split(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    return getattr(importlib.import_module(module), name)


class CustomCode(Strict):
    """Mixed into the custom model and dataset specs: ``target``, ``args``, ``version``."""

    GIVEN: ClassVar[tuple[str, ...]] = ()  # the parameters the runner passes before the args

    target: str = Field(description="the code, as 'package.module:Object' (found on the import path; the job imports it)")
    args: dict[str, Any] = Field({}, description="keyword arguments for the target (JSON values)")
    version: str | None = Field(
        None, description="the code's version in the job id; default: its installed distribution's version, "
        "else a hash of the module's source file (set here to pin it)")

    @field_validator("target")
    @classmethod
    def _findable(cls, target: str) -> str:
        check_target(target)
        return target

    @model_validator(mode="before")
    @classmethod
    def _version(cls, data):
        if isinstance(data, dict) and data.get("version") is None and isinstance(data.get("target"), str):
            try:
                check_target(data["target"])
            except ValueError:
                return data  # reported by the target's own check
            data = {**data, "version": version_of(data["target"])}
        return data

    @model_validator(mode="after")
    def _args(self):
        check_args(self.target, self.args, self.GIVEN)
        return self
