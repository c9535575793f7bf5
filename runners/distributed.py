"""Data-parallel training over several processes (torch.distributed), set up from the
environment a SLURM task (or torchrun) gets. With one process nothing here does anything.

World (``world()``, runners/world.py: read from the environment, no communication, no torch):

- torchrun style: ``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``;
- else SLURM: ``SLURM_STEP_NUM_TASKS`` > 1 (the tasks of the job step), ``SLURM_PROCID``,
  ``SLURM_LOCALID``. The batch script starts one worker per task with ``srun``
  (studyspec/executors/slurm.py). The batch script's own process is one process even in
  a job of several tasks (it sees ``SLURM_NTASKS`` > 1, but no step).

``init()`` joins the process group once (idempotent): ``MASTER_ADDR`` (if unset: the
address of the first node of ``SLURM_JOB_NODELIST`` per ``scontrol show node``, its
NodeAddr, or 127.0.0.1 without SLURM), ``MASTER_PORT`` (if unset: 20000 + SLURM job id
mod 20000), backend gloo for CPU tensors and nccl for CUDA ones (``cpu:gloo,cuda:nccl``
when CUDA is available).

How the training loop (runners/train.py) uses it, so that every rank holds the same
weights and masks at every step:

- every rank builds the model and the regime the same way and loads the same resume
  checkpoint; ``broadcast_state`` then copies rank 0's parameters and buffers to all;
- every rank draws the same global mini-batch (same data-order generator) and takes its
  contiguous slice (``part`` and runners.data.Batches.next_part: streamed data is read
  and decoded only for the rank's own slice); its loss is the slice's summed loss divided by the
  global batch size, so the sum over ranks (``all_reduce_grads``) is the gradient of the
  batch mean, the same as one process (to float rounding). The all-reduce comes right after backward, before
  the regime's ``after_backward`` (RigL reads gradients) and the mask, so every rank
  takes the same decisions from the same numbers;
- BatchNorm normalises with each rank's slice, and its running statistics are rank 0's
  (``broadcast_buffers`` after each step, as DistributedDataParallel does);
- evaluation is shared: each rank evaluates its contiguous share of each split
  (``part`` of a split object; streamed data is read only by its rank), then losses,
  counts and gradients are summed over the ranks (``all_reduce_sums``,
  ``all_reduce_grads``), so every rank records the same numbers; only rank 0 writes files
  (``is_main``; runners.artifacts.atomic_save and checkpoint.remove do nothing elsewhere).
"""
from __future__ import annotations

import datetime
import os
import subprocess

import torch
import torch.distributed as dist

from runners.world import World, world  # noqa: F401  (World: API)


def is_main() -> bool:
    return world().main


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def master_addr() -> str:
    if os.environ.get("MASTER_ADDR"):
        return os.environ["MASTER_ADDR"]
    nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
    if not nodes:
        return "127.0.0.1"
    first = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                           check=True).stdout.split()[0]
    # the node's address as SLURM reaches it (virtual nodes n1, n2 ... of one host have no DNS name)
    out = subprocess.run(["scontrol", "show", "node", first, "-o"], capture_output=True, text=True).stdout
    addr = next((f.split("=", 1)[1] for f in out.split() if f.startswith("NodeAddr=")), "")
    return addr or first


def master_port() -> int:
    if os.environ.get("MASTER_PORT"):
        return int(os.environ["MASTER_PORT"])
    job = int(os.environ.get("SLURM_JOB_ID", "0") or 0)
    return 20000 + job % 20000


def init(timeout_s: float = 1800.0) -> World:
    """Join the job's process group when it has several processes (once); this process's World."""
    w = world()
    if w.size == 1 or active():
        return w
    if torch.cuda.is_available():
        torch.cuda.set_device(w.local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, init_method=f"tcp://{master_addr()}:{master_port()}", rank=w.rank,
                            world_size=w.size, timeout=datetime.timedelta(seconds=timeout_s))
    return w


def device(name: torch.device) -> torch.device:
    """A CUDA device of a multi-process job is the task's own GPU (its local rank)."""
    if name.type == "cuda" and name.index is None and world().size > 1:
        return torch.device("cuda", torch.cuda.current_device())
    return name


def broadcast_object(obj):
    """rank 0's ``obj`` on every rank (``obj`` itself with one process)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_state(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if active():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)


@torch.no_grad()
def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if active():
        for t in model.buffers():
            dist.broadcast(t, src=0)


def part() -> tuple[int, int]:
    """(rank, number of processes) for slicing the global batch: (0, 1) with one process.
    The slice itself comes from runners.data.Batches.next_part, so streamed data reads and
    decodes only this rank's examples."""
    w = world()
    return (w.rank, w.size) if active() else (0, 1)


def all_reduce_sums(*values: float) -> list[float]:
    """Each number summed over the ranks (float64; counts stay exact below 2**53)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def all_reduce_grads(model: torch.nn.Module) -> None:
    """Sum every parameter's gradient over the ranks, in one flat buffer (missing = 0)."""
    if not active():
        return
    params = [p for p in model.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    i = 0
    for p in params:
        g = flat[i:i + p.numel()].view_as(p)
        i += p.numel()
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)


def _signature(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Two exact integer checksums of each tensor's bytes (order-independent sums, so the
    same bits give the same numbers on any machine)."""
    out = []
    for t in tensors:
        b = t.detach().contiguous().reshape(-1).view(torch.uint8).to(torch.int64)
        pos = torch.arange(len(b), device=b.device) % 65521 + 1
        out += [b.sum(), (b * pos).sum()]
    return torch.stack(out)


@torch.no_grad()
def check_identical(model: torch.nn.Module, masks: dict | None) -> None:
    """Raise unless every rank holds bit-identical parameters, buffers and masks."""
    if not active():
        return
    tensors = [*model.state_dict().values(), *(masks or {}).values()]
    sig = _signature(tensors)
    sigs = [torch.empty_like(sig) for _ in range(dist.get_world_size())]
    dist.all_gather(sigs, sig)
    differ = [r for r, s in enumerate(sigs) if not torch.equal(s, sigs[0])]
    if differ:
        raise RuntimeError(f"ranks {differ} hold other weights or masks than rank 0 after training")


def barrier() -> None:
    if active():
        dist.barrier()


def close() -> None:
    if active():
        dist.destroy_process_group()
