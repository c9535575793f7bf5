"""Store faults: a job is done iff its shard is valid; corrupt, wrong-shaped, misplaced and
swapped shards and artifacts are found (status, collect, verify) and never used; a bad
resume.pt is set aside; symbolic links planted in the store are never followed; files
follow the umask; store paths that cannot be written are one-line errors; concurrent
launches report what each ran; status says who runs a job.

One tiny real study (sklearn digits, train.steps swept over [12, 16]: 6 jobs) is run once;
each test works on its own copy of the store."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import stat
import subprocess
import sys

import pytest

from conftest import studyspec
from studyspec.collect import gather
from studyspec.executors.local import run_local
from studyspec.load import loads
from studyspec.plan import build
from studyspec.store import Store, StoreError
from studyspec.verify import verify_plan

SPEC = """\
study: faults
data: {dataset: digits, batch_size: 64}
model: {arch: mlp, hidden: [16]}
train: {steps: 12, eval_every: 4, checkpoint_every: 4}
sweep: {train.steps: [12, 16]}
runs:
  prune: {regime: prune, schedule: {begin: 0.2, end: 0.6, every: 2}}
  scratch: {regime: fixed_mask, mask: prune.final}
paths:
  line: {kind: linear, from: scratch.final, to: prune.final, points: 3}
