"""The SLURM executor: the whole DAG queued at once through submitit, one job array per
group of jobs with exact per-task dependencies (`aftercorr`), and `launch` returns as
soon as it is submitted. Modules by responsibility:

- settings.py: resolved settings per job kind, and their mapping onto submitit's parameters;
- overrides.py: settings given on the command line;
- locate.py: where a refused setting sits in the spec (located errors);
- arrays.py: the split into arrays, array indices and no-op padding tasks;
- launch.py: checks (`sbatch --test-only`), submission with submitit, the record;
- task.py: what runs inside a SLURM task (the worker as a checkpointable callable);
- state.py: task states from submitit's sacct watcher and squeue;
- record.py: `<store>/_slurm/<study>.json` (job id -> SLURM task) and submitit's folder.
"""

from __future__ import annotations

import time

from ...plan import Plan
from ...store import Store
from ..base import Executor, Launched, Options, Status, file_state
from . import launch as launching, overrides as cli_settings
from .state import command, job_states


class SlurmExecutor(Executor):
    name = "slurm"
    columns = ("queued", "running", "failed", "cancelled")

    def __init__(self, loaded, options: Options | None = None):
        self.loaded = loaded
        options = options or Options()
        self.cli, self.cli_kind = cli_settings.overrides(options.slurm, options.sets)  # refused here, before anything

    def launch(self, plan: Plan, store: Store, console) -> Launched:
        got = launching.launch(self.loaded, plan, store, self.cli, self.cli_kind)
        got.summary.append(f"follow with: studyspec status {self.loaded.source.file}")
        return got

    def status(self, plan: Plan, store: Store) -> Status:
        return _status(store, job_states(plan, store))

    def cancel(self, plan: Plan, store: Store) -> list[str]:
        """scancel this study's queued and running jobs; their job ids."""
        victims = {j: t for j, (s, t) in job_states(plan, store).items() if s in ("queued", "running")}
        tasks = sorted(set(victims.values()))
        for i in range(0, len(tasks), 500):
            command(["scancel", *tasks[i:i + 500]], "scancel")
        return list(victims)

    def wait(self, plan: Plan, store: Store, poll: float = 2.0, timeout: float | None = None) -> Status:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            states = job_states(plan, store)
            if not any(s in ("queued", "running") for s, _ in states.values()):
                # accounting lags behind the queue: a task that just left it may not be accounted yet
                if all(s or t is None for s, t in states.values()):
                    break
            if deadline is not None and time.time() > deadline:
                break
            time.sleep(poll)
        return _status(store, states)


def _status(store: Store, states: dict[str, tuple[str, str | None]]) -> Status:
    """SLURM's view, and the run directory's where SLURM knows nothing of a job."""
    return Status({j: s or file_state(store, j) for j, (s, _) in states.items()},
                  {j: t for j, (_, t) in states.items()})
