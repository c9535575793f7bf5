"""`studyspec report`: figures and the claims table of a collected study, in one folder."""

from __future__ import annotations

import json
from pathlib import Path

from . import figures
from .claims import decide, points, table
from .stats import ALPHA


def _slug(where: str) -> str:
    return "_" + where.replace(", ", "_").replace("=", "-") if where else ""


def write_report(ds, out_dir: Path, source: str = "", command: str = "", claims: dict | None = None) -> Path:
    """Write PNG figures, claims.md and claims.json into out_dir; return the .md path.
    `claims`: name -> validated claim (default: those of the spec text stored in `ds`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    decided = decide(ds, claims)
    figs: list[tuple[str, Path]] = []
    for where, sel in points(ds):
        at = ds.isel(sel)
        title = f"({where})" if where else ""
        for kind, fn in (("curves", figures.curves), ("paths", figures.paths), ("barriers", figures.barriers)):
            made = fn(at, out_dir / f"{kind}{_slug(where)}.png", title)
            if made:
                figs.append((f"{kind} {where}".strip(), made))
    made = figures.claims(decided, out_dir / "claims.png")
    if made:
        figs.insert(0, ("claims", made))
    study = ds.attrs.get("study", "study")
    lines = [f"# {study}: claims", ""]
    if source:
        lines.append(f"Data: `{source}` ({ds.attrs.get('jobs_collected', '?')}/{ds.attrs.get('jobs_total', '?')} jobs, "
                     f"collected {ds.attrs.get('created', '?')}).")
    if command:
        lines.append(f"Made by: `{command}`.")
    m = sum(d.effect.n >= 2 for d in decided)
    lines += ["", f"Each claim is decided at each sweep point from its per-seed effects (n = distinct seeds with "
              f"data): Student t interval of the mean effect; **holds** when the interval lies entirely on the "
              f"claimed side of the margin, **does not hold** when entirely on the other side, **undecided** when "
              f"it straddles the margin (or n < 2). The {m} decisions are corrected together (Holm, family-wise "
              f"level {ALPHA:g}): each is made at its Holm level, whose interval is shown beside the uncorrected "
              f"95% one. See docs/results.md#claims.", ""]
    lines += [table(decided) if decided else "No claims in this study's spec (`claims:`).\n", ""]
    for label, path in figs:
        lines += [f"![{label}]({path.name})", ""]
    md = out_dir / "claims.md"
    md.write_text("\n".join(lines))
    (out_dir / "claims.json").write_text(json.dumps([d.as_dict() for d in decided], indent=1, default=float))
    return md
