"""Resume checkpoints of a train job: ``resume.pt`` in the run directory.

Written atomically (temp file + os.replace, runners.artifacts.atomic_save) every
``train.checkpoint_every`` steps; it holds everything the rest of the run depends on:
model and optimizer state, mask, the data-order sampler (generator state, current
permutation, position), the global torch RNG state (and CUDA's), the regime's own state
(imp round, SET generator...), the step and the metrics so far. A run directory holding
a resume.pt of the same config resumes from it; the result is bit-identical to an
uninterrupted run. The file is removed once final.pt is written.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from runners import artifacts, distributed
from studyspec.store import current_name

FILE = "resume.pt"


def fingerprint(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def save(run_dir: Path, cfg: dict, g: int, ctx, sampler, regime, rec: dict, coord: list) -> None:
    payload = {
        "config": fingerprint(cfg), "step": int(g),
        "model": {k: v.detach().clone() for k, v in ctx.model.state_dict().items()},
        "optimizer": ctx.opt.state_dict(),
        "masks": None if ctx.masks is None else {k: v.clone() for k, v in ctx.masks.items()},
        "sampler": sampler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "regime": regime.state_dict(),
        "rec": {k: list(v) for k, v in rec.items()}, "coord": list(coord),
    }
    if getattr(ctx, "precision", None) is not None and ctx.precision.state_dict():
        payload["precision"] = ctx.precision.state_dict()  # fp16: the gradient scaler
    artifacts.atomic_save(payload, Path(run_dir) / FILE)


def load(run_dir: Path, cfg: dict) -> dict | None:
    """The resume checkpoint of this run directory, or None (absent, or of another config)."""
    path = Path(run_dir) / FILE
    state = artifacts.load_resume(path)
    if state is None or state.get("config") != fingerprint(cfg):
        return None
    return state


def restore(state: dict, ctx, sampler, regime) -> tuple[int, dict, list]:
    """Put a loaded checkpoint back; returns (step, metrics, coord)."""
    ctx.model.load_state_dict(state["model"])
    regime.load_state_dict(state["regime"])
    if state["masks"] is not None:
        ctx.masks = {k: v.to(ctx.device) for k, v in state["masks"].items()}
    ctx.new_optimizer()
    ctx.opt.load_state_dict(state["optimizer"])
    sampler.load_state_dict(state["sampler"])
    if state.get("precision") and getattr(ctx, "precision", None) is not None:
        ctx.precision.load_state_dict(state["precision"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    rec = {current_name(k): list(v) for k, v in state["rec"].items()}  # a checkpoint of older names
    return int(state["step"]), rec, list(state["coord"])


def remove(run_dir: Path) -> None:
    if distributed.is_main():
        (Path(run_dir) / FILE).unlink(missing_ok=True)
