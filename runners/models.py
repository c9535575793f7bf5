"""Models. ``build(model_cfg, in_features, n_classes) -> nn.Module``.

``mlp``: Flatten, then Linear+ReLU for each width in ``hidden``, then a Linear
classifier. All Linear weights are prunable (see ``runners.masks``); biases are not.
Parameter names: ``net.1.weight``, ``net.3.weight``, ... (index 0 is the Flatten).
"""
from __future__ import annotations

from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: list[int], n_classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def _mlp(cfg: dict, in_features: int, n_classes: int) -> nn.Module:
    return MLP(in_features, list(cfg.get("hidden", [300, 100])), n_classes)


ARCHS = {"mlp": _mlp}


def build(model_cfg: dict, in_features: int, n_classes: int) -> nn.Module:
    """Build the model named by ``model_cfg["arch"]`` (uses the global torch RNG for init)."""
    arch = model_cfg["arch"]
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known archs: {sorted(ARCHS)}")
    return ARCHS[arch](model_cfg, in_features, n_classes)
