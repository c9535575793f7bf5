"""The SLURM executor.

The first tests need no cluster (how a plan is split into job arrays with exact
per-task dependencies; settings; command-line overrides). The others run the real
command line against a real SLURM cluster started by studyspec/local_slurm/start.sh:

    bash studyspec/local_slurm/start.sh /tmp/studyspec-slurm
    STUDYSPEC_SLURM_DIR=/tmp/studyspec-slurm .venv/bin/python -m pytest -q tests/test_slurm.py

and are skipped without STUDYSPEC_SLURM_DIR.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from studyspec.errors import UserError
from studyspec.executors import Options, create
from studyspec.executors.slurm import arrays as slurm_arrays, launch as slurm_launch, overrides as slurm_overrides
from studyspec.executors.slurm import settings as slurm_settings
from studyspec.load import loads
from studyspec.plan import build
from test_e2e import SPEC, starts

SLURM_DIR = os.environ.get("STUDYSPEC_SLURM_DIR")
needs_cluster = pytest.mark.skipif(not SLURM_DIR, reason="STUDYSPEC_SLURM_DIR is not set: start a cluster with "
                                   "bash studyspec/local_slurm/start.sh DIR and set STUDYSPEC_SLURM_DIR=DIR")


# --- without a cluster ------------------------------------------------------------------

def test_arrays_carry_exact_per_task_dependencies():
    plan = build(loads(SPEC.replace("seed: [0, 1]", "seed: [0, 1, 2]")).study)
    todo = list(plan.jobs)
    arrays = slurm_arrays.group(plan, todo, {})
    # one array per stage here: prune and dense (independent), scratch, bad_to_good
    names = [{n for j in a.jobs.values() for n in plan.names_of(j)} for a in arrays]
    assert [sorted(n) for n in names] == [["dense", "prune"], ["scratch"], ["bad_to_good"]]
    assert sum(len(a.jobs) for a in arrays) == len(plan.jobs) == 12
    assert [a.length for a in arrays] == [6, 3, 3] and sum(a.padding for a in arrays) == 0  # a fresh study: none
    exact_per_task(plan, arrays, {})


def exact_per_task(plan, arrays, active, done=()):
    """Every task waits for exactly its job's inputs that are not done: task i of each upstream
    array (aftercorr) and the tasks queued by an earlier launch (afterok); no-op padding elsewhere."""
    at = {(pos, i): j for pos, a in enumerate(arrays) for i, j in a.jobs.items()}
    for pos, a in enumerate(arrays):
        assert list(a.jobs) == sorted(a.jobs) and a.length == max(a.jobs) + 1
        assert all(p < pos for p in a.corr)  # upstream arrays are submitted first
        assert all(arrays[p].length >= a.length for p in a.corr)  # task i exists upstream
        for i, j in a.jobs.items():
            waits = {at[(p, i)] for p in a.corr} | {d for d, t in active.items() if t in a.after}
            assert waits == set(plan.jobs[j].deps) - set(done)


def test_arrays_wait_for_jobs_queued_by_an_earlier_launch():
    plan = build(loads(SPEC).study)
    prune0, prune1 = [j for j in plan.jobs if plan.names_of(j) == ["prune"]]
    active = {prune0: "41_7"}  # still queued by an earlier launch; prune at seed 1 and dense are done
    done = {prune1} | {j for j in plan.jobs if plan.names_of(j) == ["dense"]}
    todo = [j for j in plan.jobs if j not in active and j not in done]
    arrays = slurm_arrays.group(plan, todo, active)
    exact_per_task(plan, arrays, active, done)
    assert sorted(a.after for a in arrays) == [[], [], ["41_7"], ["41_7"]]  # scratch and path, at each seed
    assert sum(a.padding for a in arrays) == 0


PADDED = """\
study: padded
data: {dataset: mnist1d, batch_size: 64}
model: {arch: mlp, hidden: [16]}
train: {steps: 20, eval_every: 10}
sparsity: 0.9
sweep: {seed: [0, 1]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.5, every: 5}}
  scratch: {regime: fixed_mask, mask: prune.final}
paths:
  init_to_pruned: {kind: linear, from: prune.init, to: prune.final, points: 3}
