"""One registry idiom for every runner implementation: it registers against its spec class.

    @implements(spec.Prune)                 # a spec class (regimes, path kinds, datasets, archs)
    class Prune(Regime): ...

    @implements(spec.Optimizer, "adamw")    # a spec class and one value of its `name`
    def adamw(params, opt): ...             #   (optimizers, lr schedules, distributions)

``lookup(obj)`` finds the implementation of a spec object (or of its typed job class,
which subclasses the spec class: ``studyspec.spec.jobs``); ``lookup(cls, name)`` that of a
named member. ``members()`` lists, per family, the members the spec unions define:
tests/test_registry.py asserts that every member has
exactly one implementation and every implementation a member. Registering a second
implementation of a member is an error at import.
"""
from __future__ import annotations

import typing

from studyspec.spec import data, model, paths, regimes, train
from studyspec.spec.distribution import DistributionSpec

_REGISTRY: dict[tuple[type, str | None], object] = {}


def implements(spec_class: type, name: str | None = None):
    """Register the decorated class or function as the implementation of ``spec_class``
    (or of its member ``name``)."""
    def register(impl):
        key = (spec_class, name)
        if key in _REGISTRY and _REGISTRY[key] is not impl:
            raise TypeError(f"{_label(key)} has two implementations: {_REGISTRY[key]!r} and {impl!r}")
        _REGISTRY[key] = impl
        impl.spec_class = spec_class
        return impl

    return register


def unregister(spec_class: type, name: str | None = None) -> None:
    """Remove an implementation (tests that register a toy one)."""
    _REGISTRY.pop((spec_class, name), None)


def lookup(obj, name: str | None = None):
    """The implementation of a spec object (by its class, or a class it subclasses), or with
    ``name`` of that member of the spec class ``obj``."""
    if name is not None:
        key = (obj, name)
        if key not in _REGISTRY:
            known = sorted(n for c, n in _REGISTRY if c is obj)
            raise ValueError(f"no implementation of {obj.__name__} {name!r}; known: {', '.join(known)}")
        return _REGISTRY[key]
    for cls in type(obj).__mro__:
        if (cls, None) in _REGISTRY:
            return _REGISTRY[(cls, None)]
    raise ValueError(f"no runner implementation of {type(obj).__name__}: register one with "
                     "@runners.registry.implements(<its spec class>) (docs/extending.md)")


def _union_members(union) -> list[tuple[type, None]]:
    return [(c, None) for c in typing.get_args(typing.get_args(union)[0])]


def _named(cls: type, field: str = "name") -> list[tuple[type, str]]:
    return [(cls, n) for n in typing.get_args(cls.model_fields[field].annotation)]


def members() -> dict[str, list[tuple[type, str | None]]]:
    """family -> the (spec class, name) members the spec unions define (read at call time,
    so a member added later counts)."""
    return {
        "regime": _union_members(regimes.AnyRegime),
        "path kind": _union_members(paths.AnyPath),
        "dataset": _union_members(data.Data),
        "arch": _union_members(model.Model),
        "distribution": _named(DistributionSpec),
        "optimizer": _named(train.Optimizer),
        "lr schedule": _named(train.LRSchedule),
    }


# the modules holding the implementations (imported by `registered`)
MODULES = ("runners.regimes", "runners.paths", "runners.data", "runners.models", "runners.masks", "runners.optim")


def registered() -> dict[tuple[type, str | None], object]:
    """Every (spec class, name) -> implementation (imports the implementing modules first)."""
    import importlib

    for module in MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def _label(key) -> str:
    cls, name = key
    return cls.__name__ + (f" {name!r}" if name is not None else "")
