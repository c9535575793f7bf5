import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
study: t
data: {dataset: mnist1d, batch_size: 256}
model: {arch: mlp, hidden: [32]}
train: {steps: 60, eval_every: 20}
"""


# The tests that use the one SLURM cluster .ci/run starts (two one-CPU nodes): under
# pytest-xdist (-n) they all run on one worker, one after another, as without it: they
# count the cluster's queue and wait for its CPUs, so two of them at once would only queue.
CLUSTER_FILES = {"test_slurm.py", "test_local_slurm.py", "test_cluster_setup.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's `load` scheduling, with the cluster's tests as one unit of work (given out
    first: the biggest unit). xdist's own `loadgroup` does not group under pytest 9.2 (it
    renames item._nodeid, which pytest no longer reads), hence this."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ClusterTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "slurm cluster" if nodeid.split("::")[0].rsplit("/", 1)[-1] in CLUSTER_FILES else nodeid

    return ClusterTestsTogether(config, log)


@pytest.fixture(scope="session", autouse=True)
def bytecode():
    """Compile the project's modules once: with PYTHONDONTWRITEBYTECODE set (as on the CI
    machines) every job process and CLI call the tests start would otherwise compile
    studyspec/runners/analysis from source (~0.1 s each, hundreds of processes)."""
    import compileall

    for folder in ("studyspec", "runners", "analysis"):
        compileall.compile_dir(ROOT / folder, quiet=1)


@pytest.fixture(scope="session", autouse=True)
def cache(tmp_path_factory):
    """One dataset cache for the session: each dataset is generated or read once, by the
    tests that call the runners with it and, through STUDYSPEC_DATA_CACHE, by every job
    the tests launch in their own stores (mnist1d costs ~4 s of CPU to generate). Under
    pytest-xdist the workers share it (the run's temporary folder, above each worker's own):
    jobs write their cache files atomically, as concurrent jobs of one store do."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "cache"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("cache")
    before = os.environ.get("STUDYSPEC_DATA_CACHE")
    os.environ["STUDYSPEC_DATA_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("STUDYSPEC_DATA_CACHE", None)
    else:
        os.environ["STUDYSPEC_DATA_CACHE"] = before


@pytest.fixture
def write_spec(tmp_path):
    """Write spec text to a file and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def studyspec(*args, cwd=None, check=False):
    """Run the real command line in a fresh process."""
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "studyspec", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"studyspec {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
