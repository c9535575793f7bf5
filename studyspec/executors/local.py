"""Run a plan on this machine: jobs in dependency order, independent ones in parallel
processes (one torch thread each), with a live progress display.

One process per job: the SLURM settings nodes and tasks_per_node are ignored here, and a
job that would train on several SLURM tasks (runners/distributed.py) trains in one
process, with the same numbers up to float rounding. Workers never inherit a
multi-process environment (WORLD_SIZE, SLURM_NTASKS) from a surrounding allocation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..plan import Plan
from ..store import WORKER, Store


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done before
    failed: dict[str, str] = field(default_factory=dict)  # id -> log path
    blocked: dict[str, str] = field(default_factory=dict)  # id -> failed upstream id

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a job scheduler, systemd) stops a launch the way Ctrl-C does."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports it


def _terminate(signum, frame):
    raise Terminated()


def label(plan: Plan, job_id: str) -> str:
    return f"{'/'.join(plan.names_of(job_id))} {job_id[:8]}"


class LocalRun:
    """One launch: starts workers as their inputs become ready, up to `workers` at once."""

    def __init__(self, plan: Plan, store: Store, workers: int, console: Console):
        self.plan, self.store, self.workers, self.console = plan, store, workers, console
        self.out = Outcome(skipped=[j for j in plan.jobs if store.is_done(j)])
        self.done = set(self.out.skipped)
        self.pending = [j for j in plan.jobs.values() if j.id not in self.done]
        self.running: dict[str, tuple[subprocess.Popen, float, object]] = {}
        self.env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", STUDYSPEC_THREADS="1")
        for var in ("WORLD_SIZE", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"):  # one process per job
            self.env.pop(var, None)
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console)
        self.bar = self.progress.add_task("jobs", total=len(self.pending))

    def view(self):
        table = Table(box=None, show_header=bool(self.running))
        table.add_column("running")
        table.add_column("time", justify="right")
        for jid, (_, started, _) in self.running.items():
            table.add_row(label(self.plan, jid), f"{time.time() - started:5.1f} s")
        return Group(self.progress, table)

    def start_ready(self):
        for job in list(self.pending):
            bad = next((d for d in job.deps if d in self.out.failed or d in self.out.blocked), None)
            if bad:
                self.out.blocked[job.id] = bad
                self.pending.remove(job)
                self.progress.advance(self.bar)
            elif len(self.running) < self.workers and all(d in self.done for d in job.deps):
                run_dir = self.store.prepare(job)
                log = open(self.store.log(job.id), "a")
                proc = subprocess.Popen([sys.executable, "-m", WORKER, str(run_dir)],
                                        stdout=log, stderr=subprocess.STDOUT, env=self.env)
                self.running[job.id] = (proc, time.time(), log)
                self.pending.remove(job)

    def reap(self):
        for jid, (proc, started, log) in list(self.running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del self.running[jid]
            self.progress.advance(self.bar)
            if proc.returncode == 0 and self.store.is_done(jid):
                self.done.add(jid)
                self.out.ran.append(jid)
                self.console.print(f"[green]done[/]   {label(self.plan, jid)} ({time.time() - started:.1f} s)")
            else:
                self.out.failed[jid] = str(self.store.log(jid))
                self.console.print(f"[red]failed[/] {label(self.plan, jid)}: exit code {proc.returncode}, "
                                   f"log: {self.store.log(jid)}")

    def stop(self):
        """Interrupted: stop the running workers; finished jobs are kept, these rerun next time."""
        for proc, _, _ in self.running.values():
            proc.terminate()
        for jid, (proc, _, log) in self.running.items():
            proc.wait()
            log.close()
            self.console.print(f"[yellow]stopped[/] {label(self.plan, jid)}: it runs again on the next launch")
        self.running.clear()

    def __call__(self) -> Outcome:
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            with Live(self.view(), console=self.console, refresh_per_second=4, transient=True) as live:
                while self.pending or self.running:
                    self.start_ready()
                    self.reap()
                    live.update(self.view())
                    if self.running:
                        time.sleep(0.1)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
            self.stop()
            signal.signal(signal.SIGTERM, previous)
        return self.out


def run_local(plan: Plan, store: Store, workers: int | None = None,
              console: Console | None = None) -> Outcome:
    return LocalRun(plan, store, workers or os.cpu_count() or 1, console or Console(stderr=True))()
