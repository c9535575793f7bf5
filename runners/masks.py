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
from runners.registry import implements, lookup
from studyspec.spec.distribution import NAMES, DistributionSpec

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """Prunable parameters by name, in module order."""
    out = {}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, PRUNABLE_TYPES):
            out[f"{mod_name}.weight" if mod_name else "weight"] = mod.weight
    return out


# --- layer-wise sparsity distributions -----------------------------------------
# A distribution is a name ("uniform", "erk", "erdos_renyi") or a DistributionSpec
# (name, dense_layers: ["first", "last"], layers: {name or fnmatch pattern: sparsity};
# studyspec/spec/distribution.py; a plain dict is validated into one). Layers named by `dense_layers` / `layers` are held at
# their sparsity; the other ("free") layers share the rest of the budget so that the total
# number of pruned weights is still ``sparsity * N`` (N = all prunable weights):
#     s_free = (sparsity * N - sum_fixed s_l * n_l) / N_free,
# then the named rule spreads s_free over the free layers. With dense layers this is
# exactly RigL's ERK equation (its `rhs -= n * sparsity` term); unlike RigL, custom
# per-layer sparsities are compensated too, so the global target always holds.
# Each rule takes {name: shape} and a target sparsity, returns {name: sparsity}.

@implements(DistributionSpec, "uniform")
def _uniform(shapes: dict[str, tuple], sparsity: float) -> dict[str, float]:
    return {name: float(sparsity) for name in shapes}


def _erk_like(shapes: dict[str, tuple], sparsity: float, dims) -> dict[str, float]:
    """Density of a layer proportional to sum(dims)/prod(dims), scaled so that the
    total number of kept weights matches ``sparsity``; layers whose density would
    exceed 1 are made dense and the rest rescaled, as in google-research/rigl
    (sparse_utils.get_sparsities_erdos_renyi, erk_power_scale=1):
        eps * sum_{l not dense} raw_l * n_l = sum_{l not dense} n_l (1 - s) - sum_{l dense} n_l s,
        density_l = eps * raw_l."""
    if sparsity <= 0.0:
        return {name: 0.0 for name in shapes}
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
        if not raw:  # every layer dense: only possible at (numerically) zero sparsity
            return {name: 0.0 for name in shapes}
        eps = rhs / divisor
        max_raw = max(raw.values())
        if max_raw * eps > 1.0:
            dense |= {k for k, v in raw.items() if v == max_raw}
            continue
        return {name: (0.0 if name in dense else 1.0 - eps * raw[name]) for name in shapes}


@implements(DistributionSpec, "erk")
def _erk(shapes, sparsity):
    return _erk_like(shapes, sparsity, lambda s: tuple(s))


@implements(DistributionSpec, "erdos_renyi")
def _erdos_renyi(shapes, sparsity):
    # out and in channels only (torch conv weights are out x in x k...), as RigL's
    # non-kernel Erdos-Renyi does with the last two dims of a TF kernel.
    return _erk_like(shapes, sparsity, lambda s: tuple(s[:2]))


def parse_distribution(distribution) -> tuple[str, list[str], dict[str, float]]:
    """(name, dense_layers, layers) of a distribution: a name, a DistributionSpec, or a
    dict (validated into one: the spec's defaults, its errors)."""
    if isinstance(distribution, str):
        if distribution not in NAMES:
            raise ValueError(f"unknown sparsity distribution {distribution!r}; known: {sorted(NAMES)}")
        return distribution, [], {}
    if isinstance(distribution, dict):
        distribution = DistributionSpec.model_validate(distribution)
    if not isinstance(distribution, DistributionSpec):
        raise ValueError(f"a distribution is a name or a dict, got {distribution!r}")
    return distribution.name, list(distribution.dense_layers), {str(k): float(v) for k, v in distribution.layers.items()}


def fixed_sparsities(names: list[str], dense_layers: list[str], layers: dict[str, float]) -> dict[str, float]:
    """The layers a distribution holds at a given sparsity: ``dense_layers`` at 0, then the
    ``layers`` overrides (an exact name first, else every name the fnmatch pattern matches)."""
    import fnmatch

    fixed: dict[str, float] = {}
    for which in dense_layers:
        fixed[names[0] if which == "first" else names[-1]] = 0.0
    for pattern, s in layers.items():
        hits = [pattern] if pattern in names else fnmatch.filter(names, pattern)
        if not hits:
            raise ValueError(f"distribution layers: {pattern!r} matches no prunable weight; "
                             f"prunable weights: {', '.join(names)}")
        for name in hits:
            if name in fixed and fixed[name] != s:
                raise ValueError(f"distribution: {name} is given two sparsities ({fixed[name]} and {s}) "
                                 "by dense_layers / layers")
            fixed[name] = float(s)
    return fixed


