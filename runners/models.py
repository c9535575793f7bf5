"""Models. ``build(model, in_shape, n_classes, widths=None) -> nn.Module``.

``model`` is the spec's model section (``studyspec.spec.model``: ``MLP``, ``LeNet5`` ...);
each arch's implementation registers against its spec class (``runners.registry``).
``in_shape`` is the shape of one example as the dataset's facts give it
(``studyspec.datasets.FACTS``), e.g. ``(1, 28, 28)`` or ``(1, 40)``: image nets take
(channels, height, width), conv1d (channels, length), the MLPs any shape (flattened);
a shape of another rank is an error, never guessed. Every model reshapes a flat input
batch to ``(batch, *in_shape)`` itself, so the data may come flat or shaped.

Archs (the spec models are in studyspec/spec/model.py):

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

Widths (what ``small_dense`` scales, runners/regimes.py; ``widths(model)``, and
``build(..., widths=ws)`` builds the arch with others): ``hidden`` (mlp, lenet300_100),
``channels`` (conv1d), and widths the spec does not expose:
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

import studyspec.spec.model as S
from runners.registry import implements, lookup
from studyspec.spec.custom import import_target


def _shape(in_shape, dims: int, arch: str) -> tuple[int, ...]:
    """One example's shape, checked: ``dims`` axes after the channels."""
    shape = tuple(int(v) for v in in_shape)
    if len(shape) != dims + 1:
        what = "(channels, height, width) images" if dims == 2 else "(channels, length) sequences"
        raise ValueError(f"{arch} takes {what}; this dataset's examples have shape {shape}")
    return shape


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
        self.in_shape = _shape(in_shape, 2, "lenet5")
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
        self.in_shape = _shape(in_shape, 1, "conv1d")
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
        self.in_shape = _shape(in_shape, 2, "resnet")
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
        self.in_shape = _shape(in_shape, 2, "wrn")
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

    shape = _shape(in_shape, 2, "torchvision_resnet")
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


LENET5_WIDTHS = [6, 16, 120, 84]


class Arch:
    """An arch's implementation: ``build(spec, in_shape, n_classes, widths)`` (widths None:
    the spec's own) and ``widths(spec)``, its layer widths input side first (what
    small_dense scales, see the top of the module). ``mlp_like``: small_dense adjusts the
    last two widths by up to 3 units (else every width by up to 1)."""

    mlp_like = False

    @staticmethod
    def widths(spec) -> list[int]:
        raise NotImplementedError

    @staticmethod
    def build(spec, in_shape, n_classes: int, widths=None) -> nn.Module:
        raise NotImplementedError


@implements(S.MLP)
class _MLP(Arch):
    mlp_like = True
    widths = staticmethod(lambda spec: list(spec.hidden))
    build = staticmethod(lambda spec, s, k, widths=None: MLP(math.prod(s), list(widths or spec.hidden), k))


@implements(S.LeNet300)
class _LeNet300(Arch):
    mlp_like = True
    widths = staticmethod(lambda spec: [300, 100])
    build = staticmethod(lambda spec, s, k, widths=None: MLP(math.prod(s), list(widths or [300, 100]), k))


@implements(S.LeNet5)
class _LeNet5(Arch):
    widths = staticmethod(lambda spec: list(LENET5_WIDTHS))
    build = staticmethod(lambda spec, s, k, widths=None: LeNet5(s, k, widths))


@implements(S.Conv1d)
class _Conv1d(Arch):
    widths = staticmethod(lambda spec: list(spec.channels))
    build = staticmethod(lambda spec, s, k, widths=None: Conv1dNet(s, list(widths or spec.channels), spec.kernel, k))


@implements(S.ResNet)
class _ResNet(Arch):
    widths = staticmethod(lambda spec: [spec.width, 2 * spec.width, 4 * spec.width])
    build = staticmethod(lambda spec, s, k, widths=None: _zero_init(
        spec, CifarResNet(s, spec.depth, spec.width, k, widths)))


@implements(S.WRN)
class _WRN(Arch):
    widths = staticmethod(lambda spec: [16, 16 * spec.width, 32 * spec.width, 64 * spec.width])
    build = staticmethod(lambda spec, s, k, widths=None: WideResNet(s, spec.depth, spec.width, k, widths))


@implements(S.TorchvisionResNet)
class _TorchvisionResNet(Arch):
    widths = staticmethod(lambda spec: list(TORCHVISION_WIDTHS))
    build = staticmethod(lambda spec, s, k, widths=None: _zero_init(spec, _torchvision_resnet(s, spec.depth, k, widths)))


@implements(S.CustomModel)
class _Custom(Arch):
    """A model by import path: ``target(in_shape, n_classes, **args)`` (studyspec/spec/custom.py)."""

    @staticmethod
    def widths(spec) -> list[int]:
        raise ValueError(f"{spec.target} is a custom model: small_dense cannot scale its widths")

    @staticmethod
    def build(spec, in_shape, n_classes: int, widths=None) -> nn.Module:
        if widths is not None:
            _Custom.widths(spec)
        net = import_target(spec.target)(tuple(in_shape), n_classes, **spec.args)
        if not isinstance(net, nn.Module):
            raise TypeError(f"{spec.target} returned {type(net).__name__}, not a torch.nn.Module")
        return net


def _zero_init(spec, net: nn.Module) -> nn.Module:
    if spec.zero_init_residual:
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


def spec_of(model) -> "S.Model":
    """A model spec object; a plain dict (tests, notebooks) is validated into one."""
    if isinstance(model, dict):
        from pydantic import TypeAdapter

        return TypeAdapter(S.Model).validate_python(model)
    return model


def arch(model) -> Arch:
    """The implementation of a model spec's arch."""
    return lookup(spec_of(model))


def widths(model) -> list[int]:
    """The layer widths of a model spec, input side first (see the top of the module)."""
    return [int(w) for w in arch(model).widths(spec_of(model))]


def build(model, in_shape, n_classes: int, widths=None) -> nn.Module:
    """Build the model of the spec ``model`` (uses the global torch RNG for init) for
    examples of shape ``in_shape`` (an int n: flat examples, shape (n,)); ``widths``: other
    layer widths (small_dense)."""
    model = spec_of(model)
    shape = (int(in_shape),) if isinstance(in_shape, int) else tuple(int(v) for v in in_shape)  # int: flat
    return arch(model).build(model, shape, int(n_classes), widths)
