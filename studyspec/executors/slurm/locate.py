"""Where in the spec a SLURM setting that SLURM (or the executor) refuses came from:
a located problem pointing at launch.slurm[.<kind>].<field>, or at the command line."""

from __future__ import annotations

import subprocess

from ...errors import Problem


def rejected(loaded, kind: str, message: str) -> Problem:
    """Point a rejected launch setting at its place in the spec when it came from there."""
    field_of = next((f for f, words in (("partition", ("partition",)), ("account", ("account",)),
                                        ("qos", ("qos",)), ("time", ("time limit",)),
                                        ("gpus_per_node", ("gres", "gpu")), ("constraint", ("feature", "constraint")))
                     if any(w in message.lower() for w in words)), None)
    paths = []
    if field_of:
        paths = [("launch", "slurm", kind, field_of), ("launch", "slurm", field_of)]
    paths += [("launch", "slurm", kind), ("launch", "slurm"), ("launch",)]
    for path in paths:
        pos, _ = loaded.source.position(path)
        if pos and has(loaded.source.data, path):
            return loaded.problem(path, f"SLURM rejects the {kind} jobs' settings: {message}",
                                  hint=hint(field_of))
    return Problem(f"SLURM rejects the {kind} jobs' settings: {message}", file=loaded.source.file,
                   where=f"launch.slurm.{kind}", hint=hint(field_of))


def several_tasks(loaded, kind: str, message: str) -> Problem:
    """Point a refused nodes/tasks_per_node setting at its place in the spec."""
    fix = f"set nodes and tasks_per_node under launch.slurm.train, or launch.slurm.{kind}: {{nodes: 1, tasks_per_node: 1}}"
    for path in [("launch", "slurm", kind, "tasks_per_node"), ("launch", "slurm", kind, "nodes"),
                 ("launch", "slurm", "tasks_per_node"), ("launch", "slurm", "nodes"), ("launch", "slurm")]:
        if has(loaded.source.data, path):
            return loaded.problem(path, message, hint=fix)
    return Problem(message, file="command line", where=f"launch setting {kind}", hint=fix)


def has(data, path) -> bool:
    for p in path:
        if not isinstance(data, dict) or p not in data:
            return False
        data = data[p]
    return True


def hint(field_of: str | None) -> str:
    if field_of == "partition":
        parts = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
        return f"partitions here: {', '.join(p.rstrip('*') for p in parts) or '(none)'}"
    return ("check the settings against `sinfo -o '%P %c %m %G %l'` (partitions, CPUs, memory, GPUs, "
            "time limits); override them with studyspec launch --partition/--cpus-per-task/--mem/--time ...")