"""


def padded_relaunch(plan):
    """Jobs done in a relaunch that needs a padding task: prune to rerun at both seeds, then
    scratch at seed 0 and the path at seed 1 (scratch at 1 and the path at 0 are done)."""
    by = {(plan.names_of(j)[0], plan.jobs[j].key.get("seed")): j for j in plan.jobs}
    return {by[("scratch", 1)], by[("init_to_pruned", 0)]}, by


def test_a_relaunch_after_some_stages_pads_arrays_with_no_op_tasks():
    plan = build(loads(PADDED).study)
    fresh = slurm_arrays.group(plan, list(plan.jobs), {})
    assert sum(a.padding for a in fresh) == 0 and len(fresh) == 3
    done, by = padded_relaunch(plan)
    todo = [j for j in plan.jobs if j not in done]
    arrays = slurm_arrays.group(plan, todo, {})
    exact_per_task(plan, arrays, {}, done)
    # prune (both seeds) in one array; scratch (seed 0) and the path (seed 1) after it, one at index 0,
    # the other at index 1 behind a no-op padding task
    assert [(a.kind, a.length, a.padding) for a in arrays] == [("train", 2, 0), ("train", 1, 0), ("path", 2, 1)]
    arrays[0].slurm_id = "12"
    assert slurm_arrays.dependency(arrays, arrays[1]) == ["afterok:12_0"]  # a one-task array: a plain job
    assert slurm_arrays.dependency(arrays, arrays[2]) == ["aftercorr:12"]


def test_array_ranges_and_time_limits():
    assert slurm_arrays.ranges([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    m = slurm_settings.minutes
    assert m("90") == 90 and m("1:30:00") == 90 and m("1-00:00:00") == 1440 and m("5:30") == 5.5


def test_settings_precedence_spec_kind_and_command_line():
    text = SPEC + "launch:\n  executor: slurm\n  slurm: {partition: big, time: 30, mem: 2G, train: {cpus_per_task: 4, " \
                  "extra: {exclude: n3}}, path: {time: '5:30'}}\n"
    launch = loads(text).study.launch.slurm
    settings = slurm_settings.settings
    train = settings(launch, "train")
    assert (train["partition"], train["time"], train["cpus_per_task"], train["mem"]) == ("big", "30", 4, "2G")
    assert settings(launch, "path")["time"] == "5:30" and settings(launch, "path")["cpus_per_task"] == 1
    common, kind = slurm_overrides.overrides({"partition": "debug", "time": None},
                                             ["train.mem=1G", "extra.reservation=r1", "extra.hold=true"])
    t = settings(launch, "train", common, kind["train"])
    assert t["partition"] == "debug" and t["mem"] == "1G" and t["extra"] == {"exclude": "n3", "reservation": "r1",
                                                                             "hold": True}
    # what submitit writes into the batch script
    params = slurm_settings.parameters(t, "tiny:s0-train-0", 300, ["aftercorr:12", "afterok:9_3"])
    lines = slurm_settings.sbatch_lines(params, 300)
    for line in ("--partition=debug", "--cpus-per-task=4", "--exclude=n3", "--mem=1G", "--time=30", "--hold",
                 "--reservation=r1", "--array=0-299%300", "--dependency=aftercorr:12,afterok:9_3",
                 "--kill-on-invalid-dep=yes", "--requeue", "--signal=USR2@120", "--job-name=tiny:s0-train-0"):
        assert f"#SBATCH {line}" in lines, (line, lines)
    path = slurm_settings.parameters(settings(launch, "path"), "tiny:s1-path-0", 1)
    lines = slurm_settings.sbatch_lines(path)
    assert "#SBATCH --time=5:30" in lines and "#SBATCH --signal=USR2@66" in lines, lines  # MM:SS kept
    assert not any("--array" in line or "--dependency" in line for line in lines)


def test_bad_settings_are_located_errors():
    with pytest.raises(UserError) as e:
        slurm_overrides.overrides({}, ["train.cpus_per_task=0"])
    assert "launch setting train.cpus_per_task" in str(e.value) and "command line" in str(e.value)
    with pytest.raises(UserError) as e:
        slurm_overrides.overrides({}, ["nonsense"])
    assert "KEY=VALUE" in str(e.value)
    with pytest.raises(UserError) as e:
        loads(SPEC + "launch: {executor: slurm, slurm: {time: soon}}\n")
    assert re.search(r"<spec>:\d+:\d+: launch.slurm.time: 'soon' is not a SLURM time limit", str(e.value))


def test_path_jobs_on_several_tasks_are_a_located_error(tmp_path):
    from studyspec.store import Store

    loaded = loads(SPEC + "launch:\n  slurm: {nodes: 2}\n")
    with pytest.raises(UserError) as e:  # refused before any SLURM command runs
        slurm_launch.launch(loaded, build(loaded.study), Store(tmp_path / "store"))
    msg = str(e.value)
    assert re.search(r"<spec>:\d+:\d+: launch.slurm.nodes: path jobs ask for 2 node\(s\) x 1 task\(s\): only "
                     r"training jobs run on several tasks", msg), msg
    assert "hint: set nodes and tasks_per_node under launch.slurm.train" in msg
    assert not (tmp_path / "store").exists()


def test_a_controller_that_takes_no_job_is_not_blamed_on_the_settings(monkeypatch):
    """sbatch's EAGAIN (slurmctld's job table full, MaxJobCount, or the controller overloaded)
    says so and asks to launch again, instead of pointing at the spec's settings. (Seen on the
    local cluster after ~10,000 jobs were submitted and cancelled within MinJobAge; here the
    answer of `sbatch --test-only` is given, as a full table is slow to make.)"""
    loaded = loads(SPEC)
    monkeypatch.setattr(slurm_launch, "test_only",
                        lambda res: "allocation failure: Resource temporarily unavailable")
    res = {k: slurm_settings.settings(loaded.study.launch.slurm, k) for k in slurm_settings.KINDS}
    with pytest.raises(UserError) as e:
        slurm_launch.check(loaded, build(loaded.study), res)
    msg = str(e.value)
    assert "SLURM takes no new job at the moment" in msg and "launch again in a few minutes" in msg, msg
    assert "rejects" not in msg and "launch.slurm" not in msg, msg


# --- on a real cluster ---------------------------------------------------------------------

def _slurm_env() -> dict:
    text = (Path(SLURM_DIR) / "env.sh").read_text()
    conf = re.search(r"""export\s+SLURM_CONF=["']?([^"'\s]+)""", text).group(1)
    return dict(os.environ, SLURM_CONF=conf, COLUMNS="200")


@pytest.fixture(scope="module")
def cluster():
    env = _slurm_env()
    ping = subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True)
    assert "UP" in ping.stdout, f"cluster in {SLURM_DIR} is not up: {ping.stdout}{ping.stderr}"
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]  # for slurm.wait / job_states called here
    yield env
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def cli(env, *args, check=False):
    proc = subprocess.run([sys.executable, "-m", "studyspec", *map(str, args)], capture_output=True, text=True,
                          env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"studyspec {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_all(spec, store, timeout=400):
    from studyspec.load import load
    from studyspec.store import Store

    loaded = load(spec)
    plan = build(loaded.study)
    return plan, create("slurm", loaded, Options()).wait(plan, Store(store), poll=1.0, timeout=timeout).states


@needs_cluster
@pytest.mark.slow  # about 1-2 min on 2 idle CPUs (the tiny jobs run one after another)
def test_failure_cancels_dependants_then_relaunch_matches_local_numbers(cluster, tmp_path):
    import xarray as xr

    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.replace("seed: [0, 1]", "seed: [0]"))  # 4 jobs: prune, dense, scratch, bad_to_good
    store, local_store = tmp_path / "store", tmp_path / "local"
    # the local executor's run: the reference numbers (same seeds)
    cli(cluster, "run", spec, "--store", local_store, "--out", tmp_path / "local.nc", check=True)
    ref = xr.open_dataset(tmp_path / "local.nc")
    prune0 = ref.run_job_id.sel(run="prune", seed=0).item()
    scratch0 = ref.run_job_id.sel(run="scratch", seed=0).item()
    path0 = ref.path_job_id.sel(path="bad_to_good", seed=0).item()

    # a directory where prune (seed 0) must write final.pt makes that job fail for real
    (store / prune0 / "final.pt" / "blocker").mkdir(parents=True)
    proc = cli(cluster, "launch", spec, "--store", store, "--executor", "slurm", "--time", "10", check=True)
    assert "submitted 4 jobs in 3 job arrays" in proc.stderr, proc.stderr
    record = json.loads((store / "_slurm" / "tiny.json").read_text())
    assert set(record["jobs"]) == set(ref.run_job_id.values.ravel()) | set(ref.path_job_id.values.ravel())
    assert all(re.fullmatch(r"\d+(_\d+)?", r["task"]) for r in record["jobs"].values())  # one-task arrays: plain jobs
    plan, states = wait_all(spec, store)
    assert states[prune0] == "failed" and states[scratch0] == "cancelled" and states[path0] == "cancelled"
    assert list(states.values()).count("done") == 1
    assert starts(store, scratch0) == 0 and starts(store, path0) == 0  # never started
    assert "Traceback" in (store / prune0 / "log.txt").read_text()

    status = cli(cluster, "status", spec, "--store", store).stderr.replace("\n", " ")
    assert re.search(rf"failed prune {prune0}: log \S*{prune0}/log.txt", status), status
    assert re.search(rf"cancelled scratch {scratch0}", status) and re.search(rf"cancelled bad_to_good {path0}", status)
    assert "2 cancelled, 1 done, 1 failed" in status
    shown = json.loads(cli(cluster, "status", spec, "--store", store, "--json", check=True).stdout)  # docs/json.md
    assert {j["id"]: (j["state"], j["slurm_task"]) for j in shown["jobs"]} == {
        j: (states[j], r["task"]) for j, r in record["jobs"].items()}

    # fixed and launched again: only the failed job and its two dependants are submitted
    shutil.rmtree(store / prune0 / "final.pt")
    proc = cli(cluster, "launch", spec, "--store", store, "--executor", "slurm", "--time", "10", check=True)
    assert "submitted 3 jobs in 3 job arrays, already done 1, already queued or running 0" in proc.stderr, proc.stderr
    plan, states = wait_all(spec, store)
    assert all(s == "done" for s in states.values()), states
    assert starts(store, prune0) == 2 and starts(store, scratch0) == 1
    assert all(starts(store, j) == 1 for j in plan.jobs if j != prune0)
    again = cli(cluster, "launch", spec, "--store", store, "--executor", "slurm", "--time", "10", check=True)
    assert "submitted 0 jobs in 0 job arrays, already done 4" in again.stderr

    cli(cluster, "collect", spec, "--store", store, "--out", tmp_path / "slurm.nc", check=True)
    got = xr.open_dataset(tmp_path / "slurm.nc")
    for var in ("train_loss", "test_acc", "weight_sparsity", "path_train_loss", "path_test_loss"):
        assert np.array_equal(got[var].values, ref[var].values, equal_nan=True), var


