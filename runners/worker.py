"""Runs one job in its own process: `python -m runners.worker RUN_DIR`; or, as a
long-lived local worker, many jobs one after the other: `python -m runners.worker --serve STORE`
(see ``serve``).

The engine never imports this module: it starts it by name (``studyspec.store.WORKER``).

Takes the job's lock (so two launches never run one job twice) and writes who holds it
into it (``studyspec status`` shows it), skips the job if its shard is valid, checks that
the artifacts of the jobs it reads are those their shards hashed, calls the runner, and
writes the shard atomically last, with the hashes of this job's artifacts. Store files are
opened without following symbolic links. In a job of several processes every process runs
this worker; see ``run``.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import time
from pathlib import Path

from studyspec.store import Store, StoreError, write_atomic


def threads() -> int:
    for var in ("STUDYSPEC_THREADS", "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return 1


def run(run_dir: str | Path) -> bool:
    """Run the job in run_dir unless done; True if this call ran it.

    A job of several processes (a SLURM job with several tasks, each running this worker;
    runners/distributed.py): rank 0 takes the lock, decides whether the job is done and
    tells the others (they never touch the lock); every rank trains; rank 0 writes the shard."""
    run_dir = Path(run_dir)
    store, job_id = Store(run_dir.parent), run_dir.name  # a run directory lives in its store
    try:
        store.check_dir(job_id)
        job = json.loads(store.job_file(job_id).read_text())
    except StoreError as e:
        raise SystemExit(f"job {job_id}: {e}") from None
    from runners.world import world as world_of  # (no torch: a job already done never imports it)

    world = world_of()
    with store.open_lock(job_id) as lock:
        if world.main:
            fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process runs this job
            store.claim(lock)
        if world.size == 1:
            return _run(job, store, world)
        from runners import distributed

        try:
            return _run(job, store, world)
        finally:
            distributed.close()


def _run(job: dict, store: Store, world) -> bool:
    problem = store.shard_problem(job["id"]) if world.main else None
    if problem:
        print(f"job {job['id']}: its shard is not valid, running the job again: {problem}", flush=True)
    done = problem is None if world.main else None
    if world.size > 1:
        from runners import distributed

        distributed.init()
        done = distributed.broadcast_object(done)
    if done:
        print(f"job {job['id']} is already done", flush=True)
        return False
    if world.size > 1 and job["kind"] != "train":
        raise SystemExit(f"job {job['id']}: {job['kind']} jobs run in one process; this one has "
                         f"{world.size} (launch.slurm.{job['kind']}: nodes 1, tasks_per_node 1)")
    bad = [p for d in job["deps"] for p in store.check_artifacts(d)] if world.main else None
    if world.size > 1:  # rank 0's verdict, so that every rank stops with the reason, none in a collective
        bad = distributed.broadcast_object(bad)
    if bad:
        raise SystemExit(f"job {job['id']}: an input is not the one its job wrote, refusing to run on it:\n  "
                         + "\n  ".join(bad) + "\n  (`studyspec verify SPEC --quarantine` sets such jobs aside "
                         "so that they run again)")
    import torch

    import runners.job
    from runners import machine

    torch.set_num_threads(threads())
    ranks = ""
    if world.size > 1:
        ranks = f" (node {os.environ.get('SLURMD_NODENAME', '?')}), rank {world.rank} of {world.size}"
    print(f"job {job['id']} ({job['kind']}) starting on {platform.node()}{ranks}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)
    from runners import environment

    env = environment.record()
    if world.main:
        write_atomic(store.run_dir(job["id"]) / environment.FILE, json.dumps(env, indent=1))
    start = time.time()
    inputs = {d: store.run_dir(d) for d in job["deps"]}
    metrics = runners.job.run(job, store.run_dir(job["id"]), inputs, store.cache_dir)
    metrics["machine"] = machine.describe()  # CPU model, instruction set, GPU: what bit-stability depends on
    metrics["job"] = job["id"]
    metrics["seconds"] = time.time() - start
    metrics["versions"] = environment.versions(env)
    if world.size > 1:
        metrics["tasks"] = world.size
        distributed.barrier()  # every rank is through training before the job counts as done
    if world.main:
        store.write_shard(job["id"], metrics)
    print(f"job {job['id']} done in {metrics['seconds']:.1f} s", flush=True)
    return True


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    """A long-lived local worker (studyspec/executors/local.py): imports torch and the runners
    once, then runs the jobs it is sent, one at a time, each in a child forked from this
    process, so every job starts from the same freshly imported state (results bit-identical
    to a fresh process per job) and stays isolated: its own log (stdout and stderr), lock,
    thread count and seeds, exactly as ``run`` in a fresh process; a job that crashes or
    exhausts memory takes only its child down. This process never runs a job itself, never
    starts threads and never touches CUDA (so forking is safe).

    Protocol, one JSON line each way: in ``[run_dir, log_path]``; out ``["started", pid]``
    then ``["exit", code]`` (code: the child's exit status, -N if killed by signal N). EOF
    on stdin ends the worker. SIGINT is ignored here (Ctrl-C in a terminal reaches the
    job's child, and the launch stops its workers); SIGTERM is passed on to the running
    child, whose end is awaited and reported before the worker exits.
    STUDYSPEC_JOB_MEMORY_MB: address space a job may add beyond the worker's (an rlimit)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = {"child": None, "stop": False}

    def on_term(signum, frame):
        state["stop"] = True
        if state["child"] is None:
            raise SystemExit(128 + signum)
        try:
            os.kill(state["child"], signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, on_term)
    import torch  # noqa: F401  (the point of this worker: imported once)
    import torch._dynamo  # noqa: F401  (imported by the first optimizer a job makes: ~1.5 s of CPU; starts no thread)

    import runners.job  # noqa: F401
    import runners.machine  # noqa: F401
    import runners.paths  # noqa: F401
    import runners.train  # noqa: F401
    from runners import environment

    environment.packages()  # read once here (the distributions this worker's imports came from)
    torch.backends.cudnn.version()  # loads cuDNN's library to ask its version (45 ms a job); no CUDA context

    for line in stdin:
        run_dir, log_path = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(run_dir, log_path)  # never returns
        state["child"] = pid
        stdout.write(json.dumps(["started", pid]) + "\n")
        stdout.flush()
        _, status = os.waitpid(pid, 0)
        state["child"] = None
        stdout.write(json.dumps(["exit", os.waitstatus_to_exitcode(status)]) + "\n")
        stdout.flush()
        if state["stop"]:
            break


def _child(run_dir: str, log_path: str) -> None:
    """In the forked child: the job's own log as stdout/stderr, default signals, run, exit."""
    import signal
    import traceback

    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        limit = os.environ.get("STUDYSPEC_JOB_MEMORY_MB", "")
        if limit.isdigit():
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + int(limit) * 2**20,) * 2)
        run(run_dir)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _vm_bytes() -> int:
    """This process's virtual memory size (what RLIMIT_AS counts)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _exit_now() -> None:
    """End this process at once, its output flushed: the interpreter's own teardown after
    torch has been imported costs ~1 s of CPU (several seconds of wall on a busy machine),
    and a worker has nothing left to clean up (every file it writes is closed, and written
    atomically, before this point)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":  # argv[2]: the store, to tell workers apart in ps
        serve()
        _exit_now()
    elif len(sys.argv) != 2:
        sys.exit("usage: python -m runners.worker RUN_DIR | --serve STORE")
    else:
        run(sys.argv[1])
        _exit_now()
