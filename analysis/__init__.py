"""Reading collected studies: the paper's verdicts (E0-E5 and controls), figures, reports.

Nothing here trains; everything reads an xarray Dataset as written by `studyspec collect`.
"""

from .roles import PathRole, path_roles, run_roles
from .verdicts import Verdict, final, table, verdicts

__all__ = ["PathRole", "Verdict", "final", "path_roles", "run_roles", "table", "verdicts", "write_report"]


def write_report(*args, **kwargs):
    from .report import write_report as _write

    return _write(*args, **kwargs)