REQUEUE = """\
study: requeue
data: {dataset: mnist1d, batch_size: 128}
model: {arch: mlp, hidden: [256, 256]}
train: {steps: 3000, eval_every: 1000, checkpoint_every: 100}
runs:
  dense: {regime: dense}
"""


def drained(env, prefix: str, timeout: float = 120) -> None:
    """Wait until no task of jobs named prefix... is left in the queue."""
    deadline = time.time() + timeout
    while any(n.startswith(prefix) for n in subprocess.run(["squeue", "-h", "-o", "%j"], env=env, capture_output=True,
                                                           text=True).stdout.split()):
        assert time.time() < deadline, f"tasks of {prefix} still queued"
        time.sleep(0.5)


def _resumed(store, job_id, ranks: int, deadline: float) -> None:
    """Wait until every rank of the started-again job has resumed from its checkpoint (a
    checkpoint written after the requeue could otherwise still come from the stopping one)."""
    log = store / job_id / "log.txt"
    while len(re.findall(r"^resuming from step", log.read_text() if log.exists() else "", re.M)) < ranks:
        assert time.time() < deadline, "the requeued job did not resume"
        time.sleep(0.2)


def _new_checkpoint(store, job_id, after: float, deadline: float) -> None:
    """Wait until the running job writes a resume checkpoint later than `after`."""
    ckpt = store / job_id / "resume.pt"
    while not (ckpt.exists() and ckpt.stat().st_mtime > after):
        assert time.time() < deadline and not (store / job_id / "shard.json").exists(), "no checkpoint seen"
        time.sleep(0.2)


