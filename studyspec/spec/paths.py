"""Path queries between trained solutions, told apart by `kind:`."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from .base import Ref, Strict


class PathQuery(Strict):
    ref_fields: ClassVar[tuple[str, ...]] = ("from_", "to")
    from_: Ref = Field(alias="from", description="start, e.g. scratch.init")
    to: Ref = Field(description="end, e.g. prune.final")

    def refs(self) -> dict[str, str]:
        return {"from": self.from_, "to": self.to}


class Linear(PathQuery):
    """theta(a) = (1 - a) * from + a * to on an evenly spaced grid of a."""

    kind: Literal["linear"]
    points: int = Field(29, ge=2, description="grid points")
    range: tuple[float, float] = Field((0.0, 1.0), description="[first a, last a]; may extrapolate")

    @model_validator(mode="after")
    def _order(self):
        if self.range[1] <= self.range[0]:
            raise ValueError(f"range must increase, got {list(self.range)}")
        return self


AnyPath = Annotated[Union[Linear], Field(discriminator="kind")]
