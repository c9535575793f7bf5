"""Run a plan on this machine: jobs in dependency order, independent ones in parallel
processes (one torch thread each), with a live progress display.

Long-lived workers: each of the `workers` slots is a process (`python -m runners.worker
--serve`) that imports torch once and runs job after job, each in a child forked from it
(runners/worker.py: own log, lock, thread count and seeds; results bit-identical to a
fresh process). A worker is replaced after a job fails and after `jobs_per_worker` jobs
(STUDYSPEC_JOBS_PER_WORKER; 0: a fresh process per job, as before).

One process per job: the SLURM settings nodes and tasks_per_node are ignored here, and a
job that would train on several SLURM tasks (runners/distributed.py) trains in one
process, with the same numbers up to float rounding. Workers never inherit a
multi-process environment (WORLD_SIZE, SLURM_NTASKS) from a surrounding allocation."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..plan import Plan
from ..store import WORKER, Store, StoreError, open_nofollow
from .base import Executor, Launched, Options, Status, file_state




class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a job scheduler, systemd) stops a launch the way Ctrl-C does."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports it


def _terminate(signum, frame):
    raise Terminated()


JOBS_PER_WORKER = 50


class _Fresh:
    """A job in a fresh process of its own (`python -m runners.worker RUN_DIR`)."""

    def __init__(self, run_dir, log_path, env):
        self.log = os.fdopen(open_nofollow(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a")
        self.proc = subprocess.Popen([sys.executable, "-m", WORKER, str(run_dir)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None:
            self.log.close()
        return code

    def terminate(self) -> None:
        self.proc.terminate()

    def wait(self) -> None:
        self.proc.wait()
        self.log.close()


class _Worker:
    """A long-lived worker process (runners.worker.serve): one job at a time."""

    def __init__(self, store: Store, env: dict):
        log = store.root / "_local" / "workers.log"  # the workers' own errors (jobs log to their run dirs)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", WORKER, "--serve", str(store.root)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buf, self.jobs, self.child, self.code = b"", 0, None, None

    def start(self, run_dir, log_path) -> "_Worker":
        self.child, self.code = None, None
        self.jobs += 1
        try:
            self.proc.stdin.write((json.dumps([str(run_dir), str(log_path)]) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:  # the worker died before taking the job (its error: _local/workers.log)
            self.code = self.proc.wait() or -1
        return self

    def poll(self) -> int | None:
        """The running job's exit code once it has ended (-1: the worker itself died)."""
        eof = False
        while self.code is None:
            try:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            self.buf += chunk
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                what, value = json.loads(line)
                if what == "started":
                    self.child = value
                else:
                    self.code = value
        if self.code is None and eof:  # the worker itself died (killed from outside)
            self.code = self.proc.wait() or -1
        return self.code

    def terminate(self) -> None:
        """Stop the running job (the worker passes SIGTERM on and exits once it has ended)."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def wait(self) -> None:
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # EOF: the worker exits
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def label(plan: Plan, job_id: str) -> str:
    return f"{'/'.join(plan.names_of(job_id))} {job_id[:8]}"


class LocalRun:
    """One launch: starts workers as their inputs become ready, up to `workers` at once."""

    def __init__(self, plan: Plan, store: Store, workers: int, console: Console, jobs_per_worker: int | None = None):
        self.plan, self.store, self.workers, self.console = plan, store, workers, console
        if jobs_per_worker is None:
            env = os.environ.get("STUDYSPEC_JOBS_PER_WORKER", "")
            jobs_per_worker = int(env) if env.isdigit() else JOBS_PER_WORKER
        self.jobs_per_worker = jobs_per_worker
        self.idle: list[_Worker] = []
        self.done = store.done_among(plan.jobs)  # one listing of the store
        self.out = Launched(done=[j for j in plan.jobs if j in self.done])
        self.pending = [j for j in plan.jobs.values() if j.id not in self.done]
        self.running: dict[str, tuple[_Fresh | _Worker, float]] = {}
        self.launch = uuid.uuid4().hex  # recorded in the shards this launch's workers write
        self.env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", STUDYSPEC_THREADS="1",
                        STUDYSPEC_LAUNCH=self.launch)
        for var in ("WORLD_SIZE", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"):  # one process per job
            self.env.pop(var, None)
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console)
        self.bar = self.progress.add_task("jobs", total=len(self.pending))

    def view(self):
        table = Table(box=None, show_header=bool(self.running))
        table.add_column("running")
        table.add_column("time", justify="right")
        for jid, (_, started) in self.running.items():
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
                try:
                    run_dir = self.store.prepare(job)
                    self.store.open_log(job.id).close()  # refused if the log is a symbolic link
                except StoreError as e:  # a symbolic link planted in the store: this job does not run
                    self.pending.remove(job)
                    self.out.failed[job.id] = str(e)
                    self.progress.advance(self.bar)
                    self.console.print(f"[red]failed[/] {label(self.plan, job.id)}: {e}")
                    continue
                if self.jobs_per_worker <= 0:
                    handle = _Fresh(run_dir, self.store.log(job.id), self.env)
                else:
                    worker = self.idle.pop() if self.idle else None
                    if worker is None or worker.proc.poll() is not None:  # none yet, or it died idle
                        if worker is not None:
                            worker.close()
                        worker = _Worker(self.store, self.env)
                    handle = worker.start(run_dir, self.store.log(job.id))
                self.running[job.id] = (handle, time.time())
                self.pending.remove(job)
        if self.jobs_per_worker > 0:  # start the workers still missing now: their imports overlap
            while len(self.idle) + len(self.running) < min(self.workers, len(self.running) + len(self.pending)):
                self.idle.append(_Worker(self.store, self.env))

    def reap(self):
        for jid, (proc, started) in list(self.running.items()):
            if proc.poll() is None:
                continue
            del self.running[jid]
            code = proc.poll()
            if isinstance(proc, _Worker):  # replaced after a failure and after jobs_per_worker jobs
                if code == 0 and proc.jobs < self.jobs_per_worker:
                    self.idle.append(proc)
                else:
                    proc.close()
            self.progress.advance(self.bar)
            if code == 0 and self.store.is_done(jid):
                self.done.add(jid)
                if self.store.read_shard(jid).get("launch") == self.launch:
                    self.out.started.append(jid)
                    self.console.print(f"[green]done[/]   {label(self.plan, jid)} ({time.time() - started:.1f} s)")
                else:  # another launch ran it while this one waited for its lock
                    self.out.done.append(jid)
                    self.console.print(f"[green]done[/]   {label(self.plan, jid)} (by another launch)")
            else:
                self.out.failed[jid] = str(self.store.log(jid))
                where = self.store.log(jid)
                if isinstance(proc, _Worker) and proc.child is None:  # never reached a job child
                    where = self.store.root / "_local" / "workers.log"
                self.console.print(f"[red]failed[/] {label(self.plan, jid)}: exit code {code}, log: {where}")

    def wait(self, timeout: float) -> None:
        """Until a running job may have ended, at most `timeout` seconds: a worker says so on
        its stdout, so a finished job is reaped (and its worker given the next job) at once
        instead of at the next tick; a fresh process per job is polled every `timeout`."""
        pipes = [h.proc.stdout for h, _ in self.running.values() if isinstance(h, _Worker)]
        if pipes and len(pipes) == len(self.running):
            select.select(pipes, [], [], timeout)
        else:
            time.sleep(timeout)

    def stop(self):
        """Interrupted: stop the running workers; finished jobs are kept, these rerun next time."""
        for proc, _ in self.running.values():
            proc.terminate()
        for jid, (proc, _) in self.running.items():
            proc.wait()
            if isinstance(proc, _Worker):
                proc.close()
            self.console.print(f"[yellow]stopped[/] {label(self.plan, jid)}: it runs again on the next launch")
        self.running.clear()
        for worker in self.idle:
            worker.close()
        self.idle.clear()

    def __call__(self) -> Launched:
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            with Live(self.view(), console=self.console, refresh_per_second=4, transient=True) as live:
                while self.pending or self.running:
                    self.start_ready()
                    self.reap()
                    live.update(self.view())
                    if self.running:
                        self.wait(0.1)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
            self.stop()
            signal.signal(signal.SIGTERM, previous)
        return self.out


def run_local(plan: Plan, store: Store, workers: int | None = None,
              console: Console | None = None, jobs_per_worker: int | None = None) -> Launched:
    """`jobs_per_worker`: jobs a long-lived worker runs before it is replaced (0: a fresh
    process per job; default STUDYSPEC_JOBS_PER_WORKER or JOBS_PER_WORKER)."""
    return LocalRun(plan, store, workers or os.cpu_count() or 1, console or Console(stderr=True),
                    jobs_per_worker)()


class LocalExecutor(Executor):
    """Jobs run here, in worker processes; `launch` returns when every job has run or failed.
    Nothing outlives a launch, so there is nothing to wait for or cancel afterwards
    (stop a running launch with Ctrl-C or SIGTERM)."""

    name = "local"
    columns = ("running", "failed")

    def __init__(self, loaded, options: Options | None = None):
        self.workers = (options.workers if options else None) or loaded.study.launch.workers

    def launch(self, plan: Plan, store: Store, console) -> Launched:
        start = time.perf_counter()
        out = run_local(plan, store, self.workers, console)
        out.seconds = time.perf_counter() - start
        out.summary = [f"ran {len(out.started)}, already done {len(out.done)}, failed {len(out.failed)}, "
                       f"not started (upstream failed) {len(out.blocked)}"]
        out.summary += [f"[red]failed[/] {', '.join(plan.names_of(j))} {j}: see {log}" for j, log in out.failed.items()]
        return out

    def status(self, plan: Plan, store: Store) -> Status:
        return Status({j: file_state(store, j) for j in plan.jobs})

    def cancel(self, plan: Plan, store: Store) -> list[str]:
        return []
