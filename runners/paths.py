"""THE path-query module: the loss landscape along a path in weight space.

A path kind maps a path parameter t to coefficients over its points (endpoints and,
for curves, control points): ``theta(t) = sum_i c_i(t) * theta_i`` (as in
dnn-mode-connectivity's curves.py).

Kinds (the job's ``path``: studyspec.spec.paths ``Linear``, ``Bezier``, ``Polychain``;
each curve class registers against its spec class):
- ``linear``: points [from, to], c(t) = [1-t, t], grid ``points`` on ``range``
  (extrapolation allowed).
- ``bezier`` (``degree`` 2 or 3): Bernstein coefficients; ``polychain`` (``bends`` k):
  piecewise linear through k bends at t = i/(k+1). Endpoints fixed; control points
  start on the straight line and are trained to minimise E_{t~U(0,1)} L(phi(t)),
  one t per mini-batch (``train_curve``). ``subspace: sparse`` keeps the control
  points inside the path's mask (values and gradients); ``dense`` frees them.

Mask policy (``mask``): an endpoint's mask is its set of non-zero prunable weights;
``shared`` (default) = both endpoints' intersection, ``from``, ``to``, ``union``,
``none``. Every evaluated point is zero outside the policy's mask (``none``: no
masking). Endpoints reproduce their own runs exactly whenever the mask contains
their non-zeros (always for union/none, and for shared when the masks agree).

Evaluation (``evaluate_points``): on a GPU every point in one batched pass
(``torch.func.functional_call`` + ``vmap`` over stacked weights), with the points at
exactly t=0 and t=1 evaluated again on one model, as the runs are, so they reproduce
the runs' own metrics bit for bit (batched matmuls agree only to float tolerance); on
CPU, where the batched pass measured slower (docs/performance.md), one model per point.
Models with BatchNorm get their running statistics recomputed at each point from
``bn_batches`` training batches (fixed, seeded order, not augmented) before evaluation.

Data: through ``runners.data.batches``, in memory or streamed from disk (ImageNet) alike:
evaluation on the splits' split objects (the training split: the fixed subset of
``data.train_eval_examples`` examples when set, as the runs record), BN recalibration and
curve training on the given training examples (``Batches.examples``; streamed: read
through the DataLoader, eval transform).

Scalars (on the part of the grid with t in [0, 1]; endpoints evaluated separately
when the grid lacks them):
- ``barrier``: max train_loss minus max(train_loss(0), train_loss(1)).
- ``barrier_linear``: max of train_loss(t) - ((1-t) L(0) + t L(1)).
- ``monotone``: 1 if train_loss never rises by more than MONOTONE_TOL from one
  point to the next, else 0; ``max_rise``: the largest rise (0 if none).
- ``mean_loss``: length-weighted mean train_loss, sum_j len_j (L_j + L_j+1)/2 / sum_j len_j,
  len_j = Euclidean distance in parameter space between consecutive points;
  ``length``: the path's length (sum of len_j).
- curves: ``curve_loss``, mean mini-batch loss over the last 10% of curve training.

Curve artifacts: ``curve_ckpt.pt`` (every ``checkpoint_every`` steps: control points,
optimizer state, step; a restarted job resumes from it) and ``curve.pt`` (the trained
curve: every point's state dict, endpoints included), from which evaluation is re-run
without training again.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from runners import artifacts, data, masks as M, models
from runners.evaluate import EVAL_BATCH, as_split, evaluate
from runners.optim import lr_at, make_optimizer
from runners.registry import implements, lookup
from studyspec.spec import paths as spec
from studyspec.spec.jobs import PathJob, parse_job
from studyspec.spec.train import LRSchedule

MONOTONE_TOL = 1e-4
_SNAP = 1e-9
MASK_POLICIES = ("shared", "from", "to", "union", "none")


# --- path kinds -------------------------------------------------------------------

@implements(spec.Linear)
class Linear:
    n_points = 2

    @classmethod
    def from_spec(cls, p) -> "Linear":
        return cls()

    def coeffs(self, t: float) -> list[float]:
        return [1.0 - t, t]


@implements(spec.Bezier)
class Bezier:
    """Bernstein coefficients of degree ``degree`` (degree + 1 points, endpoints first/last)."""

    @classmethod
    def from_spec(cls, p) -> "Bezier":
        return cls(p.degree)

    def __init__(self, degree: int):
        self.degree = int(degree)
        self.n_points = self.degree + 1

    def coeffs(self, t: float) -> list[float]:
        k = self.degree
        return [math.comb(k, i) * t**i * (1.0 - t) ** (k - i) for i in range(k + 1)]


@implements(spec.Polychain)
class Polychain:
    """Piecewise linear through ``bends`` points at t = i / (bends + 1)."""

    @classmethod
    def from_spec(cls, p) -> "Polychain":
        return cls(p.bends)

    def __init__(self, bends: int):
        self.bends = int(bends)
        self.n_points = self.bends + 2

    def coeffs(self, t: float) -> list[float]:
        n = self.bends + 1  # segments
        j = min(max(int(math.floor(t * n)), 0), n - 1)
        s = t * n - j
        c = [0.0] * self.n_points
        c[j], c[j + 1] = 1.0 - s, s
        if s == 0.0:
            c[j + 1] = 0.0
        return c


def curve_of(p):
    """The curve of a job's path (its kind's registered class, ``from_spec``)."""
    return lookup(p).from_spec(p)


def combine(states: list[dict], coeffs: list[float]) -> dict:
    """sum_i coeffs[i] * states[i] for float tensors; other entries from the first state.
    A coefficient of exactly 0 drops its term, so t=0 / t=1 reproduce the endpoints bit for bit."""
    out = {}
    for k, v0 in states[0].items():
        if not torch.is_floating_point(v0):
            out[k] = v0.clone()
            continue
        acc = None
        for s, c in zip(states, coeffs):
            if c == 0.0:
                continue
            term = s[k] if c == 1.0 else c * s[k]
            acc = term.clone() if acc is None else acc + term
        out[k] = acc if acc is not None else torch.zeros_like(v0)
    return out


def grid(points: int, lo: float, hi: float) -> list[float]:
    ts = np.linspace(float(lo), float(hi), int(points)).tolist()
    return [0.0 if abs(t) < _SNAP else 1.0 if abs(t - 1.0) < _SNAP else float(t) for t in ts]


# --- masks ------------------------------------------------------------------------

def policy_mask(policy: str, states: list[dict], model) -> dict | None:
    """The mask of a path (bool per prunable weight) from its endpoints' non-zeros; None = no mask."""
    if policy not in MASK_POLICIES:
        raise ValueError(f"unknown mask policy {policy!r}; known: {', '.join(MASK_POLICIES)}")
    if policy == "none":
        return None
    a, b = M.nonzero_masks(states[0], model), M.nonzero_masks(states[-1], model)
    if policy == "from":
        return a
    if policy == "to":
        return b
    op = (lambda u, v: u & v) if policy == "shared" else (lambda u, v: u | v)
    return {k: op(a[k], b[k]) for k in a}


