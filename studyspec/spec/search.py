"""Random search in the sweep: `sweep: {random: {n: 20, seed: 0, axes: {AXIS: DISTRIBUTION}}}`.

The samples are drawn by hashing (seed, axis, sample index) with SHA-256, not with a random
number generator, so the same spec gives the same points (and job ids) on any machine and
with any numpy or Python version; adding an axis leaves the other axes' samples unchanged,
and raising `n` keeps the first samples. Continuous draws are rounded to 6 significant digits.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Union

from pydantic import Field, model_validator

from .base import Strict

Scalar = Union[bool, int, float, str]
KINDS = ("uniform", "loguniform", "randint", "choice")


class Distribution(Strict):
    """One of: `{uniform: [lo, hi]}`, `{loguniform: [lo, hi]}` (lo > 0), `{randint: [lo, hi]}`
    (integers, both ends included), `{choice: [a, b, ...]}`."""

    uniform: tuple[float, float] | None = Field(None, description="a float drawn evenly from [lo, hi]")
    loguniform: tuple[float, float] | None = Field(
        None, description="a float drawn evenly in log scale from [lo, hi], 0 < lo")
    randint: tuple[int, int] | None = Field(None, description="an integer from lo to hi, both included")
    choice: list[Union[Scalar, list[Scalar]]] | None = Field(
        None, min_length=1, description="one of the values (a list too, e.g. [[300, 100], [100]]), each as likely")

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data):
        if isinstance(data, dict):
            for key in data:
                if key not in KINDS:
                    from ..errors import closest

                    guess = closest(key, KINDS)
                    raise ValueError(f"unknown distribution {key!r}" + (f" (did you mean {guess!r}?)" if guess else "")
                                     + f"; expected one of {', '.join(KINDS)}")
        return data

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one distribution: {uniform: [lo, hi]}, {loguniform: [lo, hi]}, "
                             "{randint: [lo, hi]} or {choice: [a, b, ...]}"
                             + (f" (got {', '.join(given)})" if given else ""))
        lo_hi = self.uniform or self.loguniform or self.randint
        if lo_hi is not None:
            lo, hi = lo_hi
            if not (lo < hi or (self.randint is not None and lo == hi)):
                raise ValueError(f"{given[0]}: [lo, hi] needs lo < hi, got [{lo}, {hi}]")
            if self.loguniform is not None and lo <= 0:
                raise ValueError(f"loguniform: [lo, hi] needs 0 < lo, got lo = {lo}")
            if not all(math.isfinite(x) for x in lo_hi):
                raise ValueError(f"{given[0]}: bounds must be finite numbers")
        return self

    def draw(self, u: float):
        """The value at quantile u in [0, 1)."""
        if self.choice is not None:
            return self.choice[min(int(u * len(self.choice)), len(self.choice) - 1)]
        if self.randint is not None:
            lo, hi = self.randint
            return min(lo + int(u * (hi - lo + 1)), hi)
        if self.uniform is not None:
            lo, hi = self.uniform
            x = lo + u * (hi - lo)
        else:
            lo, hi = self.loguniform
            x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        return min(max(float(f"{x:.6g}"), lo), hi)


class RandomSearch(Strict):
    """`n` points drawn from a distribution per axis: one dimension `sample` of the results
    (coordinates 0..n-1; the drawn values ride along as coordinates named like the axes)."""

    n: Annotated[int, Field(ge=1, le=10**7)] = Field(description="number of random points")
    seed: int = Field(0, ge=0, description="seed of the draws (not the training seed)")
    axes: dict[str, Distribution] = Field(
        min_length=1, description="spec field -> distribution, e.g. {train.optimizer.lr: {loguniform: [1.0e-3, 1]}}")


def quantile(seed: int, axis: str, index: int) -> float:
    """A number in [0, 1) fixed by (seed, axis, index): the first 8 bytes of a SHA-256."""
    digest = hashlib.sha256(f"studyspec-random/{seed}/{axis}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def samples(search: RandomSearch) -> list[tuple]:
    """The n points, each a tuple of one value per axis (in the order of `axes`)."""
    return [tuple(d.draw(quantile(search.seed, axis, i)) for axis, d in search.axes.items())
            for i in range(search.n)]
