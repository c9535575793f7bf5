"""The model section of a spec: one class per architecture, told apart by `arch:`; `Model` is
their union. Each class carries the facts read without torch (cost per example, input rank)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import AfterValidator, Field

from .base import MAX_LAYERS, Strict, Width
from .custom import CustomCode


class ModelSpec(Strict):
    """An arch. Its facts, read without torch (cost estimate, validation): ``COST``, the
    GPU-seconds per training example (forward + backward) on one V100-class GPU in fp32,
    from public throughput figures (``cost_per_example`` scales it to the spec's size), and
    ``INPUT_RANK``, the rank of the examples it takes (channels first; None: any, flattened)."""

    COST: ClassVar[float] = 1e-3
    INPUT_RANK: ClassVar[int | None] = None

    def cost_per_example(self) -> float:
        return self.COST


class MLP(ModelSpec):
    """Fully connected ReLU network."""

    COST: ClassVar[float] = 2e-8

    arch: Literal["mlp"] = Field(description="architecture")
    hidden: list[Width] = Field([300, 100], max_length=MAX_LAYERS, description="hidden layer widths (mlp)")


class LeNet300(ModelSpec):
    """LeNet-300-100 (LeCun et al. 1998): the mlp with hidden [300, 100]."""

    COST: ClassVar[float] = 2e-8

    arch: Literal["lenet300_100"] = Field(description="architecture")


class LeNet5(ModelSpec):
    """LeNet-5 (conv 6@5x5 pad 2, pool, conv 16@5x5, pool, fc 120, 84) for 28x28 (or 32x32) images."""

    COST: ClassVar[float] = 1e-7
    INPUT_RANK: ClassVar[int | None] = 3

    arch: Literal["lenet5"] = Field(description="architecture")


class Conv1d(ModelSpec):
    """A small 1-D conv net for sequences such as mnist1d: Conv1d+ReLU layers (stride 2,
    padding kernel//2), flattened, linear classifier."""

    COST: ClassVar[float] = 1e-7
    INPUT_RANK: ClassVar[int | None] = 2

    arch: Literal["conv1d"] = Field(description="architecture")
    channels: list[Width] = Field([32, 32, 32], max_length=MAX_LAYERS, description="channels of each conv layer")
    kernel: Annotated[int, Field(ge=1, le=1024)] = Field(5, description="kernel size")


def _depth(offset: int):
    def check(depth: int) -> int:
        if depth < 6 + offset or (depth - offset) % 6:
            raise ValueError(f"depth must be 6n+{offset} with n >= 1 (e.g. {6 * 3 + offset}), got {depth}")
        return depth
    return check


class ResNet(ModelSpec):
    """CIFAR ResNet (He et al. 2016): 3 stages of (depth-2)/6 basic blocks, BatchNorm,
    1x1 conv projection shortcuts where the shape changes."""

    COST: ClassVar[float] = 1.0e-4  # ResNet-20 on 32x32 (~10k img/s); scaled by depth and width^2
    INPUT_RANK: ClassVar[int | None] = 3

    def cost_per_example(self) -> float:
        return self.COST * self.depth / 20 * (self.width / 16) ** 2

    arch: Literal["resnet"] = Field(description="architecture")
    depth: Annotated[int, Field(le=6 * 1000 + 2), AfterValidator(_depth(2))] = Field(20, description="6n+2: 20, 32, 44, 56, 110")
    width: Width = Field(16, description="channels of the first stage (doubled per stage)")
    zero_init_residual: bool = Field(
        False, description="start the last BatchNorm scale of each residual block at zero, so every block starts "
        "as the identity (Goyal et al. 2017; Gale et al.'s init_zero)")


class WRN(ModelSpec):
    """Wide ResNet (Zagoruyko & Komodakis 2016), pre-activation blocks, BatchNorm."""

    COST: ClassVar[float] = 1.2e-3  # WRN-28-10 on 32x32 (~800 img/s); scaled by depth and width^2
    INPUT_RANK: ClassVar[int | None] = 3

    def cost_per_example(self) -> float:
        return self.COST * self.depth / 28 * (self.width / 10) ** 2

    arch: Literal["wrn"] = Field(description="architecture")
    depth: Annotated[int, Field(le=6 * 1000 + 4), AfterValidator(_depth(4))] = Field(28, description="6n+4: 16, 22, 28, 40")
    width: Annotated[int, Field(ge=1, le=256)] = Field(10, description="widening factor k")


RESNET_GFLOPS = {18: 1.8, 34: 3.6, 50: 4.1, 101: 7.8, 152: 11.5}  # at 224x224


class TorchvisionResNet(ModelSpec):
    """torchvision's ImageNet ResNet (weights=None: random init, nothing downloaded)."""

    COST: ClassVar[float] = 2.9e-3  # ResNet-50 at 224x224 (~350 img/s); scaled by FLOPs per depth
    INPUT_RANK: ClassVar[int | None] = 3

    def cost_per_example(self) -> float:
        return self.COST * RESNET_GFLOPS[self.depth] / RESNET_GFLOPS[50]

    arch: Literal["torchvision_resnet"] = Field(description="architecture")
    depth: Literal[18, 34, 50, 101, 152] = Field(50, description="18, 34, 50, 101 or 152")
    zero_init_residual: bool = Field(
        False, description="start the last BatchNorm scale of each residual block at zero, so every block starts "
        "as the identity (Goyal et al. 2017; Gale et al.'s init_zero)")


class CustomModel(ModelSpec, CustomCode):
    """A model of your own, by import path (studyspec/spec/custom.py): the job calls
    ``target(in_shape, n_classes, **args)`` and trains the ``torch.nn.Module`` it returns."""

    GIVEN: ClassVar[tuple[str, ...]] = ("in_shape", "n_classes")
    arch: Literal["custom"] = Field(description="architecture")


Model = Annotated[Union[MLP, LeNet300, LeNet5, Conv1d, ResNet, WRN, TorchvisionResNet, CustomModel],
                  Field(discriminator="arch")]
