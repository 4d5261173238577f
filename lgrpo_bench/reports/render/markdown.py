"""Markdown (``table.md``): README-ready."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lgrpo_bench.reports.render.cells import (
    MISSING, Style, delta_caption, delta_lines, label_columns, per_run_caption, per_run_lines, summary_caption, summary_lines,
)
from lgrpo_bench.reports.table import ReportTable

__all__ = ["escape_markdown", "to_markdown"]


_MARKDOWN_SPECIAL = re.compile(r"([\\|*_`\[\]<>#])")


def escape_markdown(text: str) -> str:
    """``text`` with Markdown's inline specials (``\\ | * _ ` [ ] < > #``) backslash-escaped for a table cell."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


_MARKDOWN = Style(escape=escape_markdown, bold=lambda s: f"**{s}**", pm=" ± ", missing=MISSING)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(table: ReportTable, per_seed: bool = False) -> str:
    """README-ready Markdown: the summary table, the Δ table, with ``per_seed`` every run's values, and the notes."""
    header, rows, _ = summary_lines(table, _MARKDOWN)
    parts = [_markdown_table(header, rows, label_columns(table)), "", f"*{escape_markdown(summary_caption(table))}*"]
    for mark, text in table.footnotes:
        parts += ["", escape_markdown(f"{mark} {text}" if mark else text)]
    delta_header, delta_rows, _ = delta_lines(table, _MARKDOWN)
    if delta_rows:
        numeric_from = label_columns(table) + bool(table.row_keys.shown)
        parts += ["", _markdown_table(delta_header, delta_rows, numeric_from), "", f"*{escape_markdown(delta_caption(table))}*"]
    if per_seed:
        run_header, run_rows, _ = per_run_lines(table, _MARKDOWN)
        numeric_from = label_columns(table) + 2 + len(table.row_keys.averaged)
        parts += ["", _markdown_table(run_header, run_rows, numeric_from), "", f"*{escape_markdown(per_run_caption(table))}*"]
    if table.notes:
        parts += [""] + [f"- {escape_markdown(note)}" for note in table.notes]
    return "\n".join(parts) + "\n"
