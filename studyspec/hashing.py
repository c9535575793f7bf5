"""Content-addressed job ids: a hash of the canonical JSON of a resolved config."""

from __future__ import annotations

import hashlib
import json

ID_LENGTH = 16


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def job_id(config: dict) -> str:
    """The id of a job: fields equal to their defaults must already be left out of `config`."""
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:ID_LENGTH]
