"""THE mask module: which weights are prunable, layer-wise sparsity distributions,
magnitude masks, applying masks, measuring sparsity, saving/loading masks.

A mask is a ``dict[param_name, bool tensor]`` (True = kept) with one entry per
prunable parameter. Prunable = the ``weight`` of every nn.Linear / nn.Conv1d/2d/3d;
biases and normalisation parameters are never pruned and never counted.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from runners.artifacts import atomic_save

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """Prunable parameters by name, in module order."""
    out = {}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, PRUNABLE_TYPES):
            out[f"{mod_name}.weight" if mod_name else "weight"] = mod.weight
    return out


# --- layer-wise sparsity distributions -----------------------------------------
# Each takes {name: shape} and the overall target sparsity, returns {name: sparsity}.

def _uniform(shapes: dict[str, tuple], sparsity: float) -> dict[str, float]:
    return {name: float(sparsity) for name in shapes}


def _erk_like(shapes: dict[str, tuple], sparsity: float, dims) -> dict[str, float]:
    """Density of a layer proportional to sum(dims)/prod(dims), scaled so that the
    total number of kept weights matches ``sparsity``; layers that would exceed
    density 1 are made dense and the rest rescaled (as in google-research/rigl)."""
    dense: set[str] = set()
    while True:
        rhs, divisor, raw = 0.0, 0.0, {}
        for name, shape in shapes.items():
            n = math.prod(shape)
            if name in dense:
                rhs -= n * sparsity
            else:
                rhs += n * (1.0 - sparsity)
                d = dims(shape)
                raw[name] = sum(d) / math.prod(d)
                divisor += raw[name] * n
        eps = rhs / divisor
        max_raw = max(raw.values())
        if max_raw * eps > 1.0:
            dense |= {k for k, v in raw.items() if v == max_raw}
            continue
        return {name: (0.0 if name in dense else 1.0 - eps * raw[name]) for name in shapes}


def _erk(shapes, sparsity):
    return _erk_like(shapes, sparsity, lambda s: tuple(s))


def _erdos_renyi(shapes, sparsity):
    return _erk_like(shapes, sparsity, lambda s: tuple(s[:2]))


DISTRIBUTIONS = {"uniform": _uniform, "erk": _erk, "erdos_renyi": _erdos_renyi}


def layer_sparsities(model: nn.Module, sparsity: float, distribution: str = "uniform") -> dict[str, float]:
    """Per-layer sparsity for an overall target ``sparsity`` of the prunable weights."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown sparsity distribution {distribution!r}; known: {sorted(DISTRIBUTIONS)}")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    shapes = {n: tuple(p.shape) for n, p in prunable(model).items()}
    return DISTRIBUTIONS[distribution](shapes, float(sparsity))


# --- masks ------------------------------------------------------------------------

def n_keep(n: int, sparsity: float) -> int:
    """Exact number of weights kept in a layer of ``n`` weights: round(density * n)."""
    return int(round((1.0 - sparsity) * n))


@torch.no_grad()
def magnitude_masks(model: nn.Module, sparsities: dict[str, float]) -> dict[str, torch.Tensor]:
    """Keep the ``n_keep`` largest-|w| weights of each layer (ties: lower flat index wins)."""
    params = prunable(model)
    masks = {}
    for name, s in sparsities.items():
        w = params[name].detach()
        k = n_keep(w.numel(), s)
        order = torch.argsort(w.abs().flatten(), descending=True, stable=True)
        m = torch.zeros(w.numel(), dtype=torch.bool)
        m[order[:k]] = True
        masks[name] = m.view_as(w)
    return masks


def ones_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable(model).items()}


def nonzero_masks(state_dict: dict, model: nn.Module) -> dict[str, torch.Tensor]:
    """The mask implied by a state dict: True where a prunable weight is non-zero."""
    return {n: state_dict[n] != 0 for n in prunable(model)}


@torch.no_grad()
def apply(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Set the weights outside the mask to exactly +0.0, in place."""
    params = prunable(model)
    for name, m in masks.items():
        params[name].masked_fill_(~m, 0.0)


@torch.no_grad()
def sparsity(model: nn.Module, masks: dict[str, torch.Tensor] | None = None) -> float:
    """Fraction of zeros among the prunable weights of ``model``; with ``masks``,
    the fraction of prunable positions outside the masks instead."""
    if masks is not None:
        total = sum(m.numel() for m in masks.values())
        return float(sum(int((~m).sum()) for m in masks.values()) / total)
    params = prunable(model).values()
    total = sum(p.numel() for p in params)
    return float(sum(int((p == 0).sum()) for p in params) / total)


def save(masks: dict[str, torch.Tensor], path: Path) -> None:
    atomic_save({k: v.to(torch.bool).contiguous() for k, v in masks.items()}, path)


def load(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.to(torch.bool) for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}


def check(masks: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Raise ValueError unless ``masks`` covers exactly the prunable weights with matching shapes."""
    params = prunable(model)
    if set(masks) != set(params):
        raise ValueError(f"mask names {sorted(masks)} do not match the model's prunable weights {sorted(params)}")
    for n, m in masks.items():
        if tuple(m.shape) != tuple(params[n].shape):
            raise ValueError(f"mask {n} has shape {tuple(m.shape)}, weight has {tuple(params[n].shape)}")
