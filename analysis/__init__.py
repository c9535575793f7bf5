"""Reading collected studies: the claims of a study's spec decided with their statistics,
figures, reports.

Nothing here trains; everything reads an xarray Dataset as written by `studyspec collect`.
"""

from .claims import Decided, decide, final, table
from .roles import PathRole, path_roles, run_roles

__all__ = ["Decided", "PathRole", "decide", "final", "path_roles", "run_roles", "table", "write_report"]


def write_report(*args, **kwargs):
    from .report import write_report as _write

    return _write(*args, **kwargs)
