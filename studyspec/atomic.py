"""The one way files are written atomically (torch-free; the runners use it too).

``write_with(path, write)`` calls ``write(tmp)`` on a temporary file in the same folder,
flushes it to disk, gives it the permissions the umask gives (as any file the user creates;
mkstemp alone gives 0600) and renames it over ``path`` (a symbolic link there is replaced,
never followed): a reader sees the
old file or the new one, never half of one, and a crash leaves at most a hidden
``.<name>.*.tmp`` file, never a half-written ``path``. On any error the temporary file is
removed and the error raised.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def write_with(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Write ``path`` atomically with ``write(tmp_path)`` (see the top of the module)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def umask() -> int:
    """The process's umask (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically."""
    return write_with(path, lambda tmp: Path(tmp).write_text(text))
