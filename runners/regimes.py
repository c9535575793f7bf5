"""The training regimes, written once on top of runners/masks.py and runners/schedule.py.

A regime decides how the model starts (weights, mask) and what happens to the mask
during training. The loop (runners/train.py) calls, at every global step g:

    at_step(g)        events due before the evaluation at g (gradual pruning)
    ... init.pt / step_N.pt / evaluation at g ...
    after_eval(g)     events due after it (imp: prune, rewind, next round)
    after_backward(g) between backward and the optimizer step (rigl / set updates)

``local_step(g)`` maps the global step to (round, t): the position inside the round's
schedule (learning rate, eval, checkpoints). Only ``imp`` has more than one round.
``state_dict``/``load_state_dict`` hold what a resume needs beyond model, optimizer and mask.

Seeds (all derived from the job seed, see ``derive_seed``): the model is initialised
with ``torch.manual_seed(seed)``, except a fresh init of a masked-start regime
(fixed_mask, rigl, set with ``init: fresh``), which uses ``derive_seed(seed, "fresh")``
so scratch never shares its init with the prune run of its seed. Random masks use
``derive_seed(seed, "mask")``, shuffles ``"shuffle"``, SET's growth ``"grow"``.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path

import torch

from runners import artifacts, masks as M, models, optim, schedule
from runners.registry import implements, lookup
from studyspec.spec import regimes as spec
from studyspec.spec.jobs import ArtifactRef, TrainJob
from studyspec.store import current_name


def derive_seed(seed: int, purpose: str) -> int:
    """A deterministic seed for ``purpose``, distinct from ``seed`` itself."""
    h = hashlib.sha256(f"studyspec/{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(h[:8], "little") % (2**63 - 1)


def _gen(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose))


def load_mask(ref: ArtifactRef, inputs: dict, model) -> dict:
    """Mask from a reference: ``mask`` (or ``final`` when the run saved mask.pt)
    loads mask.pt; any other state artifact gives its non-zero pattern."""
    if ref.artifact in ("mask", "final"):
        p = Path(inputs[ref.job]) / artifacts.filename("mask")
        if ref.artifact == "mask" or p.exists():
            m = M.load(artifacts.resolve(ArtifactRef(job=ref.job, artifact="mask"), inputs))
            M.check(m, model)
            return m
    return M.nonzero_masks(artifacts.load_state(ref, inputs), model)


class Context:
    """What regimes may touch: the job, the model, the optimizer, the mask."""

    def __init__(self, job: TrainJob, run_dir: Path, inputs: dict, steps: int, in_shape: tuple[int, ...],
                 n_classes: int, device: torch.device):
        self.job, self.run_dir, self.inputs = job, Path(run_dir), inputs
        self.seed, self.steps, self.device = job.seed, int(steps), device
        self.in_shape, self.n_classes = tuple(in_shape), n_classes
        self.model: torch.nn.Module | None = None
        self.opt: torch.optim.Optimizer | None = None
        self.masks: dict | None = None  # None: dense
        self.precision = None  # runners.precision.Precision of a training job

    def build(self, widths: list[int] | None = None, seed: int | None = None) -> torch.nn.Module:
        """The job's model (``widths``: other layer widths, small_dense), initialised from ``seed``
        (default: the job's)."""
        torch.manual_seed(self.seed if seed is None else seed)
        return models.build(self.job.model, self.in_shape, self.n_classes, widths).to(self.device)

    def new_optimizer(self) -> None:
        self.opt = optim.make_optimizer(self.model.parameters(), self.job.train.optimizer)

    def set_masks(self, masks: dict) -> None:
        self.masks = {k: v.to(self.device) for k, v in masks.items()}
        M.apply(self.model, self.masks)


class Regime:
    """A regime's implementation; ``self.r`` is the job's resolved regime (its spec class,
    with ``sparsity`` set when the regime uses the study's, references as ArtifactRefs)."""

    rounds = 1

    def __init__(self, r, ctx: Context):
        self.r, self.ctx = r, ctx

    def start(self) -> None:
        """Set ctx.model (and ctx.masks) as at step 0."""
        self.ctx.model = self.ctx.build()

    def total_steps(self) -> int:
        return self.ctx.steps

    def local_step(self, g: int) -> tuple[int, int]:
        return 0, g

    def at_step(self, g: int) -> None:
        pass

    def after_eval(self, g: int, rec: dict) -> None:
        pass

    def after_backward(self, g: int) -> bool:
        """Return True when the mask changed."""
        return False

    def scalars(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@implements(spec.Dense)
class Dense(Regime):
    pass


def _magnitude(model, sparsity: float, r, within=None) -> dict:
    """Magnitude mask at ``sparsity``: per layer (``distribution``) or global (``scope``)."""
    scores = M.magnitude_scores(model, within)
    if r.scope == "global":
        return M.global_scored_masks(scores, sparsity)
    return M.scored_masks(scores, M.layer_sparsities(model, sparsity, r.distribution))


@implements(spec.Prune)
class Prune(Regime):
    """Gradual magnitude pruning (Zhu & Gupta) on runners.schedule; one-shot when begin == end."""

    def start(self):
        super().start()
        ps = self.r.schedule
        self.begin, self.end = schedule.step_bounds(ps.begin, ps.end, self.ctx.steps)
        self.s_i, self.s_f, self.every = ps.initial, self.r.sparsity, ps.every

    def at_step(self, g):
        if schedule.is_update_step(g, self.begin, self.end, self.every):
            s_t = schedule.cubic_sparsity(g, self.s_i, self.s_f, self.begin, self.end)
            self.ctx.set_masks(_magnitude(self.ctx.model, s_t, self.r))


@implements(spec.Imp)
class Imp(Regime):
    """Iterative magnitude pruning with rewinding. Round 0 trains the dense model for
    ``steps`` steps; after round r (r < rounds) the ``fraction`` of the remaining weights
    with smallest magnitude is pruned (cumulative sparsity 1 - (1 - fraction)**(r+1)),
    the survivors are reset to their values at step ``rewind`` of round 0 (rewind.pt;
    init.pt when 0), the optimizer state is reset, and round r+1 trains steps
    rewind..steps with the same lr schedule. Global step g counts every optimizer step:
    total = steps + rounds * (steps - rewind). ``step_N.pt`` checkpoints are of round 0."""

    def start(self):
        super().start()
        self.rounds = self.r.rounds
        self.k = self.r.rewind
        if not 0 <= self.k < self.ctx.steps:
            raise ValueError(f"imp rewind step {self.k} must be in [0, {self.ctx.steps})")
        f = self.r.fraction
        self.fraction = f if f is not None else 1.0 - (1.0 - self.r.sparsity) ** (1.0 / self.rounds)
        self.round, self.round_start = 0, 0
        self.results: dict = {}

    def total_steps(self):
        return self.r.trained_steps(self.ctx.steps)

    def local_step(self, g):
        return self.round, (0 if self.round == 0 else self.k) + (g - self.round_start)

    def at_step(self, g):
        if self.round == 0 and g == self.k and self.k > 0:
            artifacts.save_state(self.ctx.model, self.ctx.run_dir / "rewind.pt")

    def after_eval(self, g, rec):
        r, t = self.local_step(g)
        if t != self.ctx.steps:
            return
        for k, v in rec.items():
            self.results[f"round{r}_{k}"] = v[-1]
        if r == self.rounds:
            return
        sparsity = 1.0 - (1.0 - self.fraction) ** (r + 1)
        masks = _magnitude(self.ctx.model, sparsity, self.r, within=self.ctx.masks)
        rewind = artifacts.load_obj(self.ctx.run_dir / ("rewind.pt" if self.k > 0 else "init.pt"))
        self.ctx.model.load_state_dict(rewind)
        self.ctx.set_masks(masks)
        self.ctx.new_optimizer()
        self.round, self.round_start = r + 1, g

    def scalars(self):
        return dict(self.results, fraction_per_round=self.fraction)

    def state_dict(self):
        return {"round": self.round, "round_start": self.round_start, "results": dict(self.results)}

    def load_state_dict(self, state):
        self.round, self.round_start = int(state["round"]), int(state["round_start"])
        self.results = {current_name(k): v for k, v in state["results"].items()}  # a checkpoint of older names


class MaskedStart(Regime):
    """fixed_mask (and the start of rigl / set): the mask from another run or random from a
    distribution at the study's sparsity, optionally shuffled within each layer; init fresh
    (optionally scaled by 1/sqrt(layer density) for the reduced fan-in) or another run's weights."""

    def start(self):
        ctx, r = self.ctx, self.r
        fresh = r.init == "fresh"
        ctx.model = ctx.build(seed=derive_seed(ctx.seed, "fresh") if fresh else None)
        if not fresh:
            ctx.model.load_state_dict(artifacts.load_state(r.init, ctx.inputs))
        if r.mask == "random":
            sp = M.layer_sparsities(ctx.model, r.sparsity, r.distribution)
            masks = M.random_masks(ctx.model, sp, _gen(ctx.seed, "mask"))
        else:
            masks = load_mask(r.mask, ctx.inputs, ctx.model)
        if r.shuffle:
            masks = M.shuffle_masks({k: v.cpu() for k, v in masks.items()}, _gen(ctx.seed, "shuffle"))
        if fresh and r.scale_init:
            params = M.prunable(ctx.model)
            with torch.no_grad():
                for name, m in masks.items():
                    density = float(m.sum()) / m.numel()
                    if density > 0:
                        params[name].mul_(1.0 / math.sqrt(density))
        ctx.set_masks(masks)


@implements(spec.FixedMask)
class FixedMask(MaskedStart):
    pass


class DynamicSparse(MaskedStart):
    """RigL / SET: at t = every, 2*every, ... while t < stop * steps, each layer drops
    round(f_t * active) of its active weights with smallest |w| and grows as many inactive
    ones, at zero, with their optimizer state zeroed. f_t = drop_fraction/2 * (1 + cos(pi t / t_stop))."""

    def start(self):
        super().start()
        self.every, self.f0 = self.r.every, self.r.drop_fraction
        self.t_stop = int(round(self.r.stop * self.ctx.steps))
        self.gen = _gen(self.ctx.seed, "grow")
        self.updates = 0

    def drop_fraction(self, t: int) -> float:
        return self.f0 / 2.0 * (1.0 + math.cos(math.pi * t / max(self.t_stop, 1)))

    def grow_score(self, p: torch.nn.Parameter) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def after_backward(self, g):
        if not (0 < g < self.t_stop and g % self.every == 0):
            return False
        f = self.drop_fraction(g)
        params, new = M.prunable(self.ctx.model), {}
        for name, m in self.ctx.masks.items():
            p = params[name]
            new[name] = M.drop_grow(m, p, int(round(f * int(m.sum()))), self.grow_score(p))
            p.masked_fill_(~new[name], 0.0)
            p.masked_fill_(new[name] & ~m, 0.0)  # grown weights start at zero
            optim.reset_state(self.ctx.opt, p, new[name] & m)
        self.ctx.masks = new
        self.updates += 1
        return True

    def scalars(self):
        return {"mask_updates": self.updates}

    def state_dict(self):
        return {"gen": self.gen.get_state(), "updates": self.updates}

    def load_state_dict(self, state):
        self.gen.set_state(state["gen"])
        self.updates = int(state["updates"])


@implements(spec.RigL)
class RigL(DynamicSparse):
    def grow_score(self, p):
        return p.grad.abs() if p.grad is not None else torch.zeros_like(p)


@implements(spec.SET)
class SET(DynamicSparse):
    def grow_score(self, p):
        return torch.rand(p.shape, generator=self.gen).to(p.device)


def n_params(model, in_shape, n_classes: int, widths=None) -> int:
    """Parameters of the model (built on the meta device: no memory, no init, no RNG draws)."""
    with torch.device("meta"):
        return sum(p.numel() for p in models.build(model, in_shape, n_classes, widths).parameters())


def small_dense_widths(model, sparsity: float, in_shape, n_classes: int) -> tuple[list[int], int, int]:
    """The layer widths whose dense parameter count best matches the non-zeros of the
    sparse model at ``sparsity`` (kept prunable weights + all other parameters: biases,
    BatchNorm), counted the same way for every arch. Every width (``runners.models.widths``:
    hidden widths, channels, stage widths, ...) is scaled by one factor f (widths
    round(w * f), at least 1; f solved by bisection), then adjusted to land closest to the
    target: MLPs (mlp, lenet300_100) the last two hidden widths by up to 3 units each (the
    first rule, kept so that existing small_dense results stand); the conv nets every
    width by up to 1 unit, so the architecture keeps its proportions. Ties go to the
    smallest change. Returns (widths, their parameter count, the target)."""
    with torch.device("meta"):
        full = models.build(model, in_shape, n_classes)
    n_prunable = sum(p.numel() for p in M.prunable(full).values())
    n_other = sum(p.numel() for p in full.parameters()) - n_prunable
    target = M.n_keep(n_prunable, sparsity) + n_other
    base = models.widths(model)
    counts: dict[tuple, int] = {}

    def count(ws):
        key = tuple(ws)
        if key not in counts:
            counts[key] = n_params(model, in_shape, n_classes, list(ws))
        return counts[key]

    scaled = lambda f: [max(1, int(round(w * f))) for w in base]
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(scaled(mid)) < target else (lo, mid)
    best = min((scaled(lo), scaled(hi)), key=lambda ws: abs(count(ws) - target))
    if models.arch(model).mlp_like:
        which, radius = range(max(0, len(best) - 2), len(best)), 3
    else:
        which, radius = range(len(best)), 1
    candidates = [best]
    for deltas in itertools.product(range(-radius, radius + 1), repeat=len(which)):
        ws = list(best)
        for i, d in zip(which, deltas):
            ws[i] = max(1, ws[i] + d)
        candidates.append(ws)
    best = min(candidates, key=lambda ws: (abs(count(ws) - target), sum(abs(a - b) for a, b in zip(ws, best))))
    return best, count(best), target


@implements(spec.SmallDense)
class SmallDense(Regime):
    def start(self):
        ws, n, target = small_dense_widths(self.ctx.job.model, self.r.sparsity, self.ctx.in_shape, self.ctx.n_classes)
        self.widths, self.n, self.target = ws, n, target
        self.ctx.model = self.ctx.build(ws)

    def scalars(self):
        return {"small_dense_params": self.n, "small_dense_target": self.target,
                **{f"small_dense_width{i}": w for i, w in enumerate(self.widths)}}


def make(r, ctx: Context) -> Regime:
    """The implementation of the job's regime ``r`` (registered against its spec class)."""
    return lookup(r)(r, ctx)
