"""What a SLURM launch leaves in the store, next to the run directories:

- `<store>/_slurm/<study>.json`: which SLURM task holds which job id (the latest launch
  wins) and the arrays submitted; status, cancel and relaunch read it;
- `<store>/_slurm/<study>/`: submitit's folder (batch scripts, pickled tasks, each array's
  manifest `tasks-<uuid>.json` (the job at each index, see task.ArrayTask), SLURM's own
  output files `<array>_<index>_<task>_log.out`). A job's own log is `<store>/<job id>/log.txt`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...store import Store, write_atomic


class Record:
    def __init__(self, store: Store, study: str):
        self.path: Path = store.root / "_slurm" / f"{study}.json"
        self.folder: Path = store.root / "_slurm" / study

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {"jobs": {}, "arrays": []}

    def write(self, record: dict) -> None:
        write_atomic(self.path, json.dumps(record, indent=1, sort_keys=True))
