"""The training loop for the regimes ``dense``, ``prune`` and ``fixed_mask``.

Conventions (see docs/internals.md for the config):

- t counts optimizer steps taken. At each t = 0..steps, in this order: the pruning
  update due at t (prune regime), ``init.pt`` (t = 0), ``step_t.pt`` if t is in
  ``train.checkpoints``, the evaluation (t = 0, every ``eval_every``, t = steps),
  then the optimizer step t+1 (for t < steps). So "the model at step t" is after t
  optimizer steps and the pruning due at t.
- Seeds, all derived from the job seed:
  model init of dense/prune = ``torch.manual_seed(seed)``;
  model init of fixed_mask with ``init: fresh`` = ``derive_seed(seed, "fresh")``,
  so scratch never shares its init with the prune run of the same seed;
  data order = ``torch.Generator`` seeded with ``derive_seed(seed, "data")``,
  the same for every regime at a seed (a new random permutation each epoch,
  last partial batch kept).
- Masked training: before each optimizer step the gradients of pruned weights are
  zeroed, after it the mask is re-applied, so pruned weights stay exactly 0
  (as +0.0 or -0.0).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from runners import artifacts, data, masks as M, models, schedule
from runners.evaluate import evaluate


def derive_seed(seed: int, purpose: str) -> int:
    """A deterministic seed for ``purpose``, distinct from ``seed`` itself."""
    h = hashlib.sha256(f"studyspec/{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(h[:8], "little") % (2**63 - 1)


def make_optimizer(params, opt_cfg: dict) -> torch.optim.Optimizer:
    name = opt_cfg["name"]
    lr, wd = float(opt_cfg["lr"]), float(opt_cfg.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(opt_cfg.get("momentum", 0.0)),
                               nesterov=bool(opt_cfg.get("nesterov", False)), weight_decay=wd)
    if name == "adam":
        betas = tuple(opt_cfg.get("betas", (0.9, 0.999)))
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; known: adam, sgd")


def lr_at(t: int, base_lr: float, sched_cfg: dict, steps: int) -> float:
    """Learning rate of optimizer step t+1 (t = 0..steps-1): linear warmup over
    ``warmup`` steps, then constant or cosine decay to 0 over the remaining steps."""
    name, warmup = sched_cfg.get("name", "constant"), int(sched_cfg.get("warmup", 0) or 0)
    if t < warmup:
        return base_lr * (t + 1) / warmup
    if name == "constant":
        return base_lr
    if name == "cosine":
        span = max(steps - warmup, 1)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * (t - warmup) / span))
    raise ValueError(f"unknown lr schedule {name!r}; known: constant, cosine")


def _batches(n: int, batch_size: int, gen: torch.Generator):
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            yield perm[i:i + batch_size]


def _load_mask(ref: dict, inputs: dict, model) -> dict:
    """Mask from a reference: ``mask`` (or ``final`` when the run saved mask.pt)
    loads mask.pt; any other state artifact gives its non-zero pattern."""
    if ref["artifact"] in ("mask", "final"):
        p = Path(inputs[ref["job"]]) / artifacts.filename("mask")
        if ref["artifact"] == "mask" or p.exists():
            m = M.load(artifacts.resolve({"job": ref["job"], "artifact": "mask"}, inputs))
            M.check(m, model)
            return m
    return M.nonzero_masks(artifacts.load_state(ref, inputs), model)


def _float_masks(masks: dict, params: dict) -> list:
    return [(params[n], m.to(params[n].dtype)) for n, m in masks.items()]


def train(cfg: dict, run_dir: Path, inputs: dict[str, Path], cache_dir: Path) -> dict:
    run_dir = Path(run_dir)
    seed = int(cfg["seed"])
    tcfg, rcfg = cfg["train"], cfg["regime"]
    regime, steps = rcfg["regime"], int(tcfg["steps"])
    if regime not in ("dense", "prune", "fixed_mask"):
        raise ValueError(f"unknown regime {regime!r}; known: dense, fixed_mask, prune")

    x_tr, y_tr, x_te, y_te = data.load(cfg["data"], cache_dir)
    in_features, n_classes = int(x_tr[0].numel()), int(torch.cat([y_tr, y_te]).max()) + 1

    fresh = regime == "fixed_mask" and rcfg.get("init", "fresh") == "fresh"
    torch.manual_seed(derive_seed(seed, "fresh") if fresh else seed)
    model = models.build(cfg["model"], in_features, n_classes)

    masks = None
    if regime == "fixed_mask":
        if not fresh:
            model.load_state_dict(artifacts.load_state(rcfg["init"], inputs))
        masks = _load_mask(rcfg["mask"], inputs, model)
        M.apply(model, masks)
    elif regime == "prune":
        psched = rcfg["schedule"]
        p_begin, p_end = schedule.step_bounds(psched, steps)
        s_i, s_f = float(psched.get("initial", 0.0)), float(rcfg["sparsity"])
        every, dist = int(psched["every"]), rcfg.get("distribution", "uniform")

    opt = make_optimizer(model.parameters(), tcfg["optimizer"])
    base_lr = float(tcfg["optimizer"]["lr"])
    gen = torch.Generator().manual_seed(derive_seed(seed, "data"))
    batches = _batches(len(y_tr), int(cfg["data"]["batch_size"]), gen)
    eval_every = int(tcfg.get("eval_every", 0) or 0)
    checkpoints = {int(c) for c in tcfg.get("checkpoints", [])}
    params = M.prunable(model)
    # (param, float mask) pairs for the hot loop: mul_ by a 0/1 float mask is ~10x faster
    # than masked_fill_ with a bool mask (the zeros it writes may be -0.0; still == 0).
    keep = None if masks is None else _float_masks(masks, params)

    rec = {k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "sparsity")}
    coord = []
    model.train()
    for t in range(steps + 1):
        if regime == "prune" and schedule.is_update_step(t, p_begin, p_end, every):
            s_t = schedule.cubic_sparsity(t, s_i, s_f, p_begin, p_end)
            masks = M.magnitude_masks(model, M.layer_sparsities(model, s_t, dist))
            M.apply(model, masks)
            keep = _float_masks(masks, params)
        if t == 0:
            artifacts.save_state(model, run_dir / "init.pt")
        if t in checkpoints:
            artifacts.save_state(model, run_dir / artifacts.step_filename(t))
        if t == 0 or t == steps or (eval_every > 0 and t % eval_every == 0):
            coord.append(t)
            for split, (x, y) in (("train", (x_tr, y_tr)), ("test", (x_te, y_te))):
                loss, acc = evaluate(model, x, y)
                rec[f"{split}_loss"].append(loss)
                rec[f"{split}_acc"].append(acc)
            rec["sparsity"].append(M.sparsity(model))
        if t == steps:
            break
        idx = next(batches)
        loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = lr_at(t, base_lr, tcfg["schedule"], steps)
        if keep is not None:
            with torch.no_grad():
                for p, fm in keep:
                    p.grad.mul_(fm)
        opt.step()
        if keep is not None:
            with torch.no_grad():
                for p, fm in keep:
                    p.mul_(fm)

    artifacts.save_state(model, run_dir / "final.pt")
    if regime != "dense":
        M.save(masks if masks is not None else M.ones_masks(model), run_dir / "mask.pt")

    n_prunable = sum(p.numel() for p in params.values())
    scalars = {f"final_{k}": v[-1] for k, v in rec.items()}
    scalars.update(n_params=sum(p.numel() for p in model.parameters()), n_prunable=n_prunable,
                   n_nonzero_prunable=sum(int((p != 0).sum()) for p in params.values()))
    return {"dim": "step", "coord": coord, "vars": rec, "scalars": scalars}
