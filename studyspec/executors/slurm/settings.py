"""SLURM settings of one job kind, and how they become submitit's parameters.

`settings` resolves the layers (defaults < spec launch.slurm < launch.slurm.<kind> <
command line < command line for <kind>); `executor_args` and `parameters` are the one
place where a resolved setting turns into a `submitit.SlurmExecutor(...)` argument or an
`update_parameters` argument (new settings, such as a per-kind `setup`, go here)."""

from __future__ import annotations

DEFAULTS = {"time": "60", "nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 1}
FIELDS = ("partition", "account", "qos", "time", "nodes", "tasks_per_node", "gpus_per_node",
          "cpus_per_task", "mem", "constraint", "array_parallelism", "extra", "setup", "python")
KINDS = ("train", "path")
MAX_TIMEOUTS = 100  # time-limit requeues of one job before submitit gives up on it


def settings(launch_slurm, kind: str, cli: dict | None = None, cli_kind: dict | None = None) -> dict:
    """Resolved resources of one job kind: defaults < spec launch.slurm < spec launch.slurm.<kind>
    < command-line options < command-line options for <kind>; `setup` lines add up in that order."""
    out = {**dict.fromkeys(FIELDS), **DEFAULTS, "extra": {}, "setup": []}
    layers = [launch_slurm.model_dump(include=set(FIELDS)),
              getattr(launch_slurm, kind).model_dump(include=set(FIELDS)), cli or {}, cli_kind or {}]
    for layer in layers:
        for k, v in layer.items():
            if k == "extra":
                out["extra"] = {**out["extra"], **(v or {})}
            elif k == "setup":
                out["setup"] = [*out["setup"], *(v or [])]
            elif v is not None:
                out[k] = v
    return out


def minutes(limit: str) -> float:
    """SLURM time limit -> minutes."""
    limit = str(limit)
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # D-HH[:MM[:SS]]
        parts += [0] * (3 - len(parts))
        return int(days) * 1440 + parts[0] * 60 + parts[1] + parts[2] / 60
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:  # MM:SS
        return parts[0] + parts[1] / 60
    return parts[0] * 60 + parts[1] + parts[2] / 60


def signal_delay(res: dict) -> int:
    """Seconds before the time limit at which submitit's signal (USR2) asks the job to requeue."""
    limit = minutes(res["time"])
    return 120 if limit >= 10 else max(10, int(limit * 60 / 5))


def executor_args(res: dict) -> dict:
    """Arguments of `submitit.SlurmExecutor(folder, **executor_args(res))` for jobs with `res`
    (`python`: the command that runs Python in a task, e.g. a container wrapper)."""
    return {"max_num_timeout": MAX_TIMEOUTS, **({"python": res["python"]} if res.get("python") else {})}


def parameters(res: dict, name: str, tasks: int, dependency: list[str] | None = None) -> dict:
    """submitit SlurmExecutor parameters for an array of `tasks` tasks of one kind with `res`
    (settings()), named `name`, waiting on `dependency` (SLURM dependency terms)."""
    limit = minutes(res["time"])
    tasks_per_node = res["tasks_per_node"]
    p: dict = {
        "job_name": name,
        "time": max(1, int(limit)),  # whole minutes: submitit times the job with it
        "nodes": res["nodes"],
        "ntasks_per_node": tasks_per_node,
        "cpus_per_task": res["cpus_per_task"],
        "signal_delay_s": signal_delay(res),
        # every task of an array may run at once unless the user limits it (submitit's default is 256)
        "array_parallelism": res["array_parallelism"] or tasks,
        "stderr_to_stdout": True,
        # SLURM >= 22.11 srun no longer inherits --cpus-per-task from the allocation
        "srun_args": [f"--cpus-per-task={res['cpus_per_task']}"],
    }
    if res.get("setup"):
        p["setup"] = list(res["setup"])  # shell lines before srun: module loads, activation, exports
    for key in ("partition", "account", "qos", "mem", "constraint"):
        if res.get(key):
            p[key] = res[key]
    if res["gpus_per_node"]:
        p["gpus_per_node"] = res["gpus_per_node"]
    extra: dict = {"requeue": True}
    if limit != int(limit):
        extra["time"] = str(res["time"])  # e.g. 5:30, which whole minutes cannot say
    if dependency:
        extra["dependency"] = ",".join(dependency)
        extra["kill_on_invalid_dep"] = "yes"
    for key, value in res["extra"].items():
        key = key.lstrip("-").replace("-", "_")  # submitit writes --a-b for a_b
        if value is not False:
            extra[key] = value
    p["additional_parameters"] = extra
    return p


def sbatch_lines(params: dict, tasks: int = 1) -> list[str]:
    """The #SBATCH lines submitit writes for `params` and an array of `tasks` tasks (for
    `sbatch --test-only` before queueing, and for the tests)."""
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command="true", folder="/tmp", map_count=tasks if tasks > 1 else None, **params)
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]
