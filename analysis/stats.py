"""Statistics of a claim across seeds: paired effect, Student t interval, three-way decision, Holm.

Why Student t on the per-seed effects (paired differences): the seeds are independent
replicates of the whole study (init, data order, mask), so the per-seed effect
d_i = metric(a, seed i) - metric(b, seed i) are i.i.d.; pairing removes what the two runs
share at a seed. With the 3-10 seeds a study affords, the t interval is the one whose
coverage holds for roughly normal effects; a percentile bootstrap is shown beside it but
not used to decide, because at n <= 5 it is too narrow (it cannot see beyond the observed
values: at n = 3 its nominal 95% interval covers about 75% of the time).

Decision against a threshold thr (the margin, signed by the claim's direction), with the
interval [lo, hi] at the claim's level:
- side ">" (the effect is claimed above thr): holds if lo > thr, does not hold if hi < thr;
- side "<": holds if hi < thr, does not hold if lo > thr;
- otherwise (the interval straddles thr, or n < 2): undecided.

Several decisions in one study (every claim at every sweep point) are one family: the
Holm step-down procedure controls the chance of any false decision at ALPHA. The p-value of
a decision is the two-sided t test of "effect = thr"; sorted ascending, the k-th (from 0) of
m is decided at level ALPHA / (m - k) until the first one that is not, after which all are
undecided at that level. Each decision's interval is reported at its own corrected level,
so the interval and the decision always agree.

Torch- and scipy-free: the t distribution comes from the regularised incomplete beta function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.05  # family-wise error rate of a study's decisions
HOLDS, FAILS, UNDECIDED, NO_DATA = "holds", "does not hold", "undecided", "no data"


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on the CDF; |error| < 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while 1.0 - t_sf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 1.0 - t_sf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass
class Effect:
    """The per-seed effects of one claim at one sweep point, against its threshold."""

    values: list[float]  # per seed (NaN-free), in seed order
    seeds: list  # their seed coordinates
    threshold: float  # the margin, signed by the direction
    side: str  # ">" or "<": which side of the threshold the claim puts the effect
    n: int = 0
    mean: float = math.nan
    sd: float = math.nan
    ci95: tuple[float, float] = (math.nan, math.nan)  # Student t, uncorrected
    boot95: tuple[float, float] = (math.nan, math.nan)  # percentile bootstrap, shown only
    p: float = 1.0  # two-sided t test of effect = threshold
    level: float = ALPHA  # the corrected level the decision was made at (Holm)
    ci: tuple[float, float] = (math.nan, math.nan)  # the interval at 1 - level
    decision: str = NO_DATA
    extra: dict = field(default_factory=dict)  # claim-specific numbers (e.g. the dip of a low-loss path)

    def __post_init__(self):
        x = np.asarray(self.values, float)
        self.n = len(x)
        if self.n:
            self.mean = float(x.mean())
        if self.n >= 2:
            self.sd = float(x.std(ddof=1))
            if self.sd < 1e-12 * max(1.0, abs(self.mean)):
                self.sd = 0.0  # equal values: no float noise
            self.ci95 = interval(x, ALPHA)
            self.boot95 = bootstrap(x, ALPHA)
            se = self.sd / math.sqrt(self.n)
            if se == 0.0:
                self.p = 1.0 if self.mean == self.threshold else 0.0
            else:
                self.p = min(1.0, 2.0 * t_sf(abs(self.mean - self.threshold) / se, self.n - 1))

    def decide(self, level: float) -> str:
        self.level = level
        if self.n < 2:
            self.decision = NO_DATA if self.n == 0 else UNDECIDED
            return self.decision
        self.ci = interval(np.asarray(self.values, float), level)
        lo, hi = self.ci
        above, below = lo > self.threshold, hi < self.threshold
        if self.side == ">":
            self.decision = HOLDS if above else FAILS if below else UNDECIDED
        else:
            self.decision = HOLDS if below else FAILS if above else UNDECIDED
        return self.decision


def interval(x, level: float) -> tuple[float, float]:
    """Two-sided (1 - level) Student t interval of the mean of x (n >= 2)."""
    x = np.asarray(x, float)
    n = len(x)
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    if sd < 1e-12 * max(1.0, abs(mean)):
        return mean, mean
    half = t_quantile(1.0 - level / 2.0, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def bootstrap(x, level: float, resamples: int = 4000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (fixed generator: same numbers every time)."""
    x = np.asarray(x, float)
    rng = np.random.default_rng(0)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    return float(np.quantile(means, level / 2)), float(np.quantile(means, 1 - level / 2))


def holm(effects: list[Effect], alpha: float = ALPHA) -> list[Effect]:
    """Decide every effect with Holm's step-down correction over the family (those with n >= 2;
    the others are undecided or have no data). Returns the effects, decided in place."""
    family = sorted((e for e in effects if e.n >= 2), key=lambda e: e.p)
    m = len(family)
    stopped = None
    for k, e in enumerate(family):
        level = alpha / (m - k) if stopped is None else stopped
        if stopped is None and e.p > level:
            stopped = level  # the first one not decided: it and all after it are judged at this level
        e.decide(level)
        if stopped is not None:  # its interval straddles the threshold already; rounding aside
            e.decision = UNDECIDED
    for e in effects:
        if e.n < 2:
            e.decide(alpha)
    return effects