@needs_cluster
@pytest.mark.slow  # about 40 s a case on 2 idle CPUs
@pytest.mark.parametrize("nodes", [1, 2])
def test_requeued_job_resumes_from_its_checkpoint(cluster, tmp_path, nodes):
    """`scontrol requeue` (as preemption does), then the time-limit signal (USR2, which submitit
    asks SLURM to send before the time limit): each time the job starts again and resumes
    from its latest checkpoint, on one task and on a two-node DDP job. On one node the job
    is task 0 of an array of two (two seeds, one task pickle hard-linked for both,
    executors/slurm/linked.py): the requeues restart that task only, and the other seed's
    task runs once, to the end."""
    if nodes > 1:  # a DDP job: srun starts one worker per task, each must resume
        names = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], env=cluster, capture_output=True, text=True).stdout
        if len(set(names.split())) < nodes:
            pytest.skip(f"the cluster in {SLURM_DIR} has one node: start it with STUDYSPEC_SLURM_NODES=2")
    spec = tmp_path / "requeue.yaml"
    spec.write_text(REQUEUE + (f"launch:\n  slurm: {{train: {{nodes: {nodes}, tasks_per_node: 1}}}}\n" if nodes > 1
                               else "sweep: {seed: [0, 1]}\n"))
    store = tmp_path / "store"
    cli(cluster, "launch", spec, "--store", store, "-e", "slurm", "--time", "10", check=True)
    jobs = json.loads((store / "_slurm" / "requeue.json").read_text())["jobs"]
    (job_id, rec), *others = sorted(jobs.items(), key=lambda kv: kv[1]["task"])
    assert [r["task"] for _, r in others] == ([] if nodes > 1 else [rec["task"][:-1] + "1"]), jobs
    deadline = time.time() + 300
    _new_checkpoint(store, job_id, 0, deadline)  # the running job wrote a checkpoint
    subprocess.run(["scontrol", "requeue", rec["task"]], env=cluster, check=True)
    _resumed(store, job_id, nodes, deadline)  # started again on every rank
    _new_checkpoint(store, job_id, time.time(), deadline)  # and checkpointed since
    # the time-limit signal: submitit's handler checkpoints (RunJob.checkpoint) and requeues the task
    subprocess.run(["scancel", "--signal=USR2", rec["task"]], env=cluster, check=True)
    plan, states = wait_all(spec, store)
    assert all(s == "done" for s in states.values()), states
    for other, _ in others:  # the other task of the array started once and was never requeued
        other_log = (store / other / "log.txt").read_text()
        assert re.findall(r"restart \d+", other_log) == ["restart 0"] and "resuming" not in other_log, other_log
    log = (store / job_id / "log.txt").read_text()
    assert "restart 1" in log and "restart 2" in log and "time limit near: requeueing" in log, log
    ranks = re.findall(r"^job \w+ \(train\) starting on [^\s,]+(?: \(node \S+\), rank (\d) of \d+)?,", log, re.M)
    assert sorted(ranks) == (["", "", ""] if nodes == 1 else ["0", "0", "0", "1", "1", "1"]), log
    resumed = [int(s) for s in re.findall(r"^resuming from step (\d+) of 3000", log, re.M)]
    # every rank resumed twice, from the same step, the second time from a later one
    assert len(resumed) == 2 * nodes and len(set(resumed)) == 2 and min(resumed) >= 100, log
    shard = json.loads((store / job_id / "shard.json").read_text())
    assert shard["coord"] == [0, 1000, 2000, 3000] and not (store / job_id / "resume.pt").exists()


