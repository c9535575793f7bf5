"""The report as one self-contained HTML page, to open offline and share as a single file.

It is built from what `studyspec report` wrote (its Markdown page: the table of claims or
verdicts and the figures it links) plus the dataset's attributes: the spec, the overrides,
the software versions and the commands that produced it. Figures are embedded as data URIs;
the page loads no script, font, stylesheet or image from anywhere else.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 1em 0; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 85%; }
code { font-size: 90%; }
footer { color: #666; font-size: 85%; margin-top: 3em; }
"""


def _render(md: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(md)


def _embed(body: str, folder: Path) -> str:
    """Replace every <img src="FILE"> of a file in `folder` by a data URI."""

    def inline(m: re.Match) -> str:
        src = html.unescape(m.group(2))
        path = folder / src
        if "://" in src or src.startswith("data:") or not path.is_file():
            raise FileNotFoundError(f"report page: figure {src!r} not found in {folder}")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        data = base64.b64encode(path.read_bytes()).decode()
        return f'{m.group(1)}"data:{mime};base64,{data}"'

    return re.sub(r'(<img\s+src=)"([^"]*)"', inline, body)


def _versions(attrs: dict) -> list[tuple[str, str]]:
    return [(k.removesuffix("_version"), str(v)) for k, v in sorted(attrs.items()) if k.endswith("_version")]


def page(ds, md_path: Path, command: str = "") -> str:
    """The HTML text of the page for the report whose Markdown is `md_path`."""
    md_path = Path(md_path)
    attrs = dict(ds.attrs)
    study = html.escape(str(attrs.get("study", "study")))
    body = _embed(_render(md_path.read_text()), md_path.parent)
    parts = [body]
    commands = [c for c in (str(attrs.get("history", "")), command) if c]
    parts.append("<h2>How this page was made</h2><pre>" + html.escape("\n".join(commands)) + "</pre>")
    if attrs.get("overrides"):
        parts.append("<h2>Command-line overrides</h2><pre>" + html.escape(str(attrs["overrides"])) + "</pre>")
    parts.append("<h2>Spec</h2><pre>" + html.escape(str(attrs.get("spec", ""))) + "</pre>")
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _versions(attrs))
    parts.append(f'<h2>Versions</h2><table class="versions"><tr><th>software</th><th>version</th></tr>{rows}</table>')
    parts.append(f"<footer>studyspec report of study {study}; data collected {html.escape(str(attrs.get('created', '?')))}"
                 f" ({attrs.get('jobs_collected', '?')}/{attrs.get('jobs_total', '?')} jobs).</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{study}: studyspec report</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_page(ds, md_path: Path, out: Path | None = None, command: str = "") -> Path:
    """Write the page (default: report.html next to the Markdown) atomically; return its path."""
    out = Path(out) if out else Path(md_path).with_name("report.html")
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page(ds, md_path, command), encoding="utf-8")
    tmp.replace(out)
    return out
