"""The on-disk layout of jobs: one directory per job id. This class alone knows it."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import socket
import stat
import time
from pathlib import Path

from .atomic import write_text

# The module that runs one job (`python -m WORKER RUN_DIR`): it lives with the torch code in
# runners/, and the engine starts it by name only, never importing it.
WORKER = "runners.worker"


SHARD_MAX_BYTES = 256 << 20  # a shard larger than this is not one a job wrote
ARTIFACT = re.compile(r"(init|final|mask|step_\d{1,9})\.pt")  # files other jobs read: hashed in the shard
HASH = re.compile(r"[0-9a-f]{64}")
# The shard's layout, written as its `format`; a shard without one is format 1. Format 2: a
# train job's measured sparsity is the curve `weight_sparsity`, and the scalars taken from it
# `final_weight_sparsity` (imp: `round<r>_weight_sparsity`); format 1 called them `sparsity`,
# `final_sparsity`, `round<r>_sparsity` (`sparsity` is also the swept target's name).
# read_shard gives every shard in the current format (upgrade_shard).
SHARD_FORMAT = 2
SHARD_RENAMED = {1: {"sparsity": "weight_sparsity"}}  # format -> {old curve name: its name in the next}
_OF_A_CURVE = re.compile(r"(final|round\d+)_(.+)")  # a scalar named after a curve: its last value (of a round)


class StoreError(Exception):
    """Something wrong in the store (a symbolic link, a corrupt file): one line for the user."""


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old content or the new one, never half; the file
    gets the permissions the umask gives, and a symbolic link at `path` is replaced, never followed."""
    write_text(path, text)


