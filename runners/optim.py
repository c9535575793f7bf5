"""Optimizers and learning-rate schedules of a train job (spec: studyspec.spec.train
Optimizer and LRSchedule; each name's implementation registers against it)."""
from __future__ import annotations

import math

import torch

from runners.registry import implements, lookup
from studyspec.spec.train import LRSchedule, Optimizer


@implements(Optimizer, "sgd")
def _sgd(params, opt: Optimizer) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov; weight decay as L2)."""
    return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov,
                           weight_decay=opt.weight_decay)


@implements(Optimizer, "adam")
def _adam(params, opt: Optimizer) -> torch.optim.Optimizer:
    """Adam (weight decay as L2)."""
    return torch.optim.Adam(params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)


@implements(Optimizer, "adamw")
def _adamw(params, opt: Optimizer) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay)."""
    return torch.optim.AdamW(params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)


def make_optimizer(params, opt: Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer of the spec's ``optimizer`` section (``weight_decay_on: weights``:
    no decay on BatchNorm parameters and biases, the tensors of fewer than 2 dims)."""
    if opt.weight_decay_on == "weights":
        params = list(params)
        params = [{"params": [p for p in params if p.dim() >= 2]},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return lookup(Optimizer, opt.name)(params, opt)


def milestone_steps(milestones, steps: int) -> list[int]:
    """Milestones < 1 are fractions of ``steps`` (rounded), others are step numbers."""
    return [int(round(float(m) * steps)) if float(m) < 1.0 else int(m) for m in milestones]


@implements(LRSchedule, "constant")
def _constant(t: int, base_lr: float, sched: LRSchedule, steps: int) -> float:
    return base_lr


@implements(LRSchedule, "multistep")
def _multistep(t: int, base_lr: float, sched: LRSchedule, steps: int) -> float:
    passed = sum(1 for m in milestone_steps(sched.milestones, steps) if t >= m)
    return base_lr * sched.gamma ** passed


@implements(LRSchedule, "cosine")
def _cosine(t: int, base_lr: float, sched: LRSchedule, steps: int) -> float:
    span = max(steps - sched.warmup, 1)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (t - sched.warmup) / span))


def lr_at(t: int, base_lr: float, sched: LRSchedule, steps: int) -> float:
    """Learning rate of optimizer step t+1 (t = 0..steps-1): linear warm-up over
    ``warmup`` steps (lr * (t+1)/warmup), then
    constant: lr; multistep: lr * gamma**(number of milestones <= t);
    cosine: lr * (1 + cos(pi * (t - warmup) / (steps - warmup))) / 2, reaching 0 at the end."""
    if t < sched.warmup:
        return base_lr * (t + 1) / sched.warmup
    return lookup(LRSchedule, sched.name)(t, base_lr, sched, steps)


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
