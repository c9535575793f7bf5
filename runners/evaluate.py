"""Full-dataset evaluation shared by training and path queries.

A split to evaluate on is either a pair of tensors ``(x, y)`` (in-memory data: the whole
split, evaluated in ``EVAL_BATCH`` slices) or a *split object*: re-iterable, each pass
yielding ``(x, y)`` batches in a fixed order (not augmented), ``len()`` its number of
examples, ``batch_size`` the largest batch (``Chunks`` below; streamed data:
``runners.data.StreamBatches.eval_split``). Both give the same numbers for the same
batches: the pair is evaluated as ``Chunks(x, y)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EVAL_BATCH = 8192


def part_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """[lo, hi) of process ``rank``'s contiguous share of ``n`` examples."""
    return rank * n // size, (rank + 1) * n // size


class Chunks:
    """``(x, y)`` in consecutive slices of ``batch_size``: a split object over tensors."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH):
        self.x, self.y, self.batch_size = x, y, int(batch_size)

    def __len__(self) -> int:
        return len(self.y)

    def __iter__(self):
        for i in range(0, len(self.y), self.batch_size):
            yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]

    def part(self, rank: int, size: int) -> "Chunks":
        """Process ``rank`` of ``size``'s contiguous share of the examples (DDP evaluation)."""
        lo, hi = part_bounds(len(self.y), rank, size)
        return Chunks(self.x[lo:hi], self.y[lo:hi], self.batch_size)


def as_split(x, y=None):
    """``(x, y)`` tensors as ``Chunks``; a split object (``y`` None) as it is."""
    return x if y is None else Chunks(x, y)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x, y: torch.Tensor | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on all of (x, y), or on a split object
    ``x`` (``y`` None), in eval mode."""
    loss_sum, correct, n = evaluate_sums(model, as_split(x, y))
    return loss_sum / n, correct / n


@torch.no_grad()
def evaluate_sums(model: torch.nn.Module, split) -> tuple[float, int, int]:
    """Summed cross-entropy, number correct and number of examples over a split object."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for xb, yb in split:
        out = model(xb)
        loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
        n += len(yb)
    model.train(was_training)
    return loss_sum, correct, n