def open_nofollow(path: Path, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
    """os.open that never follows a symbolic link at `path` (StoreError if one is there)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or (e.errno == errno.EMLINK and os.path.islink(path)):
            raise StoreError(f"{path} is a symbolic link: refused (store files are never followed)") from None
        raise


def read_nofollow(path: Path, limit: int) -> bytes:
    fd = open_nofollow(path)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise StoreError(f"{path} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise StoreError(f"{path} is larger than {limit >> 20} MiB")
    return data


def sha256_nofollow(path: Path) -> str:
    h = hashlib.sha256()
    fd = open_nofollow(path)
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_shard(shard, job_id: str) -> None:
    """Raise StoreError unless `shard` has the shape a job writes: coord (numbers, each once),
    vars (name -> a number or null per coord), scalars (name -> number, bool or null), and,
    when given, the job's own id and the artifact hashes."""
    if not isinstance(shard, dict):
        raise StoreError(f"holds {type(shard).__name__}, not a mapping")
    if shard.get("job", job_id) != job_id:
        raise StoreError(f"is the shard of job {str(shard.get('job'))[:40]!r}, not of {job_id}")
    coord = shard.get("coord")
    if not isinstance(coord, list) or not all(_number(x) and math.isfinite(x) for x in coord):
        raise StoreError("has no list of finite numbers `coord`")
    if len({round(float(x), 9) for x in coord}) != len(coord):
        raise StoreError("gives a coordinate twice")
    vars_ = shard.get("vars")
    if not isinstance(vars_, dict):
        raise StoreError("has no mapping `vars`")
    for name, values in vars_.items():
        if not isinstance(values, list) or len(values) != len(coord):
            raise StoreError(f"variable {str(name)[:40]!r} has {len(values) if isinstance(values, list) else 'no'} "
                             f"values for {len(coord)} coordinates")
        if not all(v is None or _number(v) for v in values):
            raise StoreError(f"variable {str(name)[:40]!r} holds something other than numbers")
    scalars = shard.get("scalars", {})
    if not isinstance(scalars, dict) or not all(v is None or isinstance(v, (bool, int, float))
                                                for v in scalars.values()):
        raise StoreError("has `scalars` that are not numbers")
    if "seconds" in shard and not _number(shard["seconds"]):
        raise StoreError("has `seconds` that is not a number")
    fmt = shard.get("format", 1)
    if not (isinstance(fmt, int) and not isinstance(fmt, bool) and 1 <= fmt <= SHARD_FORMAT):
        raise StoreError(f"has format {str(fmt)[:20]}; this studyspec reads shard formats 1 to {SHARD_FORMAT}")
    if "dim" in shard and shard["dim"] not in ("step", "t"):
        raise StoreError(f"has an unknown dimension {str(shard['dim'])[:20]!r}")
    hashes = shard.get("artifacts", {})
    if not isinstance(hashes, dict) or not all(isinstance(k, str) and ARTIFACT.fullmatch(k) and isinstance(v, str)
                                               and HASH.fullmatch(v) for k, v in hashes.items()):
        raise StoreError("has malformed artifact hashes")


def current_name(name: str, fmt: int = 1) -> str:
    """The name in the current shard format (SHARD_FORMAT) of a curve, or of a scalar taken
    from one (`final_<curve>`, `round<r>_<curve>`), that format `fmt` called `name`. Also
    for the runners' resume checkpoints, which hold the same names."""
    for old in range(fmt, SHARD_FORMAT):
        renamed = SHARD_RENAMED.get(old, {})
        of_curve = _OF_A_CURVE.fullmatch(name)
        if name in renamed:
            name = renamed[name]
        elif of_curve and of_curve[2] in renamed:
            name = f"{of_curve[1]}_{renamed[of_curve[2]]}"
    return name


def upgrade_shard(shard: dict) -> dict:
    """A checked shard in the current format (SHARD_FORMAT): curves and scalars an older
    format named otherwise take their current names (current_name)."""
    fmt = shard.get("format", 1)
    if fmt == SHARD_FORMAT:
        return shard
    out = dict(shard, format=SHARD_FORMAT)
    for part in ("vars", "scalars"):
        old = shard.get(part, {})
        out[part] = {current_name(k, fmt): v for k, v in old.items()}
        if len(out[part]) != len(old):
            both = sorted(k for k in old if current_name(k, fmt) != k and current_name(k, fmt) in old)
            raise StoreError(f"has both a format-{fmt} name and its new one in `{part}`: "
                             + ", ".join(f"{k}, {current_name(k, fmt)}" for k in both))
    return out


class Store:
    """`<root>/<job id>/` holds job.json, the artifacts, log.txt and shard.json.

    A job is done exactly when its shard.json is valid (check_shard): the shard is written
    last, atomically, with the hashes of the job's artifacts, so a crashed job never looks
    done, and a corrupt, truncated, wrong-shaped or misplaced shard does not either. Store
    files are opened without following symbolic links, and created with the permissions
    the umask gives (docs/internals.md#the-store).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()

    def run_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def job_file(self, job_id: str) -> Path:
        return self.run_dir(job_id) / "job.json"

    def shard(self, job_id: str) -> Path:
        return self.run_dir(job_id) / "shard.json"

    def log(self, job_id: str) -> Path:
        return self.run_dir(job_id) / "log.txt"

    def lock(self, job_id: str) -> Path:
        return self.run_dir(job_id) / "lock"

    @property
    def cache_dir(self) -> Path:
        """Where jobs keep generated datasets: `<root>/_cache`, or the folder STUDYSPEC_DATA_CACHE
        names (one cache for several stores: the tests' stores, a user's studies)."""
        shared = os.environ.get("STUDYSPEC_DATA_CACHE")
        return Path(shared).absolute() if shared else self.root / "_cache"

    def check_dir(self, job_id: str) -> Path:
        """The job's run directory; StoreError if a symbolic link or another non-directory is there."""
        path = self.run_dir(job_id)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(f"{path} is a symbolic link: refused (run directories are never followed)")
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(f"{path} is not a directory")
        return path

    def read_shard(self, job_id: str) -> dict:
        """The job's shard, checked (check_shard) and in the current format (upgrade_shard);
        FileNotFoundError if there is none, StoreError (naming the file and what is wrong) if it
        is not one the job wrote."""
        path = self.shard(job_id)
        self.check_dir(job_id)
        data = read_nofollow(path, SHARD_MAX_BYTES)
        try:
            shard = json.loads(data)
        except ValueError as e:  # truncated, garbage, not UTF-8
            raise StoreError(f"{path}: not valid JSON ({str(e)[:80]})") from None
        try:
            check_shard(shard, job_id)
            return upgrade_shard(shard)
        except StoreError as e:
            raise StoreError(f"{path}: {e}") from None

    def shard_problem(self, job_id: str) -> str | None:
        """Why the job's shard does not make it done ("" if there is none), or None if it is valid.
        Cached per shard stamp (status and launch ask for every job)."""
        path = self.shard(job_id)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return ""
        except OSError as e:
            return f"{path}: {e.strerror}"
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)
        cache = self.__dict__.setdefault("_shard_cache", {})
        if cache.get(job_id, (None,))[0] == stamp:
            return cache[job_id][1]
        try:
            self.read_shard(job_id)
            problem = None
        except FileNotFoundError:
            problem = ""
        except (StoreError, OSError) as e:
            problem = str(e)
        cache[job_id] = (stamp, problem)
        return problem

    def is_done(self, job_id: str) -> bool:
        """Done iff the job's shard is valid (a missing, corrupt or misplaced one is not done)."""
        return self.shard_problem(job_id) is None

    def done_among(self, job_ids) -> set[str]:
        """The ids among `job_ids` whose job is done (is_done), listing the store once rather
        than looking for each job's shard: a job with no entry in the store is not done."""
        try:
            present = set(os.listdir(self.root))
        except FileNotFoundError:
            return set()
        except OSError:  # unreadable: is_done says why per job
            present = None
        return {j for j in job_ids if (present is None or j in present) and self.is_done(j)}

    def artifact_files(self, job_id: str) -> list[str]:
        """The artifacts (init.pt, final.pt, mask.pt, step_N.pt) in the job's run directory."""
        try:
            return sorted(n for n in os.listdir(self.check_dir(job_id)) if ARTIFACT.fullmatch(n))
        except FileNotFoundError:
            return []

    def hash_artifacts(self, job_id: str) -> dict[str, str]:
        """filename -> SHA-256 of every artifact of the job (recorded in its shard)."""
        return {n: sha256_nofollow(self.run_dir(job_id) / n) for n in self.artifact_files(job_id)}

    def check_artifacts(self, job_id: str, names: list[str] | None = None) -> list[str]:
        """Problems with the job's artifacts against the hashes in its (valid) shard: changed,
        missing or symbolic links. `names`: only these files (default: every recorded one)."""
        shard = self.read_shard(job_id)
        recorded = shard.get("artifacts", {})
        problems = []
        for name in (recorded if names is None else [n for n in names if n in recorded]):
            path = self.run_dir(job_id) / name
            try:
                if sha256_nofollow(path) != recorded[name]:
                    problems.append(f"{path}: content differs from the hash recorded when job {job_id} wrote it")
            except FileNotFoundError:
                problems.append(f"{path}: missing (job {job_id} wrote it)")
            except StoreError as e:
                problems.append(str(e))
        return problems

    def write_shard(self, job_id: str, metrics: dict) -> None:
        """Write the shard last, with the hashes of the job's artifacts and the launch that ran it."""
        metrics = dict(metrics, format=SHARD_FORMAT, artifacts=self.hash_artifacts(job_id))
        if os.environ.get("STUDYSPEC_LAUNCH"):
            metrics["launch"] = os.environ["STUDYSPEC_LAUNCH"]
        check_shard(json.loads(json.dumps(metrics)), job_id)
        write_atomic(self.shard(job_id), json.dumps(metrics))

    def open_log(self, job_id: str):
        """log.txt for appending (never through a symbolic link)."""
        self.check_dir(job_id).mkdir(parents=True, exist_ok=True)
        return os.fdopen(open_nofollow(self.log(job_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a")

    def open_lock(self, job_id: str):
        """The job's lock file, opened read-write without truncating or following a link."""
        self.check_dir(job_id).mkdir(parents=True, exist_ok=True)
        return os.fdopen(open_nofollow(self.lock(job_id), os.O_RDWR | os.O_CREAT), "r+")

    @staticmethod
    def claim(lock) -> None:
        """Write who holds the lock (pid, host, start time) into it, for `studyspec status`."""
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())}\n")
        lock.flush()

    def holder(self, job_id: str) -> str | None:
        """Who runs the job now ("pid N on HOST since ..."), or None if nobody holds its lock."""
        import fcntl

        try:
            lock = self.open_lock(job_id) if self.lock(job_id).exists() else None
        except (OSError, StoreError):
            return None
        if lock is None:
            return None
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                return lock.read(200).strip() or "a process that has not said who it is"
            return None

    def quarantine(self, job_id: str, reason: str) -> Path:
        """Move the job's run directory aside (to `<root>/_quarantine/`), with a note saying why:
        the next launch runs the job again from nothing."""
        src = self.run_dir(job_id)
        dest_dir = self.root / "_quarantine"
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{job_id}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
        os.rename(src, dest)  # a symbolic link is moved as the link itself
        if dest.is_dir() and not dest.is_symlink():
            write_atomic(dest / "QUARANTINED.txt", reason + "\n")
        return dest

    @staticmethod
    def job_record(job) -> dict:
        """The content of job.json for `job` (a plan.Job)."""
        return {"id": job.id, "kind": job.kind, "config": job.config, "key": job.key, "deps": list(job.deps)}

    def write_job(self, record: dict) -> Path:
        """Write job.json (unless it holds this record already); the run directory."""
        self.check_dir(record["id"])
        path, text = self.job_file(record["id"]), json.dumps(record, indent=1, sort_keys=True)
        try:
            same = read_nofollow(path, SHARD_MAX_BYTES).decode("utf-8", "replace") == text
        except (FileNotFoundError, StoreError):
            same = False
        if not same:
            write_atomic(path, text)
        return path.parent

    def prepare(self, job) -> Path:
        """Write job.json for `job` (a plan.Job) and return its run directory."""
        return self.write_job(self.job_record(job))
