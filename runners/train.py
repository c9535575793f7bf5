"""The training loop shared by every regime (runners/regimes.py).

Conventions (see docs/internals.md for the config):

- g counts optimizer steps taken (global; equals the in-round step t except for imp,
  see runners.regimes.Imp). At each g = 0..total, in this order: the regime's events
  due at g (pruning), ``init.pt`` (g = 0), ``step_t.pt`` if t is in
  ``train.checkpoints`` (round 0), the evaluation (g = 0, t multiple of ``eval_every``,
  t = steps), the regime's after-evaluation events (imp: prune and rewind), the resume
  checkpoint (every ``checkpoint_every`` steps), then optimizer step g+1. So "the model
  at step t" is after t optimizer steps and the pruning due at t.
- Length: ``train.steps``, or ``train.epochs`` converted to
  ceil(epochs * train size / batch_size) steps.
- Data order: a ``torch.Generator`` seeded with ``derive_seed(seed, "data")``, the same
  for every regime at a seed (a new random permutation each epoch, last partial batch kept);
  training batches come from ``runners.data.batches`` (CIFAR: random crop + flip drawn from
  the same generator), evaluation uses the whole splits without augmentation, or for the
  training split a fixed subset of ``data.train_eval_examples`` examples when set (streamed
  data: always, 10,000 by default; read in a fixed order).
- Masked training: before each optimizer step the gradients of pruned weights are
  zeroed, after it the mask is re-applied, so pruned weights stay exactly 0
  (as +0.0 or -0.0). The training loss uses ``label_smoothing``; the recorded losses do not.
- Evaluation records train_loss/acc and test_loss/acc (full sets, eval mode),
  ``weight_sparsity`` (fraction of zero prunable weights; not ``sparsity``, the name of the
  swept target) and ``grad_norm``: the L2 norm of the gradient of the full-training-set loss
  restricted to the mask (all of it for dense runs).
- Resume: see runners/checkpoint.py.
- Several processes (a SLURM job with several tasks): each computes the gradient of its
  slice of the same global mini-batch, the gradients are summed over the processes right
  after backward (before the regime and the mask see them), each evaluates its share of
  the splits (sums added up over the processes), and only rank 0 writes files; see
  runners/distributed.py. One process: the loop is unchanged.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from runners import artifacts, checkpoint, data, distributed, masks as M
from runners.precision import Precision
from runners.evaluate import EVAL_BATCH, as_split, evaluate, evaluate_sums  # noqa: F401  (EVAL_BATCH: API)
from runners.optim import lr_at, make_optimizer, set_lr  # noqa: F401  (lr_at, make_optimizer: API)
from runners.regimes import Context, Imp, derive_seed, make  # noqa: F401  (derive_seed: API)
from studyspec.spec.jobs import TrainJob, config, parse_job


class Sampler:
    """Training mini-batches from a ``runners.data.Batches`` (augmented where the dataset
    says so), drawn with the data-order generator. Its state (generator, permutation,
    position) is part of a resume checkpoint."""

    def __init__(self, batches: data.Batches, seed: int):
        self.batches = batches
        self.gen = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches.next(self.gen)

    def next_part(self, rank: int, size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This process's slice of the next global batch, and the global batch's length."""
        return self.batches.next_part(self.gen, rank, size)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), **self.batches.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.gen.set_state(s["gen"])
        self.batches.load_state_dict(s)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate_with_grad(model, masks, x, y=None) -> tuple[float, float, float]:
    """Full-set loss and accuracy on (x, y) or on a split object ``x`` (runners/evaluate.py;
    the same numbers as runners.evaluate.evaluate: same chunks, same reduction) and, from
    the same forward passes, the L2 norm of the gradient of the mean loss restricted to
    the mask. Eval mode; gradients are cleared after."""
    split = as_split(x, y)
    n = len(split)
    rank, size = distributed.part()  # several processes: each takes its share, then sums
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    loss_sum, correct = 0.0, 0
    for xb, yb in (split if size == 1 else split.part(rank, size)):
        out = model(xb)
        batch_loss = F.cross_entropy(out, yb, reduction="sum")
        loss_sum += float(batch_loss.detach())
        correct += int((out.detach().argmax(1) == yb).sum())
        (batch_loss / n).backward()
    if size > 1:
        distributed.all_reduce_grads(model)
        loss_sum, correct = distributed.all_reduce_sums(loss_sum, correct)
    total = 0.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            g = p.grad if masks is None or name not in masks else p.grad * masks[name]
            total += float((g.double() ** 2).sum())
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return loss_sum / n, correct / n, math.sqrt(total)


def evaluate_shared(model, split) -> tuple[float, float]:
    """runners.evaluate.evaluate on a split object; with several processes each evaluates
    its share and the sums are added up over them."""
    rank, size = distributed.part()
    if size == 1:
        return evaluate(model, split)
    loss_sum, correct, _ = evaluate_sums(model, split.part(rank, size))
    loss_sum, correct = distributed.all_reduce_sums(loss_sum, correct)
    return loss_sum / len(split), correct / len(split)