def sparsities_for_shapes(shapes: dict[str, tuple], sparsity: float, distribution="uniform") -> dict[str, float]:
    """Per-layer sparsity (in the order of ``shapes``) for an overall target ``sparsity``
    of all the weights in ``shapes``; see the comment at the top of this section."""
    name, dense, layers = parse_distribution(distribution)
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    sparsity = float(sparsity)
    fixed = fixed_sparsities(list(shapes), dense, layers)
    free = {n: s for n, s in shapes.items() if n not in fixed}
    if not fixed:
        return lookup(DistributionSpec, name)(shapes, sparsity)
    n_total = sum(math.prod(s) for s in shapes.values())
    n_free = sum(math.prod(s) for s in free.values())
    zeros_fixed = sum(fixed[n] * math.prod(shapes[n]) for n in fixed)
    s_free = (sparsity * n_total - zeros_fixed) / n_free if n_free else 0.0
    if s_free > 1.0 + 1e-12:
        held = ", ".join(f"{n} at {fixed[n]:g}" for n in fixed)
        raise ValueError(f"sparsity {sparsity:g} is out of reach with {held}: the other layers would "
                         f"need sparsity {s_free:.4f} > 1")
    # below 0: the fixed layers alone prune more than the target (e.g. early in gradual
    # pruning with a high override): the free layers stay dense
    s_free = min(max(s_free, 0.0), 1.0)
    out = dict(fixed)
    out.update(lookup(DistributionSpec, name)(free, s_free) if free else {})
    return {n: out[n] for n in shapes}


def layer_sparsities(model: nn.Module, sparsity: float, distribution="uniform") -> dict[str, float]:
    """Per-layer sparsity for an overall target ``sparsity`` of the prunable weights.
    ``distribution``: a name or a dict (see the comment at the top of this section)."""
    shapes = {n: tuple(p.shape) for n, p in prunable(model).items()}
    return sparsities_for_shapes(shapes, sparsity, distribution)


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
    """A mask file ({param name: bool tensor}); ValueError naming the file if it is not one."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- garbage, truncated, not a torch file
        raise ValueError(f"{path} is not a mask file studyspec wrote ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"{path} is not a mask file studyspec wrote (not a mapping of names to tensors)")
    return {k: v.to(torch.bool) for k, v in obj.items()}


def check(masks: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Raise ValueError unless ``masks`` covers exactly the prunable weights with matching shapes."""
    params = prunable(model)
    if set(masks) != set(params):
        raise ValueError(f"mask names {sorted(masks)} do not match the model's prunable weights {sorted(params)}")
    for n, m in masks.items():
        if tuple(m.shape) != tuple(params[n].shape):
            raise ValueError(f"mask {n} has shape {tuple(m.shape)}, weight has {tuple(params[n].shape)}")


# --- scored masks, random masks, dynamic updates (used by prune, imp, fixed_mask, rigl, set) ---

def _keep_top(score: torch.Tensor, k: int) -> torch.Tensor:
    """Bool tensor shaped like ``score`` with its ``k`` largest entries True (ties: lower flat index)."""
    order = torch.argsort(score.flatten(), descending=True, stable=True)
    m = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    m[order[:k]] = True
    return m.view_as(score)


@torch.no_grad()
def magnitude_scores(model: nn.Module, within: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """|w| of each prunable weight; -1 outside ``within`` (so pruned weights are never kept first)."""
    out = {}
    for name, p in prunable(model).items():
        s = p.detach().abs().float()
        out[name] = s if within is None else torch.where(within[name], s, torch.full_like(s, -1.0))
    return out


@torch.no_grad()
def scored_masks(scores: dict[str, torch.Tensor], sparsities: dict[str, float]) -> dict[str, torch.Tensor]:
    """Per layer: keep the ``n_keep`` highest-scoring weights."""
    return {name: _keep_top(scores[name], n_keep(scores[name].numel(), s)) for name, s in sparsities.items()}


@torch.no_grad()
def global_scored_masks(scores: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Across all prunable weights: keep the ``n_keep(total)`` highest scores (layers may end up
    with different sparsities)."""
    names = list(scores)
    flat = torch.cat([scores[n].flatten() for n in names])
    kept = _keep_top(flat, n_keep(flat.numel(), sparsity))
    out, i = {}, 0
    for n in names:
        k = scores[n].numel()
        out[n] = kept[i:i + k].view_as(scores[n])
        i += k
    return out


def random_masks(model: nn.Module, sparsities: dict[str, float], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Per layer: ``n_keep`` positions drawn uniformly at random (``gen`` is a CPU generator)."""
    params = prunable(model)
    out = {}
    for name, s in sparsities.items():
        p = params[name]
        perm = torch.randperm(p.numel(), generator=gen)
        m = torch.zeros(p.numel(), dtype=torch.bool)
        m[perm[:n_keep(p.numel(), s)]] = True
        out[name] = m.view(p.shape).to(p.device)
    return out


def shuffle_masks(masks: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Each layer's mask permuted at random: the same number kept per layer, positions random."""
    out = {}
    for name, m in masks.items():
        perm = torch.randperm(m.numel(), generator=gen).to(m.device)
        out[name] = m.flatten()[perm].view_as(m)
    return out


@torch.no_grad()
def drop_grow(mask: torch.Tensor, weight: torch.Tensor, n: int, grow_score: torch.Tensor) -> torch.Tensor:
    """Dynamic sparse update of one layer: drop the ``n`` active weights of smallest |w|, then
    grow the ``n`` inactive positions (just-dropped ones included) of largest ``grow_score``
    (>= 0). The number of active weights is unchanged."""
    active = int(mask.sum())
    n = max(0, min(int(n), active))
    if n == 0:
        return mask.clone()
    minus = torch.full_like(weight, -1.0, dtype=torch.float32)
    after_drop = _keep_top(torch.where(mask, weight.abs().float(), minus), active - n)
    grown = _keep_top(torch.where(after_drop, minus, grow_score.float()), n)
    return after_drop | grown
