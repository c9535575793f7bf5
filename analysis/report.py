"""`studyspec report`: figures and the verdict table of a collected study, in one folder."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from . import figures
from .verdicts import points, table, verdicts


def _slug(where: str) -> str:
    return "_" + where.replace(", ", "_").replace("=", "-") if where else ""


def write_report(ds, out_dir: Path, source: str = "", command: str = "") -> Path:
    """Write PNG figures, verdicts.md and verdicts.json into out_dir; return the .md path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vs = verdicts(ds)
    figs: list[tuple[str, Path]] = []
    for where, sel in points(ds):
        at = ds.isel(sel)
        title = f"({where})" if where else ""
        for kind, fn in (("curves", figures.curves), ("paths", figures.paths), ("barriers", figures.barriers)):
            made = fn(at, out_dir / f"{kind}{_slug(where)}.png", title)
            if made:
                figs.append((f"{kind} {where}".strip(), made))
    study = ds.attrs.get("study", "study")
    lines = [f"# {study}: verdicts", ""]
    if source:
        lines.append(f"Data: `{source}` ({ds.attrs.get('jobs_collected', '?')}/{ds.attrs.get('jobs_total', '?')} jobs, "
                     f"collected {ds.attrs.get('created', '?')}).")
    if command:
        lines.append(f"Made by: `{command}`.")
    lines += ["", "Numbers are mean ± std over seeds (n = number of seeds). A path has a barrier when its",
              "barrier exceeds 0.01 nats and 2% of the larger endpoint loss (see docs/results.md).", "",
              table(vs), ""]
    for label, path in figs:
        lines += [f"![{label}]({path.name})", ""]
    md = out_dir / "verdicts.md"
    md.write_text("\n".join(lines))
    (out_dir / "verdicts.json").write_text(json.dumps([asdict(v) for v in vs], indent=1, default=float))
    return md
