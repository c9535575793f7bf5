"""The software a study's jobs ran under, summarised for the collected dataset (no torch).

Every job writes ``environment.json`` in its run directory (runners/environment.py) and
carries a compact ``versions`` summary in its shard: python, torch, cuda, cudnn and
``packages`` (a hash of every installed distribution and its version). ``attrs`` turns
those of the collected jobs into the dataset's global attributes and flags a study whose
jobs did not all run under the same versions; ``differences`` names the packages that
differ, reading one ``environment.json`` per distinct package set.
"""
from __future__ import annotations

import json
from collections import Counter

FILE = "environment.json"  # = runners.environment.FILE (the engine never imports runners)


def attrs(by_job: dict[str, dict], store) -> dict:
    """Global attributes from job id -> its shard's ``versions``:

    - ``<key>_version`` for python, torch, cuda, cudnn: the distinct values, comma-separated;
    - ``environment_packages``: each distinct package-set hash with its number of jobs;
    - ``environment_mixed``: 1 if the jobs ran under different versions of anything above, else 0;
    - ``environment_differences``: which packages (and python/torch/cuda/cudnn) differ, and how.
    """
    values: dict[str, Counter] = {}
    for v in by_job.values():
        for k, x in v.items():
            values.setdefault(k, Counter())[str(x)] += 1
    out = {f"{k}_version": ", ".join(sorted(c)) for k, c in values.items() if k != "packages"}
    hashes = values.get("packages", Counter())
    out["environment_packages"] = "; ".join(f"{h} ({n} job{'s' * (n != 1)})" for h, n in sorted(hashes.items()))
    mixed = sorted(k for k, c in values.items() if len(c) > 1)
    out["environment_mixed"] = int(bool(mixed))
    diffs = [f"{k}: {_counts(values[k])}" for k in mixed if k != "packages"]
    if "packages" in mixed:
        diffs += differences(by_job, store)
    out["environment_differences"] = "; ".join(diffs)
    return out


def _counts(c: Counter) -> str:
    return ", ".join(f"{v} ({n} job{'s' * (n != 1)})" for v, n in sorted(c.items()))


def differences(by_job: dict[str, dict], store) -> list[str]:
    """'name: version (n jobs), other (m jobs)' for each package whose version is not the same in
    every package set of the study (one environment.json read per set; 'absent' when not installed)."""
    jobs_of: dict[str, list[str]] = {}
    for job, v in by_job.items():
        if "packages" in v:
            jobs_of.setdefault(v["packages"], []).append(job)
    sets: list[tuple[dict, int]] = []
    for h, jobs in sorted(jobs_of.items()):
        pkgs = None
        for job in jobs:  # any job of the set will do; the first one whose record is readable
            try:
                pkgs = json.loads((store.run_dir(job) / FILE).read_text())["packages"]
                break
            except (OSError, ValueError, KeyError):
                continue
        if pkgs is None:
            return [f"packages: {len(jobs_of)} different sets (environment.json of some jobs unreadable)"]
        sets.append((pkgs, len(jobs)))
    names = sorted({n for p, _ in sets for n in p})
    out = []
    for name in names:
        c = Counter()
        for p, n in sets:
            c[p.get(name, "absent")] += n
        if len(c) > 1:
            out.append(f"{name}: {_counts(c)}")
    return out
