"""Full-dataset evaluation shared by training and path queries."""
from __future__ import annotations

import torch
import torch.nn.functional as F

EVAL_BATCH = 8192


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on all of (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), EVAL_BATCH):
        out = model(x[i:i + EVAL_BATCH])
        yb = y[i:i + EVAL_BATCH]
        loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    model.train(was_training)
    return loss_sum / len(y), correct / len(y)
