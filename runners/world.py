"""This process's place in a job of several processes, read from the environment
alone: no torch, so a worker can decide whether a job is already done without
importing it (runners/distributed.py sets up the process group from the same values).

- torchrun style: ``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``;
- else SLURM: ``SLURM_STEP_NUM_TASKS`` > 1 (the tasks of the job step), ``SLURM_PROCID``,
  ``SLURM_LOCALID``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place in the job, from the environment (no communication)."""
    env = os.environ
    if int(env.get("WORLD_SIZE", "1") or 1) > 1:
        return World(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    # a task of a job step (srun); not SLURM_NTASKS, which the batch script's one process sees too
    size = int(env.get("SLURM_STEP_NUM_TASKS") or 1)
    if size > 1:
        return World(int(env.get("SLURM_PROCID", 0)), size, int(env.get("SLURM_LOCALID", 0)))
    return World()