# --- points and batched evaluation ------------------------------------------------

def stack_points(points: list[dict], coeffs: torch.Tensor, mask: dict | None) -> tuple[dict, dict]:
    """Weights of every evaluated point: ({name: tensor [P, *shape]} for float entries,
    {name: tensor} for the rest, taken from the first point). ``coeffs`` is [P, K]."""
    stacked, fixed = {}, {}
    for k, v0 in points[0].items():
        if not torch.is_floating_point(v0):
            fixed[k] = v0
            continue
        basis = torch.stack([p[k] for p in points]).reshape(len(points), -1)
        w = (coeffs.to(basis.device, basis.dtype) @ basis).reshape(len(coeffs), *v0.shape)
        if mask is not None and k in mask:
            w = w * mask[k].to(w.dtype)
        stacked[k] = w
    return stacked, fixed


def point_state(stacked: dict, fixed: dict, i: int) -> dict:
    return {**{k: v[i] for k, v in stacked.items()}, **fixed}


def has_batchnorm(model) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_bn(model, inputs: Iterable[torch.Tensor]) -> None:
    """Recompute every BatchNorm's running statistics as the plain average over the input
    batches ``inputs``, in train mode; the model is left in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for x in inputs:
        model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def bn_batches(n: int, batch_size: int, count: int, seed: int) -> list[torch.Tensor]:
    from runners.train import derive_seed

    gen = torch.Generator().manual_seed(derive_seed(seed, "bn"))
    out = []
    while len(out) < count:
        perm = torch.randperm(n, generator=gen)
        out += [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    return out[:count]


def recalibrate_points(model, stacked: dict, fixed: dict, inputs: Callable[[], Iterator[torch.Tensor]]) -> None:
    """BN recalibration of every point on the input batches ``inputs()`` (called once per
    point); writes the new buffers into ``stacked``."""
    bufs = [k for k, _ in model.named_buffers() if k in stacked]
    for i in range(len(next(iter(stacked.values())))):
        model.load_state_dict(point_state(stacked, fixed, i))
        recalibrate_bn(model, inputs())
        sd = model.state_dict()
        for k in bufs:
            stacked[k][i] = sd[k]


@torch.no_grad()
def evaluate_loop(model, stacked: dict, fixed: dict, x, y=None) -> tuple[list[float], list[float]]:
    """The reference: one model per point (load_state_dict + runners.evaluate.evaluate) on
    (x, y) or a split object ``x``."""
    split = as_split(x, y)
    losses, accs = [], []
    for i in range(len(next(iter(stacked.values())))):
        model.load_state_dict(point_state(stacked, fixed, i))
        loss, acc = evaluate(model, split)
        losses.append(loss)
        accs.append(acc)
    return losses, accs


@torch.no_grad()
def widest_activation(model, params: dict, x1: torch.Tensor) -> int:
    """The most numbers any module outputs for one example: a conv net's early feature
    maps, not its weights' widths, bound the memory of a batched pass."""
    from torch.func import functional_call

    sizes = [x1[0].numel()]

    def hook(module, args, out):
        if isinstance(out, torch.Tensor):
            sizes.append(out[0].numel())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        functional_call(model, params, (x1,))
    finally:
        for h in handles:
            h.remove()
    return max(sizes)


