"""THE path-query module: evaluate the training/test loss along a path in weight space.

A path kind maps a path parameter t to coefficients over its points
(endpoints and, for curves, control points): ``theta(t) = sum_i c_i(t) * theta_i``
(as in dnn-mode-connectivity's curves.py). Implemented queries: ``linear``
(points = [from, to], c(t) = [1-t, t], extrapolation allowed). ``Bezier`` gives the
coefficients for curves; training its control points is not implemented yet.

Scalars, computed on the part of the grid with t in [0, 1] plus the endpoints
(extrapolated points are reported in ``vars`` but do not count):
- ``barrier``: max train_loss on [0, 1] minus max(train_loss(0), train_loss(1));
  the endpoints are the grid points at t=0 and t=1 when the grid has them
  (snapped to exactly 0/1), else evaluated separately.
- ``monotone``: 1 if train_loss never rises by more than MONOTONE_TOL from one
  point to the next on [0, 1], else 0.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from runners import artifacts, data, models
from runners.evaluate import evaluate

MONOTONE_TOL = 1e-4
_SNAP = 1e-9


class Linear:
    n_points = 2

    def coeffs(self, t: float) -> list[float]:
        return [1.0 - t, t]


class Bezier:
    """Bernstein coefficients of degree ``degree`` (degree + 1 points, endpoints first/last)."""

    def __init__(self, degree: int):
        self.degree = int(degree)
        self.n_points = self.degree + 1

    def coeffs(self, t: float) -> list[float]:
        k = self.degree
        return [math.comb(k, i) * t**i * (1.0 - t) ** (k - i) for i in range(k + 1)]


def combine(states: list[dict], coeffs: list[float]) -> dict:
    """sum_i coeffs[i] * states[i] for float tensors; other entries from the first state.
    A coefficient of exactly 0 drops its term, so t=0 / t=1 reproduce the endpoints bit for bit."""
    out = {}
    for k, v0 in states[0].items():
        if not torch.is_floating_point(v0):
            out[k] = v0.clone()
            continue
        acc = None
        for s, c in zip(states, coeffs):
            if c == 0.0:
                continue
            term = s[k] if c == 1.0 else c * s[k]
            acc = term.clone() if acc is None else acc + term
        out[k] = acc if acc is not None else torch.zeros_like(v0)
    return out


def grid(points: int, lo: float, hi: float) -> list[float]:
    ts = np.linspace(float(lo), float(hi), int(points)).tolist()
    return [0.0 if abs(t) < _SNAP else 1.0 if abs(t - 1.0) < _SNAP else float(t) for t in ts]


def summarize(ts: list[float], train_loss: list[float], endpoint_loss=None) -> dict:
    """barrier and monotone of a loss curve. ``endpoint_loss(t)`` evaluates t=0 or t=1
    when the grid lacks it."""
    pts = {t: l for t, l in zip(ts, train_loss) if 0.0 <= t <= 1.0}
    for t in (0.0, 1.0):
        if t not in pts:
            if endpoint_loss is None:
                raise ValueError(f"grid lacks t={t} and no endpoint evaluator was given")
            pts[t] = endpoint_loss(t)
    seq = [pts[t] for t in sorted(pts)]
    barrier = max(seq) - max(pts[0.0], pts[1.0])
    monotone = int(all(b - a <= MONOTONE_TOL for a, b in zip(seq, seq[1:])))
    return {"barrier": float(barrier), "monotone": monotone,
            "train_loss_from": float(pts[0.0]), "train_loss_to": float(pts[1.0])}


def run_path(cfg: dict, run_dir: Path, inputs: dict[str, Path], cache_dir: Path) -> dict:
    pcfg = cfg["path"]
    kind = pcfg["kind"]
    if kind != "linear":
        raise ValueError(f"path kind {kind!r} is not implemented; known: linear")
    curve = Linear()
    states = [artifacts.load_state(pcfg["from"], inputs), artifacts.load_state(pcfg["to"], inputs)]

    x_tr, y_tr, x_te, y_te = data.load(cfg["data"], cache_dir)
    in_features, n_classes = int(x_tr[0].numel()), int(torch.cat([y_tr, y_te]).max()) + 1
    torch.manual_seed(int(cfg.get("seed", 0)))
    model = models.build(cfg["model"], in_features, n_classes)

    def at(t: float):
        model.load_state_dict(combine(states, curve.coeffs(t)))
        return evaluate(model, x_tr, y_tr), evaluate(model, x_te, y_te)

    lo, hi = pcfg.get("range", [0.0, 1.0])
    ts = grid(pcfg.get("points", 29), lo, hi)
    rec = {k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    for t in ts:
        (trl, tra), (tel, tea) = at(t)
        rec["train_loss"].append(trl); rec["train_acc"].append(tra)
        rec["test_loss"].append(tel); rec["test_acc"].append(tea)
    scalars = summarize(ts, rec["train_loss"], endpoint_loss=lambda t: at(t)[0][0])
    return {"dim": "t", "coord": ts, "vars": rec, "scalars": scalars}
