"""Content-addressed job ids: a hash of the canonical JSON of a resolved config."""

from __future__ import annotations

import hashlib
import json

ID_LENGTH = 16


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def digest(text: str) -> str:
    """The id of a job whose key's canonical JSON is `text`."""
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def job_id(config: dict) -> str:
    """The id of a job: fields equal to their defaults must already be left out of `config`."""
    return digest(canonical(config))
