"""Self-contained HTML reports: every figure embedded as a PNG data URI, plus the same numbers as JSON.

Problem: a finding has to travel — to a colleague, a paper draft, a PR — without the notebook that made it.
Mechanism: a report is a list of :class:`Section` (title, paragraph, optional matplotlib figure, optional
table); :func:`render_html` writes one HTML file with inline CSS and base64 PNGs (no external requests, so it
opens offline and in headless browsers), and :func:`write_report` writes ``report.html`` + ``report.json``.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> p = write_report([Section("Hello", "A first section.", table=[{"a": 1}])], d, {"k": 1})
    >>> "<h2>Hello</h2>" in p.read_text(), (d / "report.json").exists()
    (True, True)
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from mixprobe._check import argument_error, checked
from mixprobe.io import atomic_write_json, atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d1d1f;line-height:1.45} h1{font-size:1.7em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:1.8em;
border-bottom:1px solid #ddd;padding-bottom:.2em} .verdict{font-size:1.15em;padding:.7em 1em;border-radius:8px;
background:#eef5ff;border:1px solid #b8d4ff} .label{font-weight:700;text-transform:uppercase} img{max-width:100%;
border:1px solid #eee;border-radius:4px} table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .55em;text-align:right} th{background:#f6f6f6} td:first-child,
th:first-child{text-align:left} .meta{color:#666;font-size:.9em}
"""


# Once loaded, the page records how many of its figures decoded (read back by mixprobe.report.browser).
FIGURE_CHECK = """<script>window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures', ok + '/' + imgs.length);
});</script>"""


@dataclass
class Section:
    """One block of a report."""

    title: str
    text: str = ""
    figure: object | None = None          # a matplotlib Figure
    table: list[dict] | None = None
    html_extra: str = ""
    data: dict = field(default_factory=dict)


@checked
def figure_to_data_uri(fig) -> str:
    if not callable(getattr(fig, "savefig", None)):
        raise argument_error("figure_to_data_uri", "fig", fig, "a matplotlib Figure")
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


@checked
def render_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@checked
def render_html(sections: list[Section], title: str = "mixprobe report", subtitle: str = "") -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{html.escape(subtitle)}</p>"]
    for s in sections:
        parts.append(f"<section><h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        parts.append(s.html_extra)
        if s.figure is not None:
            parts.append(f"<img alt='{html.escape(s.title)}' src='{figure_to_data_uri(s.figure)}'>")
        if s.table:
            parts.append(render_table(s.table))
        parts.append("</section>")
    parts.append(FIGURE_CHECK)
    parts.append("</body></html>")
    return "\n".join(parts)


@checked
def write_report(sections: list[Section], out_dir: str | Path, data: dict, title: str = "mixprobe report",
                 subtitle: str = "") -> Path:
    """Write ``out_dir/report.json`` and then ``out_dir/report.html``, each atomically; return the HTML path.

    A writer killed at any moment leaves each file whole (the previous version or the new one, never a part); the
    HTML comes last, so a new ``report.html`` means its ``report.json`` is in too."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = render_html(sections, title, subtitle)
    atomic_write_json(out / "report.json", json.loads(json.dumps(data, default=str)))
    atomic_write_text(out / "report.html", page)
    return out / "report.html"


@checked
def load_json_records(paths: list[Path], what: str, required: set[str], rerun: str) -> list[dict]:
    """Parse study records (one JSON object per file); a :class:`~mixprobe.errors.DataError` naming the file that is
    unreadable or lacks a ``required`` key (``what``: the record kind; ``rerun``: what to rerun)."""
    from mixprobe.errors import DataError

    records = []
    for p in paths:
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{p} is not a readable JSON record ({e}); delete it and rerun the {rerun}") from None
        if not isinstance(rec, dict) or not required <= set(rec):
            raise DataError(f"{p} is not {what} (needs {', '.join(sorted(required))}); delete it and rerun the "
                            f"{rerun}")
        records.append(rec)
    return records

