"""Artifact files of a run directory and references to them.

| artifact  | file        |
|-----------|-------------|
| init      | init.pt     |  state_dict at step 0, mask applied
| final     | final.pt    |  state_dict after the last step
| mask      | mask.pt     |  {param name: bool tensor}, final mask (runs with a mask)
| step[N]   | step_N.pt   |  state_dict after N steps

A reference is an ``ArtifactRef`` (studyspec.spec.jobs: ``job``, ``artifact``; in job.json
``{"job": id, "artifact": name}``); the file lives under ``inputs[job]``.
All writes are atomic (studyspec.atomic: temp file in the same directory + rename). In a job of
several processes (runners/distributed.py) only rank 0 writes; the others skip the write.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import torch

from runners import distributed
from studyspec.atomic import write_with
from studyspec.spec.jobs import ArtifactRef

_STEP = re.compile(r"^step\[(\d+)\]$")
_FILES = {"init": "init.pt", "final": "final.pt", "mask": "mask.pt"}


def filename(artifact: str) -> str:
    if artifact in _FILES:
        return _FILES[artifact]
    m = _STEP.match(artifact)
    if m:
        return step_filename(int(m.group(1)))
    raise ValueError(f"unknown artifact {artifact!r}; known: init, final, mask, step[N]")


def step_filename(n: int) -> str:
    return f"step_{int(n)}.pt"


def resolve(ref: ArtifactRef, inputs: dict[str, Path]) -> Path:
    """Path of the file a reference names; FileNotFoundError if it is missing."""
    if ref.job not in inputs:
        raise KeyError(f"reference to job {ref.job!r}, which is not among this job's inputs {sorted(inputs)}")
    path = Path(inputs[ref.job]) / filename(ref.artifact)
    if not path.exists():
        raise FileNotFoundError(f"artifact {ref.artifact!r} of job {ref.job} not found: {path}")
    return path


def atomic_save(obj, path: Path) -> None:
    """torch.save through an open file: given a path, torch names the zip's records after the
    (random) temporary file, so the same tensors gave other bytes and another artifact hash."""
    if not distributed.is_main():
        return

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    write_with(path, write)


def save_state(model: torch.nn.Module, path: Path) -> None:
    atomic_save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)


def load_obj(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def load_resume(path: Path) -> dict | None:
    """A resume checkpoint (resume.pt, curve_ckpt.pt), or None: absent, or unreadable
    (truncated, garbage, not a mapping), in which case it is set aside as ``<name>.bad-<time>``
    with a warning and the job starts again from the beginning."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_obj(path)
        if not isinstance(state, dict):
            raise ValueError(f"holds {type(state).__name__}, not a checkpoint")
        return state
    except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint: set aside, never fatal
        if not distributed.is_main():
            return None
        aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, aside)
        print(f"warning: {path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:200]}); "
              f"set aside as {aside.name}, starting this job from the beginning", file=sys.stderr, flush=True)
        return None


def load_state(ref: ArtifactRef, inputs: dict[str, Path]) -> dict:
    if ref.artifact == "mask":
        raise ValueError(f"reference {ref} names a mask where weights are needed")
    return load_obj(resolve(ref, inputs))
