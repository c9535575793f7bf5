"""Run a plan on this machine: jobs in dependency order, independent ones in parallel
processes (one torch thread each), with a live progress display."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..plan import Plan
from ..store import Store


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done before
    failed: dict[str, str] = field(default_factory=dict)  # id -> log path
    blocked: dict[str, str] = field(default_factory=dict)  # id -> failed upstream id

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def _label(plan: Plan, job_id: str) -> str:
    return f"{'/'.join(plan.names_of(job_id))} {job_id[:8]}"


def run_local(plan: Plan, store: Store, workers: int | None = None,
              console: Console | None = None) -> Outcome:
    console = console or Console(stderr=True)
    workers = workers or os.cpu_count() or 1
    out = Outcome()
    todo = [j for j in plan.jobs.values()]
    out.skipped = [j.id for j in todo if store.is_done(j.id)]
    pending = [j for j in todo if j.id not in out.skipped]
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    done = set(out.skipped)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", STUDYSPEC_THREADS="1")

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
    bar = progress.add_task("jobs", total=len(pending))

    def view():
        table = Table(box=None, show_header=bool(running))
        table.add_column("running")
        table.add_column("time", justify="right")
        for jid, (_, started, _) in running.items():
            table.add_row(_label(plan, jid), f"{time.time() - started:5.1f} s")
        return Group(progress, table)

    with Live(view(), console=console, refresh_per_second=4, transient=True) as live:
        while pending or running:
            for job in list(pending):
                bad = next((d for d in job.deps if d in out.failed or d in out.blocked), None)
                if bad:
                    out.blocked[job.id] = bad
                    pending.remove(job)
                    progress.advance(bar)
                elif len(running) < workers and all(d in done for d in job.deps):
                    run_dir = store.prepare(job)
                    log = open(store.log(job.id), "a")
                    proc = subprocess.Popen([sys.executable, "-m", "studyspec.worker", str(run_dir)],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
                    running[job.id] = (proc, time.time(), log)
                    pending.remove(job)
            for jid, (proc, started, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[jid]
                progress.advance(bar)
                if proc.returncode == 0 and store.is_done(jid):
                    done.add(jid)
                    out.ran.append(jid)
                    console.print(f"[green]done[/]   {_label(plan, jid)} ({time.time() - started:.1f} s)")
                else:
                    out.failed[jid] = str(store.log(jid))
                    console.print(f"[red]failed[/] {_label(plan, jid)}: exit code {proc.returncode}, "
                                  f"log: {store.log(jid)}")
            live.update(view())
            if running:
                time.sleep(0.1)
    return out
