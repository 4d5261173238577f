"""HTML (``report.html``): a self-contained page with the tables and the plots embedded."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from lgrpo_bench.reports.render.cells import (
    MISSING, Style, delta_caption, delta_lines, label_columns, per_run_caption, per_run_lines, summary_caption, summary_lines,
)
from lgrpo_bench.reports.table import ReportTable

__all__ = ["to_html"]


_HTML = Style(escape=html.escape, bold=lambda s: f"<b>{s}</b>", pm=" ± ", missing=MISSING, mark=lambda marks: f"<sup>{marks}</sup>",
               literal=html.escape)
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1600px}table{border-collapse:collapse;margin:1em 0}
th,td{padding:.3em .7em;text-align:right;border-bottom:1px solid #ddd}th{border-bottom:2px solid #444}
td.l,th.l{text-align:left}tr.start td{border-top:2px solid #888}caption{caption-side:bottom;font-size:.85em;color:#555;text-align:left}
p.selection{color:#555;margin-top:-.5em}p.foot{font-size:.9em;margin:.2em 0 1em}
figure{margin:2em 0}figure img{display:block;max-width:100%;height:auto}figcaption{font-size:.9em;color:#555;margin-top:.4em;max-width:60em}"""
"""Figures at their own size (about 900–1450 px wide, made for this page), shrunk only to fit a narrower window."""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], starts: Sequence[int], numeric_from: int, caption: str) -> str:
    def cls(i: int) -> str:
        return ' class="l"' if i < numeric_from else ""

    out = ["<table>", f"<caption>{html.escape(caption)}</caption>",
           "<tr>" + "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(header)) + "</tr>"]
    for index, row in enumerate(rows):
        start = ' class="start"' if index and index in starts else ""
        out.append(f"<tr{start}>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def to_html(table: ReportTable, images: Mapping[str, bytes] | None = None, title: str = "lgrpo-bench report", *,
            subtitle: str = "", captions: Mapping[str, str] | None = None, per_seed: bool = False) -> str:
    """A self-contained page: ``title`` (the grid or experiments reported) and ``subtitle`` (the exact selection), the
    summary with its footnotes, the Δ table, the notes, and each PNG plot embedded as base64 in a ``<figure>`` at
    its own width with its caption (``captions[name]``); with ``per_seed``, every run's values after the Δ table."""
    import base64

    header, rows, starts = summary_lines(table, _HTML)
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f'<p class="selection">{html.escape(subtitle)}</p>')
    parts.append(_html_table(header, rows, starts, label_columns(table), summary_caption(table)))
    parts += [f'<p class="foot">{html.escape(f"{mark} {text}" if mark else text)}</p>' for mark, text in table.footnotes]
    delta_header, delta_rows, delta_starts = delta_lines(table, _HTML)
    if delta_rows:
        numeric_from = label_columns(table) + bool(table.row_keys.shown)
        parts.append(_html_table(delta_header, delta_rows, delta_starts, numeric_from, delta_caption(table)))
    if per_seed:
        run_header, run_rows, run_starts = per_run_lines(table, _HTML)
        numeric_from = label_columns(table) + 2 + len(table.row_keys.averaged)
        parts.append(_html_table(run_header, run_rows, run_starts, numeric_from, per_run_caption(table)))
    if table.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in table.notes) + "</ul>")
    for name, png in (images or {}).items():
        encoded = base64.b64encode(png).decode("ascii")
        caption = (captions or {}).get(name, "")
        parts.append(f'<figure id="{html.escape(name)}"><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">'
                     + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "") + "</figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