def train(job: TrainJob | dict, run_dir: Path, inputs: dict[str, Path], cache_dir: Path) -> dict:
    """Run a train job (a TrainJob, or its config dict, validated into one)."""
    job = job if isinstance(job, TrainJob) else parse_job(job)
    run_dir = Path(run_dir)
    seed, tr = job.seed, job.train
    distributed.init()  # several processes: join the job's process group (no-op with one)
    device = distributed.device(resolve_device(tr.device))

    batches = data.batches(job.data, cache_dir, device)
    # evaluation: whole splits, not augmented (in memory: normalised once; streamed: read
    # from disk at each evaluation, the train split a fixed subset)
    eval_train, eval_test = batches.eval_split("train"), batches.eval_split("test")
    steps = tr.total_steps(batches.n_train, job.data.batch_size)

    ctx = Context(job, run_dir, inputs, steps, batches.input_shape, batches.n_classes, device)
    ctx.precision = Precision(tr, device)  # train.precision, channels_last (fp32: no change)
    regime = make(job.regime, ctx)
    regime.start()
    ctx.precision.model(ctx.model)
    ctx.new_optimizer()
    total = regime.total_steps()
    sampler = Sampler(batches, derive_seed(seed, "data"))
    eval_every, every_ckpt, named = tr.eval_every, tr.checkpoint_every, set(tr.checkpoints)
    base_lr, sched, smoothing = tr.optimizer.lr, tr.schedule, tr.label_smoothing
    cfg = config(job)  # what a resume checkpoint must match
    params = M.prunable(ctx.model)

    def float_masks():
        # (param, float mask) pairs for the hot loop: mul_ by a 0/1 float mask is ~10x faster
        # than masked_fill_ with a bool mask (the zeros it writes may be -0.0; still == 0).
        return None if ctx.masks is None else [(params[n], m.to(params[n].dtype)) for n, m in ctx.masks.items()]

    rec = {k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "weight_sparsity", "grad_norm")}
    if isinstance(regime, Imp):  # one entry per evaluation: the prune-rewind round
        rec["round"] = []
    coord: list[int] = []
    g, resumed = 0, False
    state = checkpoint.load(run_dir, cfg)
    if state is not None:
        g, rec, coord = checkpoint.restore(state, ctx, sampler, regime)
        resumed = True
        print(f"resuming from step {g} of {total} ({checkpoint.FILE})", flush=True)
    distributed.broadcast_state(ctx.model)  # every rank starts from rank 0's weights
    keep = float_masks()

    ctx.model.train()
    while True:
        if not resumed:
            masks_before = ctx.masks
            regime.at_step(g)
            r, t = regime.local_step(g)
            if g == 0:
                artifacts.save_state(ctx.model, run_dir / "init.pt")
            if r == 0 and t in named:
                artifacts.save_state(ctx.model, run_dir / artifacts.step_filename(t))
            if g == 0 or t == steps or (eval_every > 0 and t % eval_every == 0):
                coord.append(g)
                loss, acc, grad_norm = evaluate_with_grad(ctx.model, ctx.masks, eval_train)
                rec["train_loss"].append(loss)
                rec["train_acc"].append(acc)
                loss, acc = evaluate_shared(ctx.model, eval_test)
                rec["test_loss"].append(loss)
                rec["test_acc"].append(acc)
                rec["weight_sparsity"].append(M.sparsity(ctx.model))
                rec["grad_norm"].append(grad_norm)
                if "round" in rec:
                    rec["round"].append(float(r))
            regime.after_eval(g, rec)
            if ctx.masks is not masks_before:
                keep = float_masks()
            if g == total:
                break
            if every_ckpt > 0 and g > 0 and g % every_ckpt == 0:
                checkpoint.save(run_dir, cfg, g, ctx, sampler, regime, rec, coord)
        resumed = False
        _, t = regime.local_step(g)
        xs, ys, n = sampler.next_part(*distributed.part())  # this process's slice of the global batch
        with ctx.precision.autocast():  # fp32: a no-op
            out = ctx.model(ctx.precision.inputs(xs))
            if len(ys) == n:
                loss = F.cross_entropy(out, ys, label_smoothing=smoothing)
            else:  # summed over the processes by all_reduce_grads: the gradient of the batch mean
                loss = F.cross_entropy(out, ys, label_smoothing=smoothing, reduction="sum") / n
        ctx.opt.zero_grad(set_to_none=True)
        ctx.precision.backward(loss, ctx.opt)  # fp16: scaled, then unscaled before anything reads the gradients
        distributed.all_reduce_grads(ctx.model)
        if regime.after_backward(g):
            keep = float_masks()
        set_lr(ctx.opt, lr_at(t, base_lr, sched, steps))
        if keep is not None:
            with torch.no_grad():
                for p, fm in keep:
                    p.grad.mul_(fm)
        ctx.precision.step(ctx.opt)
        if keep is not None:
            with torch.no_grad():
                for p, fm in keep:
                    p.mul_(fm)
        distributed.broadcast_buffers(ctx.model)  # BatchNorm running statistics: rank 0's
        g += 1

    distributed.check_identical(ctx.model, ctx.masks)  # several processes: all ended with the same weights
    artifacts.save_state(ctx.model, run_dir / "final.pt")
    if ctx.masks is not None:
        M.save({k: v.cpu() for k, v in ctx.masks.items()}, run_dir / "mask.pt")
    elif job.regime.has_mask:  # a regime with a mask artifact that has not pruned (yet): all ones
        M.save(M.ones_masks(ctx.model), run_dir / "mask.pt")
    checkpoint.remove(run_dir)

    n_prunable = sum(p.numel() for p in params.values())
    scalars = {f"final_{k}": v[-1] for k, v in rec.items() if k != "round"}
    scalars.update(n_params=sum(p.numel() for p in ctx.model.parameters()), n_prunable=n_prunable,
                   n_nonzero_prunable=sum(int((p != 0).sum()) for p in params.values()), steps=total)
    scalars.update(regime.scalars())
    return {"dim": "step", "coord": coord, "vars": rec, "scalars": scalars}