@needs_cluster
@pytest.mark.slow  # about 30 s on 2 idle CPUs (10 tiny jobs)
def test_relaunch_after_some_stages_are_done_runs_with_a_padding_task(cluster, tmp_path):
    spec = tmp_path / "padded.yaml"
    spec.write_text(PADDED)
    store = tmp_path / "store"
    proc = cli(cluster, "launch", spec, "--store", store, "-e", "slurm", "--time", "10", check=True)
    assert "submitted 6 jobs in 3 job arrays, already done 0, already queued or running 0, no-op padding tasks 0" \
        in proc.stderr, proc.stderr  # a fresh study needs none
    plan, states = wait_all(spec, store)
    assert all(s == "done" for s in states.values()), states
    drained(cluster, "padded:")  # a task whose shard is written may still be finishing
    done, by = padded_relaunch(plan)
    first = {j: json.loads((store / j / "shard.json").read_text()) for j in plan.jobs}
    for j in set(plan.jobs) - done:
        (store / j / "shard.json").unlink()
    proc = cli(cluster, "launch", spec, "--store", store, "-e", "slurm", "--time", "10", check=True)
    assert "submitted 4 jobs in 3 job arrays, already done 2, already queued or running 0, no-op padding tasks 1" \
        in proc.stderr, proc.stderr
    assert re.search(r"array (\d+): 1 path job\(s\) \+ 1 no-op, stage 1, after aftercorr:\d+", proc.stderr), proc.stderr
    plan, states = wait_all(spec, store)
    assert all(s == "done" for s in states.values()), states
    for j in plan.jobs:
        assert starts(store, j) == (1 if j in done else 2), j
        again = json.loads((store / j / "shard.json").read_text())
        assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in first[j].items() if k != "seconds"}
    record = json.loads((store / "_slurm" / "padded.json").read_text())
    (padded,) = [a for a in record["arrays"] if a["padding"]]
    # the no-op task (index 0) ran and ended at once; the path job at index 1 ran after prune at seed 1
    assert record["jobs"][by[("init_to_pruned", 1)]]["task"] == f"{padded['id']}_1"
    want, deadline = [f"{padded['id']}_0|COMPLETED", f"{padded['id']}_1|COMPLETED"], time.time() + 120
    while (acct := sorted(subprocess.run(["sacct", "-X", "-n", "-P", "-j", padded["id"], "-o", "JobID,State"],
                                         env=cluster, capture_output=True, text=True).stdout.split())) != want:
        assert time.time() < deadline, acct  # a task whose shard is written may still be finishing
        time.sleep(0.5)


