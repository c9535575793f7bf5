"""Models. ``build(model_cfg, in_shape, n_classes) -> nn.Module``.

``in_shape`` is the shape of one example, e.g. ``(1, 28, 28)`` or ``(40,)``; a plain
int (the number of input features, as older callers pass) also works: the conv
nets then assume a square image with 1 (LeNet-5) or 3 (ResNets) channels, or a
1-channel sequence (conv1d). Every model reshapes a flat input batch to
``(batch, *in_shape)`` itself, so the data may come flat or shaped.

Archs (the spec models are in studyspec/spec/train.py):

- ``mlp``: Flatten, then Linear+ReLU for each width in ``hidden``, then a Linear
  classifier. Parameter names ``net.1.weight``, ``net.3.weight``, ... (0 is the Flatten).
- ``lenet300_100``: the mlp with hidden [300, 100] (same parameter names).
- ``lenet5``: conv 6@5x5 (padding 2 for 28x28 inputs) - ReLU - maxpool 2 - conv 16@5x5 -
  ReLU - maxpool 2 - fc 120 - fc 84 - fc classes (ReLU between).
- ``conv1d``: for sequences such as mnist1d: Conv1d+ReLU layers of ``channels`` (kernel
  ``kernel``, stride 2, padding kernel//2), flattened, Linear classifier.
- ``resnet``: CIFAR ResNet-(6n+2) (He et al. 2016): conv3x3 stem, 3 stages of n basic
  blocks (widths w, 2w, 4w; stride 2 into stages 2 and 3), BatchNorm, 1x1 conv + BN
  projection shortcuts where the shape changes (as open_lth's cifar_resnet), global
  average pooling, fc. Convs have no bias; Kaiming-normal (fan_out) conv init.
- ``wrn``: WRN-(6n+4)-k (Zagoruyko & Komodakis 2016): pre-activation blocks
  (BN-ReLU-conv3x3 twice), widths 16k, 32k, 64k, 1x1 conv shortcut where the shape
  changes, BN-ReLU, global average pooling, fc.
- ``torchvision_resnet``: ``torchvision.models.resnet{depth}(weights=None)``
  (random init; nothing is downloaded).

Widths (what ``small_dense`` scales, runners/regimes.py; ``widths(cfg)`` /
``with_widths(cfg, ws)``): ``hidden`` (mlp; lenet300_100 becomes the mlp), ``channels``
(conv1d), and a ``widths`` list the spec does not expose (set by small_dense only):
lenet5 ``[conv1, conv2, fc1, fc2]`` (default [6, 16, 120, 84]); resnet the three stage
widths ``[w, 2w, 4w]`` (the stem has the first); wrn ``[stem, 16k, 32k, 64k]`` (stem 16);
torchvision_resnet ``[stem, planes of the 4 stages]`` (default [64, 64, 128, 256, 512];
bottleneck outputs are 4 x planes), built as torchvision's ResNet class with those
widths, same parameter names.

Prunable weights (``runners.masks.prunable``) are the weights of every Linear and Conv
layer; biases and BatchNorm parameters stay dense. Module order puts the input layer
first and the classifier last (what ``dense_layers: [first, last]`` refers to).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _shape(in_shape, channels: int, dims: int) -> tuple[int, ...]:
    """One example's shape: ``in_shape`` as given, or built from a feature count."""
    if isinstance(in_shape, (tuple, list, torch.Size)):
        shape = tuple(int(s) for s in in_shape)
        if len(shape) == dims + 1:
            return shape
        in_shape = math.prod(shape)
    n = int(in_shape)
    if dims == 1:
        return (channels, n // channels)
    side = math.isqrt(n // channels)
    if channels * side * side != n:
        raise ValueError(f"cannot view {n} input features as {channels} square image channel(s); "
                         "pass the input shape, e.g. (3, 32, 32)")
    return (channels, side, side)


class _Shaped(nn.Module):
    """Reshapes a flat batch to (batch, *in_shape) before the network."""

    in_shape: tuple[int, ...]

    def shaped(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            x = x.reshape(x.shape[0], *self.in_shape)
        return x


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


class LeNet5(_Shaped):
    def __init__(self, in_shape, n_classes: int, widths=None):
        super().__init__()
        self.in_shape = _shape(in_shape, 1, 2)
        c, h, w = self.in_shape
        c1, c2, f1, f2 = (int(v) for v in (widths or LENET5_WIDTHS))
        pad = 2 if h < 32 else 0  # the 32x32 input of the original, reached by padding 28x28
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *self.in_shape)).shape[1]
        self.classifier = nn.Sequential(
            nn.Linear(flat, f1), nn.ReLU(), nn.Linear(f1, f2), nn.ReLU(), nn.Linear(f2, n_classes))

    def forward(self, x):
        return self.classifier(self.features(self.shaped(x)))


class Conv1dNet(_Shaped):
    def __init__(self, in_shape, channels: list[int], kernel: int, n_classes: int):
        super().__init__()
        self.in_shape = _shape(in_shape, 1, 1)
        layers: list[nn.Module] = []
        c = self.in_shape[0]
        for ch in channels:
            layers += [nn.Conv1d(c, int(ch), kernel, stride=2, padding=kernel // 2), nn.ReLU()]
            c = int(ch)
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *self.in_shape)).shape[1]
        self.fc = nn.Linear(flat, n_classes)

    def forward(self, x):
        return self.fc(self.features(self.shaped(x)))


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(_Shaped):
    def __init__(self, in_shape, depth: int, width: int, n_classes: int, widths=None):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"resnet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        stages = [int(v) for v in (widths or (width, 2 * width, 4 * width))]
        self.in_shape = _shape(in_shape, 3, 2)
        self.conv1, self.bn1 = _conv3x3(self.in_shape[0], stages[0]), nn.BatchNorm2d(stages[0])
        blocks, cin = [], stages[0]
        for stage, cout in enumerate(stages):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(self.shaped(x))))
        out = self.blocks(out)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv3x3(cin, cout, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), _conv3x3(cout, cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(_Shaped):
    def __init__(self, in_shape, depth: int, width: int, n_classes: int, widths=None):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"wrn depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        stem, *stages = [int(v) for v in (widths or (16, 16 * width, 32 * width, 64 * width))]
        self.in_shape = _shape(in_shape, 3, 2)
        self.conv1 = _conv3x3(self.in_shape[0], stem)
        blocks, cin = [], stem
        for stage, cout in enumerate(stages):
            for i in range(n):
                blocks.append(WideBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        out = self.blocks(self.conv1(self.shaped(x)))
        out = torch.relu(self.bn(out))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


TORCHVISION_WIDTHS = [64, 64, 128, 256, 512]  # stem, planes of the 4 stages
TORCHVISION_BLOCKS = {18: ("BasicBlock", [2, 2, 2, 2]), 34: ("BasicBlock", [3, 4, 6, 3]),
                      50: ("Bottleneck", [3, 4, 6, 3]), 101: ("Bottleneck", [3, 4, 23, 3]),
                      152: ("Bottleneck", [3, 8, 36, 3])}


def _torchvision_resnet(in_shape, depth: int, n_classes: int, widths=None) -> nn.Module:
    """torchvision's model itself (parameter names as in torchvision: conv1.weight ... fc.weight),
    with a pre-hook that reshapes a flat batch. ``widths``: torchvision's ResNet class with
    other widths (``_WidthResNet``)."""
    from runners.vision import require

    require("model torchvision_resnet")
    import torchvision

    shape = _shape(in_shape, 3, 2)
    if shape[0] != 3:
        raise ValueError(f"torchvision_resnet takes 3-channel images, got shape {shape}")
    if widths is None:
        net = getattr(torchvision.models, f"resnet{int(depth)}")(weights=None, num_classes=n_classes)
    else:
        block, layers = TORCHVISION_BLOCKS[int(depth)]
        net = _width_resnet(getattr(torchvision.models.resnet, block), layers, n_classes, widths)
    net.register_forward_pre_hook(_Reshape(shape))
    return net


def _width_resnet(block, layers: list[int], n_classes: int, widths) -> nn.Module:
    """torchvision.models.resnet.ResNet with stem width ``widths[0]`` and stage planes
    ``widths[1:]``: the construction and initialisation of torchvision's ``ResNet.__init__``
    (default options) with those numbers; forward and parameter names are torchvision's."""
    from torchvision.models.resnet import ResNet

    stem, *planes = (int(v) for v in widths)
    net = ResNet.__new__(ResNet)
    nn.Module.__init__(net)
    net._norm_layer = nn.BatchNorm2d
    net.inplanes, net.dilation, net.groups, net.base_width = stem, 1, 1, 64
    net.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(stem)
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    net.layer1 = net._make_layer(block, planes[0], layers[0])
    net.layer2 = net._make_layer(block, planes[1], layers[1], stride=2)
    net.layer3 = net._make_layer(block, planes[2], layers[2], stride=2)
    net.layer4 = net._make_layer(block, planes[3], layers[3], stride=2)
    net.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    net.fc = nn.Linear(planes[3] * block.expansion, n_classes)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return net


class _Reshape:
    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def __call__(self, module, args):
        x = args[0]
        return None if tuple(x.shape[1:]) == self.shape else (x.reshape(x.shape[0], *self.shape),)


def _features(in_shape) -> int:
    return math.prod(in_shape) if isinstance(in_shape, (tuple, list, torch.Size)) else int(in_shape)


ARCHS = {
    "mlp": lambda c, s, k: MLP(_features(s), list(c.get("hidden", [300, 100])), k),
    "lenet300_100": lambda c, s, k: MLP(_features(s), [300, 100], k),
    "lenet5": lambda c, s, k: LeNet5(s, k, c.get("widths")),
    "conv1d": lambda c, s, k: Conv1dNet(s, list(c.get("channels", [32, 32, 32])), int(c.get("kernel", 5)), k),
    "resnet": lambda c, s, k: CifarResNet(s, int(c.get("depth", 20)), int(c.get("width", 16)), k, c.get("widths")),
    "wrn": lambda c, s, k: WideResNet(s, int(c.get("depth", 28)), int(c.get("width", 10)), k, c.get("widths")),
    "torchvision_resnet": lambda c, s, k: _torchvision_resnet(s, int(c.get("depth", 50)), k, c.get("widths")),
}
LENET5_WIDTHS = [6, 16, 120, 84]


def widths(model_cfg: dict) -> list[int]:
    """The layer widths of a model config, input side first (see the top of the module)."""
    arch, c = model_cfg["arch"], model_cfg
    if arch == "mlp":
        return [int(h) for h in c.get("hidden", [300, 100])]
    if arch == "lenet300_100":
        return [300, 100]
    if arch == "conv1d":
        return [int(h) for h in c.get("channels", [32, 32, 32])]
    if "widths" in c:
        return [int(h) for h in c["widths"]]
    if arch == "lenet5":
        return list(LENET5_WIDTHS)
    if arch == "resnet":
        w = int(c.get("width", 16))
        return [w, 2 * w, 4 * w]
    if arch == "wrn":
        k = int(c.get("width", 10))
        return [16, 16 * k, 32 * k, 64 * k]
    if arch == "torchvision_resnet":
        return list(TORCHVISION_WIDTHS)
    raise ValueError(f"unknown arch {arch!r}; known archs: {sorted(ARCHS)}")


def with_widths(model_cfg: dict, ws: list[int]) -> dict:
    """The model config with the widths ``ws`` (the order of ``widths``)."""
    ws = [int(w) for w in ws]
    arch = model_cfg["arch"]
    if arch == "mlp":
        return dict(model_cfg, hidden=ws)
    if arch == "lenet300_100":
        return {"arch": "mlp", "hidden": ws}
    if arch == "conv1d":
        return dict(model_cfg, channels=ws)
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known archs: {sorted(ARCHS)}")
    if len(ws) != len(widths(model_cfg)):
        raise ValueError(f"{arch} takes {len(widths(model_cfg))} widths, got {ws}")
    return dict(model_cfg, widths=ws)


def build(model_cfg: dict, in_shape, n_classes: int) -> nn.Module:
    """Build the model named by ``model_cfg["arch"]`` (uses the global torch RNG for init).
    ``in_shape``: one example's shape, or its number of features."""
    arch = model_cfg["arch"]
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known archs: {sorted(ARCHS)}")
    net = ARCHS[arch](model_cfg, in_shape, int(n_classes))
    if model_cfg.get("zero_init_residual"):
        zero_last_bn(net)
    return net


def zero_last_bn(net: nn.Module) -> int:
    """Zero the scale of the last BatchNorm of every residual block (its output branch then
    starts at zero: the block is the identity). No random numbers are drawn, so the other
    weights are those of the same seed without it. Returns the number of blocks."""
    from torchvision.models.resnet import BasicBlock as TvBasic, Bottleneck

    n = 0
    for m in net.modules():
        last = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, (TvBasic, BasicBlock)) else None
        if last is not None:
            nn.init.zeros_(last.weight)
            n += 1
    return n
