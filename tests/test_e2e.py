"""The whole path, through the real command line: spec -> plan -> local run -> netCDF."""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from conftest import ROOT, studyspec

SPEC = """\
study: tiny
data: {dataset: mnist1d, batch_size: 128}
model: {arch: mlp, hidden: [32]}
train: {steps: 60, eval_every: 20, optimizer: {lr: 0.05, momentum: 0.9}}
sparsity: 0.9
sweep: {seed: [0, 1]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.5, every: 10}}
  scratch: {regime: fixed_mask, mask: prune.final}
  dense: {regime: dense}
paths:
  bad_to_good: {kind: linear, from: scratch.final, to: prune.final, points: 5}
"""


def starts(store, job_id) -> int:
    """How many times a job's runner started (the worker logs one line per start)."""
    log = store / job_id / "log.txt"
    return len(re.findall(r"^job \w+ \(\w+\) starting", log.read_text(), re.M)) if log.exists() else 0


@pytest.fixture
def study(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    return spec, tmp_path / "store", tmp_path / "tiny.nc"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny study run once for the module (`studyspec run -j 2` in a fresh store):
    (spec, store, netCDF, the command's output). Read only: a test that changes a store
    works on a copy of it."""
    root = tmp_path_factory.mktemp("tiny")
    spec = root / "tiny.yaml"
    spec.write_text(SPEC)
    store, out = root / "store", root / "tiny.nc"
    proc = studyspec("run", spec, "--store", store, "--out", out, "-j", "2", check=True)
    return spec, store, out, proc


def test_cli_does_not_import_torch():
    code = "import sys, studyspec.cli, studyspec.load, studyspec.plan; print(sorted(m for m in ('torch', 'xarray', 'runners') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_worker_skips_a_done_job_without_importing_torch(tmp_path):
    run_dir = tmp_path / "abc"
    run_dir.mkdir()
    (run_dir / "job.json").write_text('{"id": "abc", "kind": "train", "deps": []}')
    (run_dir / "shard.json").write_text('{"coord": [], "vars": {}}')  # a valid (empty) shard
    code = f"import sys; from runners import worker; print(worker.run({str(run_dir)!r}), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["job abc is already done", "False False"]


def test_plan_writes_nothing(study, tmp_path):
    spec, store, _ = study
    proc = studyspec("plan", spec, "--store", store, check=True)
    assert "8 jobs (6 train, 2 path) over seed=2" in proc.stderr
    assert "0 done, 8 to run" in proc.stderr
    assert not store.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_run_collect_rerun_and_resume_one_job(trained, tmp_path):
    spec, shared, out, proc = trained
    assert "ran 8, already done 0" in proc.stderr
    store = tmp_path / "store"  # the trained store, copied: this test deletes a shard
    shutil.copytree(shared, store, symlinks=True)
    ds = xr.open_dataset(out)
    assert ds.train_loss.dims == ("run", "seed", "step")
    assert ds.path_train_loss.dims == ("path", "seed", "t")
    assert list(ds.run.values) == ["prune", "scratch", "dense"] and list(ds.seed.values) == [0, 1]
    assert list(ds.step.values) == [0, 20, 40, 60]
    assert np.allclose(ds.t.values, [0, 0.25, 0.5, 0.75, 1])
    assert not np.isnan(ds.train_loss.values).any()
    # prune reaches the target sparsity, dense stays dense
    assert np.allclose(ds.weight_sparsity.sel(run="prune", step=60), 0.9, atol=1e-3)
    assert (ds.weight_sparsity.sel(run="dense") == 0).all()
    # the path's endpoints are the runs' own final training losses
    bad = ds.path_train_loss.sel(path="bad_to_good")
    assert np.allclose(bad.sel(t=0), ds.train_loss.sel(run="scratch", step=60), rtol=1e-6)
    assert np.allclose(bad.sel(t=1), ds.train_loss.sel(run="prune", step=60), rtol=1e-6)
    assert "spec" in ds.attrs and ds.attrs["spec"] == SPEC and "torch_version" in ds.attrs
    assert ds.train_loss.attrs["units"] and ds.train_loss.attrs["long_name"]
    ids = list(ds.run_job_id.values.ravel()) + list(ds.path_job_id.values.ravel())
    ds.close()

    # a second launch runs nothing
    proc = studyspec("launch", spec, "--store", store, check=True)
    assert "ran 0, already done 8" in proc.stderr
    assert all(starts(store, j) == 1 for j in set(ids))

    # deleting one job's shard reruns exactly that job
    victim = ds.run_job_id.sel(run="scratch", seed=1).item()
    (store / victim / "shard.json").unlink()
    proc = studyspec("launch", spec, "--store", store, check=True)
    assert "ran 1, already done 7" in proc.stderr
    assert {j: starts(store, j) for j in set(ids)} == {j: 2 if j == victim else 1 for j in set(ids)}


def test_same_spec_same_numbers(trained, tmp_path):
    spec, _, out, _ = trained
    other = tmp_path / "other.nc"  # run again in another store (and with the default workers)
    studyspec("run", spec, "--store", tmp_path / "store2", "--out", other, check=True)
    a, b = xr.open_dataset(out), xr.open_dataset(other)
    for var in ("train_loss", "test_acc", "path_train_loss"):
        assert np.array_equal(a[var].values, b[var].values, equal_nan=True), var


def test_failed_job_leaves_dependants_unstarted(trained, tmp_path):
    spec, _, out, _ = trained
    store = tmp_path / "store"
    with xr.open_dataset(out) as ds:  # the job ids, from the study run once for the module
        prune0 = ds.run_job_id.sel(run="prune", seed=0).item()
        scratch0 = ds.run_job_id.sel(run="scratch", seed=0).item()
        path0 = ds.path_job_id.sel(path="bad_to_good", seed=0).item()
    # a directory where prune (seed 0) must write final.pt makes that job fail for real
    (store / prune0 / "final.pt" / "blocker").mkdir(parents=True)
    proc = studyspec("launch", spec, "--store", store)
    assert proc.returncode == 1
    assert re.search(rf"failed .*prune {prune0}.*see .*{prune0}/log.txt", proc.stderr.replace("\n", " ")), proc.stderr
    assert "ran 5, already done 0, failed 1, not started (upstream failed) 2" in proc.stderr
    assert starts(store, scratch0) == 0 and starts(store, path0) == 0
    assert "Traceback" in (store / prune0 / "log.txt").read_text()  # the log has the details

    status = studyspec("status", spec, "--store", store)
    assert re.search(rf"failed prune {prune0}: log .*{prune0}/log.txt", status.stderr.replace("\n", " ")), status.stderr
    assert "5 done, 1 failed, 2 to run" in status.stderr

    # fixed, relaunched: only the failed job and its dependants run
    shutil.rmtree(store / prune0 / "final.pt")
    proc = studyspec("launch", spec, "--store", store, check=True)
    assert "ran 3, already done 5" in proc.stderr


def test_two_launches_at_once_never_run_a_job_twice(study):
    spec, store, _ = study
    cmd = [sys.executable, "-m", "studyspec", "launch", str(spec), "--store", str(store)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    jobs = [p.name for p in store.iterdir() if not p.name.startswith("_")]
    assert len(jobs) == 8
    assert all(starts(store, j) == 1 for j in jobs), {j: starts(store, j) for j in jobs}


@pytest.mark.slow
def test_quickstart_prune_beats_scratch(tmp_path):
    """The quick-start end to end (a few minutes): the paper's first claim holds on it."""
    out = tmp_path / "quickstart.nc"
    studyspec("run", ROOT / "specs" / "quickstart.yaml", "--store", tmp_path / "store", "--out", out, check=True)
    ds = xr.open_dataset(out)
    final = ds.train_loss.sel(step=3000)
    assert (final.sel(run="prune") < final.sel(run="scratch")).all()
    assert ds.path_train_loss.dims == ("path", "seed", "t") and ds.sizes["t"] == 29
    assert (ds.path_barrier.sel(path="scratch_to_pruned") > 0.1).all()  # E2: a barrier between bad and good


def _workers_of(store) -> list[int]:
    """pids of live worker processes running jobs of this store."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runners.worker" in cmd and any(str(store).encode() in c for c in cmd):
            pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupted_launch_stops_its_workers_and_keeps_finished_jobs(study, sig, code):
    import signal

    spec, store, _ = study
    # as from a terminal: SIGINT at its default (a background job of a script inherits it ignored)
    proc = subprocess.Popen([sys.executable, "-m", "studyspec", "launch", str(spec), "--store", str(store), "-j", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not any(starts(store, p.name) for p in store.glob("*") if p.is_dir()):
        time.sleep(0.2)
    assert _workers_of(store), "no worker started"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "stopped" in err and "launch again to run the rest" in err
    assert not _workers_of(store), "workers outlived the launch"
    if sig == "SIGTERM":
        return  # the relaunch below is the same for both signals
    again = studyspec("launch", spec, "--store", store, check=True)
    assert "ran 8, already done 0" in again.stderr or re.search(r"ran \d, already done [1-7]", again.stderr)