@needs_cluster
def test_bad_launch_settings_are_refused_before_queueing(cluster, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("study: tiny", "study: bad") + "launch:\n  slurm: {partition: nope}\n")
    store = tmp_path / "store"
    proc = cli(cluster, "launch", spec, "--store", store, "-e", "slurm")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"bad.yaml:\d+:\d+: launch.slurm.partition: SLURM rejects the train jobs' settings: "
                     r"invalid partition", proc.stderr), proc.stderr
    assert "hint: partitions here: debug" in proc.stderr
    proc = cli(cluster, "launch", spec, "--store", store, "-e", "slurm", "--partition", "debug",
               "--cpus-per-task", "999")
    assert proc.returncode == 2 and "Requested node configuration is not available" in proc.stderr, proc.stderr
    queued = subprocess.run(["squeue", "-h", "-o", "%j"], env=cluster, capture_output=True, text=True).stdout
    assert "bad:" not in queued and not (store / "_slurm").exists()


DDP = """\
study: ddp
data: {dataset: mnist1d, batch_size: 256}
model: {arch: mlp, hidden: [300, 100]}
train: {steps: 200, eval_every: 50, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}, schedule: {name: cosine}}
sparsity: 0.9
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.5, every: 10}}
paths:
  init_to_pruned: {kind: linear, from: prune.init, to: prune.final, points: 5}
launch:
  slurm: {train: {nodes: 2, tasks_per_node: 1}}
"""


