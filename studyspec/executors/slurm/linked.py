"""submitit's SlurmExecutor, with an array's one task pickle written once and hard-linked.

submitit pickles every task of an array into its own file (`<folder>/<array>_<i>_submitted.pkl`,
which the task loads when it starts). On a disk where creating a file costs 0.2-0.5 ms
that is most of a 1,000-task launch. Here every task of an array runs the same callable
(`task.ArrayTask`, which finds its job by its array index in the array's manifest), so the
pickle is written once and each task's file is a hard link to it (about 10 us each).

A requeue is safe: before submitit requeues a task it writes that task's new pickle to a
temporary file and renames it over the task's path, which replaces that one link and leaves
the other tasks' files alone. Submissions that are not one shared callable (a one-task
array, or callables that differ) go through submitit's own code unchanged.
"""

from __future__ import annotations

import os
import uuid

import submitit
from submitit.core import utils
from submitit.slurm.slurm import SlurmJob


class LinkedArrayExecutor(submitit.SlurmExecutor):
    def _internal_process_submissions(self, delayed_submissions):
        first = delayed_submissions[0]
        shared = len(delayed_submissions) > 1 and all(
            d.function is first.function and not d.args and not d.kwargs for d in delayed_submissions)
        if not shared:
            return super()._internal_process_submissions(delayed_submissions)
        # as submitit's SlurmExecutor._internal_process_submissions (1.5), with one dump
        folder = utils.JobPaths.get_first_id_independent_folder(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        first.set_timeout(self.parameters.get("time", 5), self.max_num_timeout)
        pickle_path = folder / f"{uuid.uuid4().hex}.pkl"
        first.dump(pickle_path)
        n = len(delayed_submissions)
        array_ex = submitit.SlurmExecutor(self.folder, self.max_num_timeout, python=self.python)
        array_ex.update_parameters(**self.parameters)
        array_ex.parameters["map_count"] = n
        self._throttle()
        try:
            first_job = array_ex._submit_command(self._submitit_command_str)
            tasks = list(range(first_job.num_tasks))
            jobs = [SlurmJob(folder=self.folder, job_id=f"{first_job.job_id}_{a}", tasks=tasks) for a in range(n)]
            # submitit's own name for each task's pickle (JobPaths formats each in ~0.15 ms: 1,000
            # of them are a tenth of a launch), checked against submitit's for the first task;
            # a folder with %j/%A/%a in it is left to submitit
            first_path = jobs[0].paths.submitted_pickle
            paths = [first_path.parent / f"{job.job_id}_submitted.pkl" for job in jobs]
            if "%" in str(self.folder) or paths[0] != first_path:
                paths = [job.paths.submitted_pickle for job in jobs]
            paths[0].parent.mkdir(parents=True, exist_ok=True)
            for path in paths:
                os.link(pickle_path, path)
        finally:
            pickle_path.unlink(missing_ok=True)
        return jobs
