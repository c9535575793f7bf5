"""Mixed precision and memory layout of a training job (``train.precision``, ``train.channels_last``).

- fp32 (default): nothing changes; the loop is exactly the one without this module.
- bf16 / fp16: the training forward pass and loss run under ``torch.autocast`` with that
  dtype; the weights, their gradients, the optimizer state and the masks stay fp32 (master
  weights), so pruning decisions, mask application, checkpoints and path interpolation
  all see fp32 tensors. Evaluations (losses, accuracies, grad_norm in the shard) run in
  fp32, so recorded numbers are comparable across precisions.
- fp16 adds a gradient scaler (``torch.amp.GradScaler``): the loss is scaled before
  backward and the gradients unscaled right after, before anything else (the mask, RigL's
  gradient-based growth, the all-reduce) sees them; a step whose gradients overflowed is
  skipped by the scaler, as usual. Its state is part of the resume checkpoint.
- channels_last: conv nets on images (4-D inputs) get the channels-last memory format
  for the model and each training batch; other models and inputs are left as they are.
- On CUDA, ``cudnn.benchmark`` is switched on (the fastest convolution algorithms for the
  fixed input shapes; numbers on a GPU then agree within float noise, not bit for bit).
"""
from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    def __init__(self, train, device: torch.device):
        """``train``: the job's train section (studyspec.spec.train.Train)."""
        self.name = train.precision
        if self.name not in ("fp32", *DTYPES):
            raise ValueError(f"train.precision: unknown {self.name!r} (fp32, bf16 or fp16)")
        self.device = torch.device(device)
        self.channels_last = train.channels_last
        self.scaler = None
        if self.name == "fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def autocast(self):
        """The context of the training forward pass and loss."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.name])

    def model(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.channels_last and _has_conv2d(model):
            model.to(memory_format=torch.channels_last)
        return model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """loss.backward(); fp16: scaled, then the gradients unscaled in place."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def _has_conv2d(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
