"""Split the jobs to submit into SLURM job arrays with exact per-task dependencies.

SLURM gives one `--dependency` to a whole array, and submitit numbers an array's tasks
0..n-1. `aftercorr:A` makes task i of an array wait for task i of array A (and with
`--kill-on-invalid-dep=yes` cancels exactly task i when A_i fails). So every job gets an
array index shared by every job it is connected to (its connected component among the
jobs to submit), and the jobs are grouped into arrays so that, in each array, every
task's upstream jobs sit in the same upstream arrays at the same index:

    array key = (block, stage, kind, upstream arrays, upstream tasks queued earlier, rank)

`rank` tells apart jobs of one component with the same key (scratch and lottery at one
sweep point); `block` keeps indices below SLURM's MaxArraySize. A quick-start-like study
becomes one array per run or path name. Upstream jobs queued by an earlier launch are
waited for with plain `afterok:<task>`.

Indices: each component gets the smallest index free in every array it has a job in,
components with jobs in the most arrays first. Where an array has no job at an index
below its last one, that task is a no-op (a padding task: it exits at once, without
torch). A fresh study of one shape needs none; a relaunch after some stages are done may
(two components that share one array but not the next).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...plan import Plan


@dataclass
class Array:
    key: tuple
    kind: str
    stage: int
    jobs: dict[int, str] = field(default_factory=dict)  # array index -> job id; other indices: no-op
    corr: list[int] = field(default_factory=list)  # positions of upstream arrays (same index)
    after: list[str] = field(default_factory=list)  # upstream SLURM task ids queued earlier (afterok)
    slurm_id: str | None = None

    @property
    def name(self) -> str:
        return f"s{self.stage}-{self.kind}-{self.key[-1]}"

    @property
    def length(self) -> int:
        return max(self.jobs) + 1 if self.jobs else 0

    @property
    def padding(self) -> int:
        return self.length - len(self.jobs)

    def task(self, index: int) -> str:
        """The SLURM id of task `index` (a one-task array is a plain job for submitit)."""
        return self.slurm_id if self.length == 1 else f"{self.slurm_id}_{index}"


def group(plan: Plan, todo: list[str], active: dict[str, str], max_index: int = 1000) -> list[Array]:
    """Split the jobs to submit into arrays with exact per-task dependencies (see the module doc).
    `active`: job id -> SLURM task id of upstream jobs already queued or running."""
    todo_set = set(todo)
    parent = {j: j for j in todo}

    def find(j):
        while parent[j] != j:
            parent[j] = parent[parent[j]]
            j = parent[j]
        return j

    for j in todo:
        for d in plan.jobs[j].deps:
            if d in todo_set:
                parent[find(j)] = find(d)
    comp: dict[str, int] = {}
    arrays: list[Array] = []
    by_key: dict[tuple, int] = {}
    where: dict[str, int] = {}  # job id -> position of its array
    members: list[set[int]] = []  # components with a job in each array
    of_comp: list[list[tuple[int, str]]] = []  # per component: (array position, job id)
    for j in todo:  # plan order: upstream jobs come first
        job = plan.jobs[j]
        c = comp.setdefault(find(j), len(comp))
        if c == len(of_comp):
            of_comp.append([])
        ups = tuple(sorted({where[d] for d in job.deps if d in todo_set}))
        ext = tuple(sorted(active[d] for d in job.deps if d in active))
        rank = 0
        while (key := (c // (max_index + 1), job.stage, job.kind, ups, ext, rank)) in by_key \
                and c in members[by_key[key]]:
            rank += 1
        if key not in by_key:
            by_key[key] = len(arrays)
            arrays.append(Array(key, job.kind, job.stage, corr=list(ups), after=list(ext)))
            members.append(set())
        pos = by_key[key]
        members[pos].add(c)
        of_comp[c].append((pos, j))
        where[j] = pos
    used: list[set[int]] = [set() for _ in arrays]
    low = [0] * len(arrays)  # the smallest index free in each array
    for c in sorted(range(len(of_comp)), key=lambda c: (-len(of_comp[c]), c)):
        index = max(low[pos] for pos, _ in of_comp[c])  # no index below is free in every array
        while any(index in used[pos] for pos, _ in of_comp[c]):
            index += 1
        for pos, j in of_comp[c]:
            used[pos].add(index)
            arrays[pos].jobs[index] = j
            while low[pos] in used[pos]:
                low[pos] += 1
    for a in arrays:
        a.jobs = dict(sorted(a.jobs.items()))
    return arrays


def dependency(arrays: list[Array], a: Array) -> list[str]:
    """SLURM dependency terms of array `a` (its upstream arrays are submitted already)."""
    terms = []
    for p in a.corr:
        up = arrays[p]
        # a one-task array waits for exactly task 0 of its upstream array
        terms.append(f"afterok:{up.task(0)}" if a.length == 1 else f"aftercorr:{up.slurm_id}")
    return terms + [f"afterok:{t}" for t in a.after]


def ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8'."""
    out, xs = [], sorted(indices)
    i = 0
    while i < len(xs):
        k = i
        while k + 1 < len(xs) and xs[k + 1] == xs[k] + 1:
            k += 1
        out.append(str(xs[i]) if k == i else f"{xs[i]}-{xs[k]}")
        i = k + 1
    return ",".join(out)