@needs_cluster
@pytest.mark.slow  # about 40 s on 2 CPUs
def test_two_node_ddp_job_matches_the_local_run(cluster, tmp_path):
    import xarray as xr

    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], env=cluster, capture_output=True, text=True).stdout.split()
    if len(set(nodes)) < 2:
        pytest.skip(f"the cluster in {SLURM_DIR} has one node: start it with STUDYSPEC_SLURM_NODES=2 (as .ci/run does)")
    spec = tmp_path / "ddp.yaml"
    spec.write_text(DDP)
    store = tmp_path / "store"
    cli(cluster, "run", spec, "--store", tmp_path / "local", "--out", tmp_path / "local.nc", check=True)
    cli(cluster, "launch", spec, "--store", store, "-e", "slurm", "--time", "10", check=True)
    plan, states = wait_all(spec, store)
    assert all(s == "done" for s in states.values()), states
    (train_id,) = [j for j in plan.jobs if plan.jobs[j].kind == "train"]
    log = (store / train_id / "log.txt").read_text()
    # one worker per task (srun, started by submitit), on the two nodes
    starts_ = re.findall(r"^job \w+ \(train\) starting on \S+ \(node (\S+)\), rank (\d) of 2", log, re.M)
    assert sorted(rank for _, rank in starts_) == ["0", "1"], log
    assert len({node for node, _ in starts_}) == 2, log
    assert json.loads((store / train_id / "shard.json").read_text())["tasks"] == 2
    (path_id,) = [j for j in plan.jobs if plan.jobs[j].kind == "path"]
    assert starts(store, path_id) == 1  # the path query ran in one task

    cli(cluster, "collect", spec, "--store", store, "--out", tmp_path / "slurm.nc", check=True)
    got, ref = xr.open_dataset(tmp_path / "slurm.nc"), xr.open_dataset(tmp_path / "local.nc")
    for var in ("train_loss", "test_loss", "test_acc", "weight_sparsity", "path_train_loss", "path_test_loss"):
        assert np.allclose(got[var].values, ref[var].values, rtol=0, atol=1e-4, equal_nan=True), var


LINES = """\
import sys
from pathlib import Path
from studyspec.executors.slurm.task import to_log
to_log(Path(sys.argv[1]))
for i in range(3000):
    print(sys.argv[2] * 40, i, flush=True)
"""


def test_the_ranks_of_a_job_write_whole_lines_to_its_log(tmp_path):
    """The tasks of a multi-node job append to one log, under `python -u` (as submitit starts
    them): each line must reach the file in one write, never split by another rank's line
    (seen before: one rank's 'starting' line ran into the other's, and the test that reads
    them failed once in about ten runs)."""
    log = tmp_path / "log.txt"
    procs = [subprocess.Popen([sys.executable, "-u", "-c", LINES, str(log), tag], cwd=ROOT) for tag in "AB"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    lines = log.read_text().splitlines()
    assert len(lines) == 6000
    bad = [line for line in lines if not re.fullmatch(r"(A{40}|B{40}) \d+", line)]
    assert not bad, bad[:5]


def test_one_executor_interface_for_local_and_slurm(tmp_path):
    import inspect

    from studyspec import executors
    from studyspec.executors.base import Executor
    from studyspec.executors.slurm.record import Record
    from studyspec.store import Store

    loaded, store = loads(SPEC), Store(tmp_path / "store")
    local, slurm = executors.create("local", loaded), executors.create("slurm", loaded)
    for method in ("launch", "status", "wait", "cancel"):
        assert inspect.signature(getattr(type(local), method)) == inspect.signature(getattr(Executor, method))
        assert inspect.signature(getattr(type(slurm), method)) == inspect.signature(getattr(Executor, method))
    # status and cancel ask the executor that launched the study: SLURM once its record exists
    assert executors.of_study(loaded, store).name == "local"
    Record(store, loaded.study.study).write({"jobs": {}, "arrays": []})
    assert executors.of_study(loaded, store).name == "slurm"
    assert executors.of_study(loaded, store, "local").name == "local"
    plan = build(loaded.study)
    got = local.status(plan, store)
    assert set(got.states.values()) == {"to run"} and set(got.states) == set(plan.jobs)
    with pytest.raises(UserError):  # command-line settings are checked when the executor is made
        executors.create("slurm", loaded, Options(sets=["train.cpus_per_task=0"]))
