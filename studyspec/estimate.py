"""A rough cost model for `studyspec plan`: GPU-hours of every job, from the facts of its
model and dataset.

The model (documented in docs/results.md, printed with every estimate):

    train job  = steps x (OVERHEAD + batch x C)  +  evaluations x (n_train_eval + n_test) x C / 3
                 (steps: every optimizer step of the run, imp's later rounds included)
    path job   = curve steps x (OVERHEAD + batch x C x points / 2)  +  grid points x (n_train_eval + n_test) x C / 3

where C is the GPU-seconds per training example (forward + backward) of the model on one
V100-class GPU in fp32 (``cost_per_example()`` of its spec class, studyspec/spec/model.py,
from public throughput figures), a forward pass costs C / 3, the split sizes are the
dataset's facts (studyspec/datasets.py), and a curve's points are its endpoints and control
points (bezier: degree + 1, polychain: bends + 2). With train.precision bf16 or fp16 the
training term's C is multiplied by PRECISION (mixed precision on tensor cores: NVIDIA's
published ResNet-50 figures give about 2.5-3x the fp32 throughput; bf16 needs an
Ampere-class GPU or newer); evaluations run in fp32 and keep C. It ignores data loading,
checkpointing and queueing: read it as the order of magnitude, not a budget.
"""

from __future__ import annotations

from .datasets import facts
from .spec.jobs import PathJob, TrainJob

OVERHEAD = 2e-3  # seconds per optimizer step (kernel launches, Python)
PRECISION = {"fp32": 1.0, "bf16": 0.4, "fp16": 0.4}  # training cost per example relative to fp32


def seconds(job: TrainJob | PathJob) -> float:
    """Estimated GPU-seconds of one job."""
    f, c = facts(job.data), job.model.cost_per_example()
    n_train = f.train if job.data.train_eval_examples is None else min(f.train, job.data.train_eval_examples)
    batch = job.data.batch_size
    eval_cost = (n_train + f.test) * c / 3
    if isinstance(job, TrainJob):
        steps = job.train.total_steps(f.train, batch)
        total = job.regime.trained_steps(steps)  # imp: every prune-rewind round
        evals = total // job.train.eval_every + 1
        return total * (OVERHEAD + batch * c * PRECISION[job.train.precision]) + evals * eval_cost
    path = job.path
    total = path.points * eval_cost
    if path.trained:  # a curve: its control points are trained first
        ct = path.train
        total += ct.steps * (OVERHEAD + (ct.batch_size or batch) * c * path.n_points / 2)
    return total


def job_seconds(job) -> float:
    """``seconds`` of a plan's job (a plan.Job), once per template: the jobs of one run at
    sweep points that differ only in their seed differ only in their seed and the ids they
    reference, which the estimate does not read."""
    return job.template.memo("seconds", lambda: seconds(job.spec))


def gpu_hours(plan) -> dict[str, float]:
    """{'train': h, 'path': h, 'total': h} for every job of the plan (done or not)."""
    out = {"train": 0.0, "path": 0.0}
    for job in plan.jobs.values():
        out[job.kind] = out.get(job.kind, 0.0) + job_seconds(job) / 3600
    out["total"] = sum(out.values())
    return out


def describe(plan) -> str:
    h = gpu_hours(plan)
    return (f"estimated {h['total']:.3g} GPU-hours ({h['train']:.3g} train, {h['path']:.3g} path) on one "
            "V100-class GPU: steps x a per-arch cost per example + evaluations (model in studyspec/estimate.py)")
