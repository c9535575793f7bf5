"""Layer-wise sparsity distributions: how a global sparsity is spread over the prunable layers.

Spelling in a spec, short or long::

    distribution: erk                              # a name: uniform, erk, erdos_renyi
    distribution: {name: uniform, dense_layers: [first]}
    distribution: {name: erk, layers: {"fc.weight": 0.5, "layer1.*": 0.8}}

- ``dense_layers``: keep the first and/or last prunable layer (module order) dense.
- ``layers``: per-layer sparsity overrides; keys are parameter names or shell
  patterns (fnmatch) over them; a key matching no prunable weight fails the job.
- The other layers share what is left, so that the total number of kept prunable
  weights still matches the study's sparsity (to one weight per layer); a target that
  the fixed layers make impossible fails the job with a message.

The long form with nothing but a name is stored as the short form, so
``{name: erk}`` and ``erk`` are the same job (the same id). The runner side is
``runners.masks.layer_sparsities``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, Tag

from .base import Strict

NAMES = ("uniform", "erk", "erdos_renyi")
DistributionName = Literal["uniform", "erk", "erdos_renyi"]


class DistributionSpec(Strict):
    """A named distribution with layers held at a given sparsity."""

    name: DistributionName = Field("uniform", description="uniform, erk or erdos_renyi")
    dense_layers: list[Literal["first", "last"]] = Field(
        [], description="keep the first and/or last prunable layer dense")
    layers: dict[str, Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        {}, description="parameter name (or fnmatch pattern) -> sparsity of that layer")


def _tag(value: Any) -> str:
    return "spec" if isinstance(value, dict) or isinstance(value, DistributionSpec) else "name"


def _canonical(value):
    """A long form that only names a distribution becomes its name (one id per job)."""
    if isinstance(value, DistributionSpec) and not value.dense_layers and not value.layers:
        return value.name
    return value


Distribution = Annotated[
    Union[Annotated[DistributionName, Tag("name")], Annotated[DistributionSpec, Tag("spec")]],
    Discriminator(_tag),
    AfterValidator(_canonical),
]