"""


def _plan(store_root):
    spec = loads(SPEC + f"output: {{store: {store_root}}}\n", "faults.yaml")
    return spec, build(spec.study)


@pytest.fixture(scope="module")
def done_store(tmp_path_factory):
    old = os.umask(0o022)
    try:
        root = tmp_path_factory.mktemp("faults") / "store"
        _, plan = _plan(root)
        outcome = run_local(plan, Store(root), workers=2)
        assert outcome.ok and len(outcome.started) == 6, outcome
    finally:
        os.umask(old)
    return root


@pytest.fixture
def store(done_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(done_store, root, symlinks=True)
    spec, plan = _plan(root)
    return Store(root), plan, spec


def _jobs(plan, kind, name=None):
    return [j for j in plan.jobs.values() if j.kind == kind and (name is None or name in plan.names_of(j.id))]


def test_the_study_ran_and_steps_swept_collects_without_a_name_clash(store):
    st, plan, _ = store
    got = gather(plan, st)
    assert not got.skipped and got.ds.attrs["jobs_collected"] == 6
    assert list(got.ds["steps"].values) == [12, 16]  # the swept dimension...
    assert got.ds["steps_measured"].sel(run="prune").values.tolist() == [12, 16]  # ...and what each job took


CORRUPT = {
    "truncated": lambda text: text[: len(text) // 2],
    "garbage": lambda text: "\x00\xff not json",
    "empty-mapping": lambda text: "{}",
    "list": lambda text: "[]",
    "null": lambda text: "null",
    "wrong-shape": lambda text: json.dumps({"coord": [0, 50], "vars": {"train_loss": [1.0]}}),
    "coord-twice": lambda text: json.dumps({"coord": [0, 0], "vars": {"train_loss": [1.0, 2.0]}}),
    "strings": lambda text: json.dumps({"coord": [0], "vars": {"train_loss": ["low"]}}),
    "another-job": lambda text: json.dumps({**json.loads(text), "job": "0123456789abcdef"}),
    "newer-format": lambda text: json.dumps({**json.loads(text), "format": 3}),
    "format-not-a-number": lambda text: json.dumps({**json.loads(text), "format": "2"}),
    "old-and-new-names": lambda text: json.dumps({**(s := json.loads(text)), "format": 1,
                                                  "vars": {**s["vars"], "sparsity": s["vars"]["weight_sparsity"]}}),
}


@pytest.mark.parametrize("fault", sorted(CORRUPT))
def test_a_corrupt_shard_is_not_done_and_is_reported_everywhere(store, fault):
    st, plan, _ = store
    job = _jobs(plan, "train", "scratch")[0].id
    path = st.shard(job)
    path.write_text(CORRUPT[fault](path.read_text()))
    assert not st.is_done(job) and st.shard_problem(job)
    assert st.done_among(plan.jobs) == set(plan.jobs) - {job}  # one listing of the store, the same answer
    got = gather(plan, st)
    assert list(got.skipped) == [job] and got.ds.attrs["jobs_collected"] == 5
    report = verify_plan(plan, st)
    assert list(report.corrupt) == [job] and str(path) in report.corrupt[job][0]
    from studyspec.executors.base import file_state as _state

    assert _state(st, job) == "corrupt"


def test_a_shard_of_the_wrong_kind_is_not_collected(store):
    st, plan, _ = store
    train, path_job = _jobs(plan, "train", "prune")[0].id, _jobs(plan, "path")[0].id
    shard = json.loads(st.shard(path_job).read_text())
    shard["job"] = train
    st.shard(train).write_text(json.dumps(shard))
    assert gather(plan, st).skipped.keys() == {train}


def test_a_swapped_artifact_is_found_and_a_dependant_refuses_it(store):
    st, plan, _ = store
    a, b = (j.id for j in _jobs(plan, "train", "scratch"))
    shutil.copyfile(st.run_dir(b) / "final.pt", st.run_dir(a) / "final.pt")  # a valid file, of another job
    report = verify_plan(plan, st)
    assert list(report.corrupt) == [a] and "final.pt: content differs" in report.corrupt[a][0]
    dependant = next(j for j in _jobs(plan, "path") if a in j.deps).id
    st.shard(dependant).unlink()  # the path job must run again: it refuses the swapped input
    outcome = run_local(plan, st, workers=1)
    assert list(outcome.failed) == [dependant] and not outcome.started
    log = st.log(dependant).read_text()
    assert "is not the one its job wrote" in log and "final.pt: content differs" in log


def test_verify_quarantine_makes_the_next_launch_rerun_exactly_those_jobs(store, tmp_path):
    st, plan, _ = store
    job = _jobs(plan, "path")[0].id
    st.shard(job).write_text("{}")
    spec = tmp_path / "faults.yaml"
    spec.write_text(SPEC + f"output: {{store: {st.root}}}\n")
    proc = studyspec("verify", spec)
    assert proc.returncode == 1 and f"corrupt line {job}" in proc.stderr and "Traceback" not in proc.stderr
    proc = studyspec("verify", spec, "--quarantine")
    assert proc.returncode == 1 and (st.root / "_quarantine").is_dir() and not st.run_dir(job).exists()
    assert studyspec("verify", spec).returncode == 0
    outcome = run_local(plan, st, workers=1)
    assert outcome.started == [job] and len(outcome.done) == 5
    proc = studyspec("collect", spec, "--out", tmp_path / "r.nc")
    assert proc.returncode == 0, proc.stderr


def test_collect_exits_non_zero_when_it_skips_a_shard(store, tmp_path):
    st, plan, _ = store
    st.shard(_jobs(plan, "train", "prune")[0].id).write_text("null")
    spec = tmp_path / "faults.yaml"
    spec.write_text(SPEC + f"output: {{store: {st.root}}}\n")
    proc = studyspec("collect", spec, "--out", tmp_path / "r.nc")
    assert proc.returncode == 1 and "collect skipped 1 job(s)" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "r.nc").exists()  # the rest is written, the skipped job's cells marked not done


def test_a_bad_resume_checkpoint_is_set_aside_and_the_job_restarts(store):
    st, plan, _ = store
    job = _jobs(plan, "train", "prune")[0].id
    st.shard(job).unlink()
    (st.run_dir(job) / "resume.pt").write_bytes(b"PK\x03\x04 truncated")
    outcome = run_local(plan, st, workers=1)
    assert outcome.started == [job] and outcome.ok
    assert list(st.run_dir(job).glob("resume.pt.bad-*")) and "set aside" in st.log(job).read_text()


def test_a_garbage_mask_file_is_a_clear_error(tmp_path):
    from runners import masks

    path = tmp_path / "mask.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"mask.pt is not a mask file studyspec wrote"):
        masks.load(path)
    import torch

    torch.save([1, 2], path)
    with pytest.raises(ValueError, match=r"not a mapping of names to tensors"):
        masks.load(path)


def test_symbolic_links_in_the_store_are_never_followed(store, tmp_path):
    st, plan, _ = store
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    prune, scratch = _jobs(plan, "train", "prune")[0].id, _jobs(plan, "train", "scratch")[0].id
    # a shard that is a link to a valid shard does not make a job done
    st.shard(scratch).unlink()
    os.symlink(st.shard(prune), st.shard(scratch))
    assert not st.is_done(scratch) and "symbolic link" in st.shard_problem(scratch)
    # the lock and the log of a job to run, linked to the victim: refused, the victim untouched
    (st.run_dir(scratch) / "lock").unlink(missing_ok=True)
    os.symlink(victim, st.lock(scratch))
    st.log(scratch).unlink(missing_ok=True)
    os.symlink(victim, st.log(scratch))
    # a run directory that is a link
    other = _jobs(plan, "train", "scratch")[1].id
    shutil.move(st.run_dir(other), tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", st.run_dir(other))
    outcome = run_local(plan, st, workers=1)
    assert set(outcome.failed) == {scratch, other} and "symbolic link" in outcome.failed[scratch]
    assert victim.read_text() == "precious\n"
    report = verify_plan(plan, st)
    assert {scratch, other} <= set(report.corrupt)
    done = st.done_among(plan.jobs)
    assert done == {j for j in plan.jobs if st.is_done(j)} and not done & {scratch, other}
    assert Store(tmp_path / "nowhere").done_among(plan.jobs) == set()


def test_files_follow_the_umask(store):
    st, plan, _ = store
    for jid in plan.jobs:  # written under umask 022: readable by the group and others
        for name in ("shard.json", "job.json"):
            assert stat.S_IMODE(os.stat(st.run_dir(jid) / name).st_mode) == 0o644
    old = os.umask(0o027)
    try:
        job = plan.jobs[next(iter(plan.jobs))]
        st.shard(job.id).unlink()
        st.write_shard(job.id, {"coord": [0], "vars": {}, "job": job.id})
        assert stat.S_IMODE(os.stat(st.shard(job.id)).st_mode) == 0o640
    finally:
        os.umask(old)


def test_status_says_who_runs_a_job(store):
    st, plan, _ = store
    from studyspec.executors.base import file_state as _state

    job = _jobs(plan, "train", "prune")[0].id
    st.shard(job).unlink()
    assert _state(st, job) == "failed"  # a log, no shard, nobody holds the lock
    with st.open_lock(job) as lock:  # as a worker does (and goes on after its launcher is killed)
        fcntl.flock(lock, fcntl.LOCK_EX)
        st.claim(lock)
        assert _state(st, job) == "running"
        assert st.holder(job).startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
    assert st.holder(job) is None


@pytest.mark.parametrize("where", ["file-parent", "proc", "too-long"])
def test_a_store_that_cannot_be_written_is_a_one_line_error(tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = {"file-parent": blocker / "store", "proc": "/proc/studyspec-store",
             "too-long": tmp_path / ("x" * 300)}[where]
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("sweep: {train.steps: [12, 16]}\n", "") + "launch: {workers: 1}\n")
    proc = studyspec("launch", spec, "--store", store)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot use"), proc.stderr


def test_an_unwritable_results_directory_is_a_one_line_error(store, tmp_path):
    st, plan, _ = store
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    spec = tmp_path / "faults.yaml"
    spec.write_text(SPEC + f"output: {{store: {st.root}, results: {blocker}/results}}\n")
    proc = studyspec("collect", spec)
    assert proc.returncode == 2 and "error: cannot use" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_two_concurrent_launches_report_what_each_ran(tmp_path):
    spec = tmp_path / "s.yaml"
    one_job = SPEC.split("sweep:")[0] + "runs:\n  dense: {regime: dense}\n"
    spec.write_text(one_job + f"output: {{store: {tmp_path / 'store'}}}\n")
    env = dict(os.environ, COLUMNS="200")
    procs = [subprocess.Popen([sys.executable, "-m", "studyspec", "launch", str(spec), "-j", "2"],
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ran = [int(next(line for line in o.splitlines() if line.startswith("ran ")).split()[1].rstrip(",")) for o in outs]
    assert sorted(ran) == [0, 1], outs  # the job ran once, and only the launch that ran it says so
    assert any("(by another launch)" in o for o in outs) or any("already done 1" in o for o in outs), outs


def test_a_crafted_cifar_pickle_runs_no_code(tmp_path):
    import pickle

    from runners.data import read_cifar_batch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.warns(UserWarning, match="not the published CIFAR file"), \
            pytest.raises(ValueError, match=r"not a CIFAR batch file: UnpicklingError: posix.system is not allowed"):
        read_cifar_batch(path)
    assert not (tmp_path / "pwned").exists()
