"""Optimizers and learning-rate schedules of a train job (config: docs/internals.md)."""
from __future__ import annotations

import math

import torch


def make_optimizer(params, opt_cfg: dict) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov; weight decay as L2), Adam (L2) or AdamW (decoupled decay)."""
    name = opt_cfg["name"]
    lr, wd = float(opt_cfg["lr"]), float(opt_cfg.get("weight_decay", 0.0))
    if opt_cfg.get("weight_decay_on", "all") == "weights":  # no decay on BatchNorm parameters and biases
        params = list(params)
        params = [{"params": [p for p in params if p.dim() >= 2]},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(opt_cfg.get("momentum", 0.0)),
                               nesterov=bool(opt_cfg.get("nesterov", False)), weight_decay=wd)
    betas = tuple(float(b) for b in opt_cfg.get("betas", (0.9, 0.999)))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; known: adam, adamw, sgd")


def milestone_steps(milestones, steps: int) -> list[int]:
    """Milestones < 1 are fractions of ``steps`` (rounded), others are step numbers."""
    return [int(round(float(m) * steps)) if float(m) < 1.0 else int(m) for m in milestones]


def lr_at(t: int, base_lr: float, sched_cfg: dict, steps: int) -> float:
    """Learning rate of optimizer step t+1 (t = 0..steps-1): linear warm-up over
    ``warmup`` steps (lr * (t+1)/warmup), then
    constant: lr; multistep: lr * gamma**(number of milestones <= t);
    cosine: lr * (1 + cos(pi * (t - warmup) / (steps - warmup))) / 2, reaching 0 at the end."""
    name, warmup = sched_cfg.get("name", "constant"), int(sched_cfg.get("warmup", 0) or 0)
    if t < warmup:
        return base_lr * (t + 1) / warmup
    if name == "constant":
        return base_lr
    if name == "multistep":
        passed = sum(1 for m in milestone_steps(sched_cfg.get("milestones", []), steps) if t >= m)
        return base_lr * float(sched_cfg.get("gamma", 0.1)) ** passed
    if name == "cosine":
        span = max(steps - warmup, 1)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * (t - warmup) / span))
    raise ValueError(f"unknown lr schedule {name!r}; known: constant, cosine, multistep")


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def reset_state(opt: torch.optim.Optimizer, param: torch.Tensor, keep: torch.Tensor) -> None:
    """Zero the optimizer state (momentum, Adam moments) of ``param`` outside the bool mask
    ``keep``; scalar state (Adam's step count) is left alone."""
    state = opt.state.get(param)
    if not state:
        return
    with torch.no_grad():
        for v in state.values():
            if torch.is_tensor(v) and v.shape == param.shape:
                v.masked_fill_(~keep, 0.0)
