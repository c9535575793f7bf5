"""Datasets, loaded fully into memory as tensors.

``load(data_cfg, cache_dir) -> (x_train, y_train, x_test, y_test)``: float32 inputs,
int64 labels. Known datasets:

- ``mnist1d``: generated offline with ``mnist1d.data.make_dataset`` and the package's
  default arguments (5000 samples, seed 42, 4000 train / 1000 test, 40 features),
  cached as an .npz in ``cache_dir`` (written atomically).
- ``digits``: ``sklearn.datasets.load_digits`` (8x8 images flattened to 64 features,
  scaled to [0, 1]); fixed stratified 80/20 split with random_state 0
  (1437 train / 360 test).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def _mnist1d_arrays(cache_dir: Path) -> dict[str, np.ndarray]:
    import mnist1d.data

    args = mnist1d.data.get_dataset_args(as_dict=True)
    args.pop("url", None)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"mnist1d-{key}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # make_dataset reseeds the global numpy/random generators: restore them after.
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            ds = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, x=ds["x"], y=ds["y"], x_test=ds["x_test"], y_test=ds["y_test"])
        os.replace(tmp, path)
    with np.load(path) as f:
        return {k: f[k] for k in ("x", "y", "x_test", "y_test")}


def _digits_arrays(cache_dir: Path) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixel values are 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=DIGITS_SPLIT_SEED)
    return {"x": x_tr, "y": y_tr, "x_test": x_te, "y_test": y_te}


DATASETS = {"mnist1d": _mnist1d_arrays, "digits": _digits_arrays}


def load(data_cfg: dict, cache_dir: Path):
    """Return ``(x_train, y_train, x_test, y_test)`` for ``data_cfg["dataset"]``."""
    name = data_cfg["dataset"]
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    a = DATASETS[name](Path(cache_dir))
    f = lambda v: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float32)
    i = lambda v: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.int64)
    return f(a["x"]), i(a["y"]), f(a["x_test"]), i(a["y_test"])