@torch.no_grad()
def evaluate_batched(model, stacked: dict, fixed: dict, x, y=None,
                     max_elements: int = 2**25) -> tuple[list[float], list[float]]:
    """Mean cross-entropy and accuracy of every point in one vmapped pass (eval mode), on
    (x, y) or a split object ``x``. Points are processed in chunks so that a chunk's widest
    activation holds about ``max_elements`` numbers."""
    from torch.func import functional_call, vmap

    split = as_split(x, y)
    model.eval()
    n_points = len(next(iter(stacked.values())))

    def forward(params, xb):
        return functional_call(model, {**params, **fixed}, (xb,))

    rows = min(len(split), getattr(split, "batch_size", EVAL_BATCH))
    widest = widest_activation(model, {**{k: v[0] for k, v in stacked.items()}, **fixed}, next(iter(split))[0][:1])
    chunk = max(1, min(n_points, max_elements // (rows * widest)))
    dev = next(iter(stacked.values())).device
    loss_sum = torch.zeros(n_points, dtype=torch.float64, device=dev)
    correct = torch.zeros(n_points, dtype=torch.int64, device=dev)

    batched = vmap(forward, in_dims=(0, None))
    for p0 in range(0, n_points, chunk):
        params = {k: v[p0:p0 + chunk] for k, v in stacked.items()}
        for xb, yb in split:
            out = batched(params, xb)  # [p, n, classes]
            p = out.shape[0]
            ce = F.cross_entropy(out.reshape(p * len(yb), -1), yb.repeat(p), reduction="none")
            loss_sum[p0:p0 + p] += ce.view(p, -1).sum(1, dtype=torch.float64)
            correct[p0:p0 + p] += (out.argmax(-1) == yb).sum(1)
    return (loss_sum / len(split)).tolist(), (correct.double() / len(split)).tolist()


def use_batched(stacked: dict) -> bool:
    """The batched pass where it pays: on a GPU. On CPU it measured slower than the loop
    (bench/paths_batched.py, docs/performance.md): the matmuls are compute-bound and the
    vmapped ones less efficient, so CPU jobs evaluate one model per point."""
    return next(iter(stacked.values())).is_cuda


def evaluate_points(model, stacked: dict, fixed: dict, x, y=None, exact=()) -> tuple[list[float], list[float]]:
    """Loss and accuracy of every point on (x, y) or a split object ``x``: batched on a GPU (the points at indices ``exact``,
    t = 0 and 1, then again on one model, so endpoints are bit-identical to the runs),
    else one model per point (every point bit-identical to a model evaluated alone)."""
    if not use_batched(stacked):
        return evaluate_loop(model, stacked, fixed, x, y)
    loss, acc = evaluate_batched(model, stacked, fixed, x, y)
    if exact:
        sub = {k: v[list(exact)] for k, v in stacked.items()}
        for i, l, a in zip(exact, *evaluate_loop(model, sub, fixed, x, y)):
            loss[i], acc[i] = l, a
    return loss, acc


def segment_lengths(stacked: dict, model) -> list[float]:
    """Euclidean distance between consecutive points, over the model's parameters."""
    names = [k for k, _ in model.named_parameters() if k in stacked]
    n = len(stacked[names[0]])
    sq = torch.zeros(max(n - 1, 0), dtype=torch.float64)
    for k in names:
        d = (stacked[k][1:] - stacked[k][:-1]).reshape(n - 1, -1).double()
        sq += (d * d).sum(1).cpu()
    return sq.sqrt().tolist()


# --- summaries --------------------------------------------------------------------

def summarize(ts: list[float], train_loss: list[float], endpoint_loss=None, lengths=None) -> dict:
    """Summaries of a loss curve on t in [0, 1]. ``endpoint_loss(t)`` evaluates t=0 or t=1
    when the grid lacks them; ``lengths[j]`` is the parameter-space length of the segment
    between grid points j and j+1 (default: the t step, i.e. a straight line)."""
    ts = [float(t) for t in ts]
    seg = lengths if lengths is not None else [abs(b - a) for a, b in zip(ts, ts[1:])]
    pts = {t: (l, j) for j, (t, l) in enumerate(zip(ts, train_loss)) if 0.0 <= t <= 1.0}
    for t in (0.0, 1.0):
        if t not in pts:
            if endpoint_loss is None:
                raise ValueError(f"grid lacks t={t} and no endpoint evaluator was given")
            pts[t] = (endpoint_loss(t), None)
    order = sorted(pts)
    seq = [pts[t][0] for t in order]
    l0, l1 = pts[0.0][0], pts[1.0][0]
    rises = [b - a for a, b in zip(seq, seq[1:])]
    # segment lengths between consecutive points on [0, 1]; an endpoint added off the
    # grid gets the t step scaled like its neighbour segment
    w = []
    for a, b in zip(order, order[1:]):
        ja, jb = pts[a][1], pts[b][1]
        if ja is not None and jb is not None and jb == ja + 1:
            w.append(float(seg[ja]))
        else:
            w.append(abs(b - a))
    total = sum(w)
    mean = (sum(wj * (u + v) / 2 for wj, u, v in zip(w, seq, seq[1:])) / total) if total > 0 else float(np.mean(seq))
    return {"barrier": float(max(seq) - max(l0, l1)),
            "barrier_linear": float(max(l - ((1 - t) * l0 + t * l1) for t, l in zip(order, seq))),
            "monotone": int(all(r <= MONOTONE_TOL for r in rises)),
            "max_rise": float(max([0.0] + rises)),
            "mean_loss": float(mean), "length": float(total),
            "train_loss_from": float(l0), "train_loss_to": float(l1)}


# --- curve training ---------------------------------------------------------------

def garipov_lr(step: int, base_lr: float, steps: int) -> float:
    """Garipov et al.: constant for the first half, linear decay to 1% by 90%, then held."""
    a = step / max(steps, 1)
    if a <= 0.5:
        return base_lr
    if a <= 0.9:
        return base_lr * (1.0 - 0.99 * (a - 0.5) / 0.4)
    return base_lr * 0.01


def curve_lr(step: int, base_lr: float, schedule: str, steps: int) -> float:
    if schedule == "garipov":
        return garipov_lr(step, base_lr, steps)
    return lr_at(step, base_lr, LRSchedule(name=schedule), steps)


class _StopCurve(Exception):
    """Raised by train_curve when ``stop_after`` is reached (tests of resumption)."""


def train_curve(job: PathJob, curve, ends: list[dict], mask: dict | None, model, batches: data.Batches,
                run_dir: Path, stop_after: int | None = None) -> tuple[list[dict], float]:
    """Train the control points of ``curve`` between the fixed ``ends``; return every
    point's state dict (endpoints included) and the mean loss of the last 10% of steps.
    Mini-batches: training examples of ``batches`` (not augmented) in an order that is a
    pure function of the step.
    Resumes from ``run_dir/curve_ckpt.pt``; ``stop_after`` stops (after its checkpoint)
    at that step, as a killed job would."""
    from torch.func import functional_call

    from runners.regimes import derive_seed

    ct = job.path.train
    steps = ct.steps
    bs = ct.batch_size or job.data.batch_size
    sched = ct.schedule
    every = ct.checkpoint_every
    sparse = job.path.subspace == "sparse" and mask is not None
    seed = job.seed
    K = curve.n_points
    param_names = [k for k, _ in model.named_parameters()]
    buffers = {k: v.clone() for k, v in ends[0].items() if k not in param_names}

    # control points start on the straight line between the endpoints (inside the mask if sparse)
    ctrl = {}
    for k in param_names:
        a, b = ends[0][k], ends[1][k]
        pts = []
        for i in range(1, K - 1):
            s = i / (K - 1)
            pts.append((1.0 - s) * a + s * b)
        w = torch.stack(pts)
        if sparse and k in mask:
            w = w * mask[k].to(w.dtype)
        ctrl[k] = w.requires_grad_(True)
    fmask = {k: mask[k].to(ctrl[k].dtype) for k in ctrl if sparse and k in mask}
    opt = make_optimizer(list(ctrl.values()), ct.optimizer)
    base_lr = ct.optimizer.lr

    start, losses = 0, []
    ckpt = Path(run_dir) / "curve_ckpt.pt"
    state = artifacts.load_resume(ckpt)
    if state is not None:
        with torch.no_grad():
            for k in ctrl:
                ctrl[k].copy_(state["ctrl"][k])
        opt.load_state_dict(state["opt"])
        start, losses = int(state["step"]), list(state["losses"])

    ts = torch.rand(steps, generator=torch.Generator().manual_seed(derive_seed(seed, "curve/t")),
                    dtype=torch.float64).tolist()
    n = batches.n_train
    per_epoch = math.ceil(n / bs)
    perms: dict[int, torch.Tensor] = {}

    def batch(step):  # a fresh permutation per epoch, a pure function of the step: resumable
        e, j = divmod(step, per_epoch)
        if e not in perms:
            perms.clear()
            perms[e] = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, f"curve/epoch/{e}")))
        return perms[e][j * bs:(j + 1) * bs]

    stream = batches.examples("train", (batch(step) for step in range(start, steps)))
    model.train()
    for step in range(start, steps):
        c = curve.coeffs(ts[step])
        params = {}
        for k in param_names:
            w = c[0] * ends[0][k] + c[-1] * ends[1][k]
            for i in range(1, K - 1):
                w = w + c[i] * ctrl[k][i - 1]
            params[k] = w
        xb, yb = next(stream)
        loss = F.cross_entropy(functional_call(model, {**params, **buffers}, (xb,)), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = curve_lr(step, base_lr, sched, steps)
        with torch.no_grad():
            for k, fm in fmask.items():
                ctrl[k].grad.mul_(fm)
        opt.step()
        with torch.no_grad():
            for k, fm in fmask.items():
                ctrl[k].mul_(fm)
        losses.append(float(loss.detach()))
        done = step + 1
        if done % every == 0 or done == steps or done == stop_after:
            artifacts.atomic_save({"step": done, "ctrl": {k: v.detach() for k, v in ctrl.items()},
                                   "opt": opt.state_dict(), "losses": losses}, ckpt)
        if stop_after is not None and done == stop_after and done < steps:
            raise _StopCurve(f"stopped after step {done}")

    points = []
    for i in range(K):
        if i == 0 or i == K - 1:
            points.append(ends[0] if i == 0 else ends[1])
            continue
        sd = dict(ends[0])  # buffers and non-float entries from the start; recalibrated at evaluation
        for k in param_names:
            sd[k] = ctrl[k][i - 1].detach().clone()
        points.append(sd)
    tail = losses[-max(1, len(losses) // 10):]
    return points, float(np.mean(tail))


# --- the job ----------------------------------------------------------------------

STOP_AFTER: int | None = None  # tests of resumption: stop curve training after this step, as a killed job


def run_path(job: PathJob | dict, run_dir: Path, inputs: dict[str, Path], cache_dir: Path) -> dict:
    """Run a path job (a PathJob, or its config dict, validated into one)."""
    job = job if isinstance(job, PathJob) else parse_job(job)
    p = job.path
    curve = curve_of(p)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    from runners.train import resolve_device

    device = resolve_device("auto")  # a GPU when there is one: there points are evaluated batched
    ends = [{k: v.to(device) for k, v in artifacts.load_state(ref, inputs).items()} for ref in (p.from_, p.to)]

    batches = data.batches(job.data, cache_dir, device)
    torch.manual_seed(job.seed)
    model = models.build(job.model, batches.input_shape, batches.n_classes).to(device)
    mask = policy_mask(p.mask, ends, model)

    scalars = {}
    if isinstance(curve, Linear):
        points = ends
        lo, hi = p.range
        ts = grid(p.points, lo, hi)
    else:
        saved = run_dir / "curve.pt"
        if saved.exists():
            obj = artifacts.load_obj(saved)
            points = [{k: v.to(device) for k, v in sd.items()} for sd in obj["points"]]
            scalars["curve_loss"] = obj["curve_loss"]
        else:
            points, scalars["curve_loss"] = train_curve(job, curve, ends, mask, model, batches, run_dir,
                                                        stop_after=STOP_AFTER)
            artifacts.atomic_save({"kind": p.kind, "n_points": curve.n_points, "points": points,
                                   "curve_loss": scalars["curve_loss"]}, saved)
        ts = grid(p.points, 0.0, 1.0)
        if p.subspace == "dense":
            mask = None  # dense control points leave the mask by design; the endpoints are sparse anyway

    extra = [t for t in (0.0, 1.0) if t not in ts]  # endpoints for the summaries
    all_ts = ts + extra
    coeffs = torch.tensor([curve.coeffs(t) for t in all_ts], dtype=torch.float64, device=device)
    stacked, fixed = stack_points(points, coeffs, mask)
    if has_batchnorm(model) and p.bn_batches > 0:
        index = bn_batches(batches.n_train, job.data.batch_size, p.bn_batches, job.seed)
        recalibrate_points(model, stacked, fixed, lambda: (x for x, _ in batches.examples("train", index)))

    rec = {}
    exact = [i for i, t in enumerate(all_ts) if t in (0.0, 1.0)]
    for split in ("train", "test"):
        rec[f"{split}_loss"], rec[f"{split}_acc"] = evaluate_points(model, stacked, fixed, batches.eval_split(split),
                                                                    None, exact)
    lengths = segment_lengths(stacked, model)
    endpoint = {t: rec["train_loss"][len(ts) + extra.index(t)] for t in extra}
    scalars.update(summarize(ts, rec["train_loss"][:len(ts)], endpoint_loss=endpoint.get, lengths=lengths))
    if mask is not None:
        scalars["mask_sparsity"] = M.sparsity(model, mask)  # fraction of prunable weights forced to zero
    return {"dim": "t", "coord": ts, "vars": {k: v[:len(ts)] for k, v in rec.items()}, "scalars": scalars}
