"""What a job ran under, so that a result can be traced to the software that produced it.

``record()`` -> a JSON-ready dict: Python, torch (and its CUDA, cuDNN and GPUs when there
are any), every installed distribution with its version (``importlib.metadata``, first
on ``sys.path`` wins, as for imports), the host, the SLURM job, and a few environment
variables that tell how the job was set up (module loads, virtual or conda environment,
container, ``STUDYSPEC_*``; never the whole environment, which may hold secrets).
The worker writes it to ``<run dir>/environment.json`` each time the job starts.

``versions(rec)`` -> the compact summary a shard carries (``versions``): python, torch,
cuda and cudnn when present, and ``packages``, a hash of the sorted ``name==version``
list; collect compares these across a study's jobs (studyspec/environment.py).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import sys
import time

FILE = "environment.json"
# environment variables worth keeping: how the job's software was set up, and where it ran
VARS = ("LOADEDMODULES", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "APPTAINER_CONTAINER",
        "APPTAINER_NAME", "SINGULARITY_CONTAINER", "SINGULARITY_NAME", "CUDA_VISIBLE_DEVICES",
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONPATH")
SLURM_VARS = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID",
              "array_task_id": "SLURM_ARRAY_TASK_ID", "restart": "SLURM_RESTART_COUNT",
              "nodes": "SLURM_JOB_NODELIST", "partition": "SLURM_JOB_PARTITION",
              "cpus_per_task": "SLURM_CPUS_PER_TASK", "cluster": "SLURM_CLUSTER_NAME"}


_PACKAGES: dict[str, str] | None = None


def packages() -> dict[str, str]:
    """Installed distribution name (normalised, PEP 503) -> version, as the import system sees them.

    Read once per process (a long-lived worker reads it before forking its jobs: what its
    imports were made from); each distribution's Name and Version are read from the head
    of its metadata file (parsing every file as e-mail, as ``dist.metadata`` does, took
    0.4 s of each job's CPU for ~200 distributions)."""
    global _PACKAGES
    if _PACKAGES is None:
        out: dict[str, str] = {}
        for dist in importlib.metadata.distributions():
            name, version = _name_version(dist)
            if name:
                out.setdefault(re.sub(r"[-_.]+", "-", name).lower(), version)
        _PACKAGES = dict(sorted(out.items()))
    return dict(_PACKAGES)


def _name_version(dist) -> tuple[str | None, str | None]:
    """(Name, Version) of a distribution: the first of each among the metadata file's headers
    (the lines before the first empty one); from ``dist.metadata`` when the head lacks one."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if not sep or line[:1].isspace():
            continue
        key = key.strip().lower()
        if key == "name" and name is None:
            name = value.strip()
        elif key == "version" and version is None:
            version = value.strip()
    if name is None or version is None:  # an unusual file: the e-mail parser decides
        return dist.metadata["Name"], dist.version
    return name, version


def packages_hash(pkgs: dict[str, str]) -> str:
    text = "\n".join(f"{k}=={v}" for k, v in sorted(pkgs.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _torch() -> dict:
    import torch

    out: dict = {"version": torch.__version__, "cuda": torch.version.cuda}
    if torch.backends.cudnn.is_available():
        out["cudnn"] = torch.backends.cudnn.version()
    if torch.cuda.is_available():
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return out


def record() -> dict:
    pkgs = packages()
    env = {k: os.environ[k] for k in VARS if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("STUDYSPEC_")})
    slurm = {k: os.environ[v] for k, v in SLURM_VARS.items() if v in os.environ}
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "torch": _torch(),
        "slurm": slurm,
        "env": dict(sorted(env.items())),
        "packages_hash": packages_hash(pkgs),
        "packages": pkgs,
    }


def versions(rec: dict) -> dict[str, str]:
    """The compact summary of a record that a job's shard carries."""
    out = {"python": rec["python"], "torch": rec["torch"]["version"], "packages": rec["packages_hash"]}
    if rec["torch"].get("cuda"):
        out["cuda"] = str(rec["torch"]["cuda"])
    if rec["torch"].get("cudnn"):
        out["cudnn"] = str(rec["torch"]["cudnn"])
    return out
