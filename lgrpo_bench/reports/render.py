"""Renderers of a :class:`~lgrpo_bench.reports.table.ReportTable`: Markdown, LaTeX, CSV, HTML and rich.

Numbers are shown in points (percent of the metric, one decimal). Missing data is ``—`` (``--`` in
LaTeX), never 0; a single seed shows its std as missing. A Δ whose interval contains 0 carries ``n.s.``
(not significant) in every format.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lgrpo_bench.reports.loader import RunRecord
from lgrpo_bench.reports.table import Cell, DeltaCell, ReportTable

__all__ = [
    "MISSING",
    "NOT_SIGNIFICANT",
    "deltas_csv",
    "escape_latex",
    "escape_markdown",
    "results_csv",
    "rich_tables",
    "to_html",
    "to_latex",
    "to_latex_deltas",
    "to_markdown",
]

MISSING = "—"
NOT_SIGNIFICANT = "n.s."
RESULTS_CSV_FIELDS: tuple[str, ...] = (
    "experiment_id", "mlflow_run_id", "run_id", "model_size", "model", "algorithm", "seed", "state",
    "benchmark", "metric", "value", "hash", "protocol", "k", "temperature", "top_p",
)
DELTAS_CSV_FIELDS: tuple[str, ...] = (
    "model_size", "algorithm", "baseline", "column", "delta", "ci_low", "ci_high", "confidence",
    "p_improvement", "significant", "n_problems", "paired_seeds",
)
#: ``train/heldout_acc`` learning-curve mean in the tidy CSV: benchmark ``train``, this metric name.
EFFICIENCY_CSV_METRIC = "heldout_acc_curve_mean"


def points(value: float | None, signed: bool = False) -> str | None:
    """``value`` (a fraction) in points with one decimal (``+`` sign when ``signed``); ``None`` stays ``None``."""
    if value is None:
        return None
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


@dataclass(frozen=True)
class _Style:
    escape: Callable[[str], str]
    bold: Callable[[str], str]
    pm: str
    missing: str
    minus: str = "-"


def _cell_text(cell: Cell, row_n: int, style: _Style) -> str:
    stats = cell.stats
    if stats.mean is None:
        return style.missing
    mean = points(stats.mean)
    std = points(stats.std) if stats.std is not None else style.missing
    text = f"{mean}{style.pm}{std}"
    if cell.best:
        text = style.bold(text)
    if stats.n != row_n:
        text += f" (n={stats.n})"
    return text


def _delta_text(cell: DeltaCell, style: _Style) -> str:
    if cell.delta is None:
        return style.missing
    text = points(cell.delta, signed=True)
    result = cell.bootstrap
    if result is not None:
        text += f" [{points(result.low, signed=True)}, {points(result.high, signed=True)}] P={result.p_improvement:.2f}"
        if not result.significant:
            text += f" {NOT_SIGNIFICANT}"
    return text.replace("-", style.minus)


def _summary_lines(table: ReportTable, style: _Style) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, indices of rows that start a model size) with cells already escaped and styled."""
    header = ["Size", "Algorithm", "n"] + [style.escape(table.label(k)) for k in table.value_keys]
    rows: list[list[str]] = []
    starts: list[int] = []
    for group in table.groups:
        starts.append(len(rows))
        for row in group.rows:
            rows.append([style.escape(group.model_size), style.escape(row.algorithm), str(row.n)]
                        + [_cell_text(row.cells[k], row.n, style) for k in table.value_keys])
        seed_line = [points(group.seed_std[k]) or style.missing for k in table.value_keys]
        rows.append([style.escape(group.model_size), "seed std (pooled)", ""] + seed_line)
    return header, rows, starts


def _delta_lines(table: ReportTable, style: _Style) -> tuple[list[str], list[list[str]], list[int]]:
    header = ["Size", "Algorithm"] + [style.escape(table.label(k)) for k in table.value_keys]
    rows: list[list[str]] = []
    starts: list[int] = []
    for group in table.groups:
        if not group.deltas:
            continue
        starts.append(len(rows))
        for delta_row in group.deltas:
            rows.append([style.escape(group.model_size), style.escape(delta_row.algorithm)]
                        + [_delta_text(delta_row.cells[k], style) for k in table.value_keys])
    return header, rows, starts


def _caption(table: ReportTable) -> str:
    return (f"{table.metric} in points, mean ± std over seeds (n = seeds per row; a cell with fewer shows its own n); "
            f"best per column and model size in bold; — = missing")


def _delta_caption(table: ReportTable) -> str:
    level = f"{100 * table.confidence:g} %"
    return (f"Δ vs {table.baseline} in points: difference of seed means [{level} paired bootstrap interval over problems and "
            f"seeds] P = probability of improvement; {NOT_SIGNIFICANT} = the interval contains 0; "
            f"sample efficiency Δ has no interval")


# ---------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------
_MARKDOWN_SPECIAL = re.compile(r"([\\|*_`\[\]<>#])")


def escape_markdown(text: str) -> str:
    """``text`` with Markdown's inline specials (``\\ | * _ ` [ ] < > #``) backslash-escaped for a table cell."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


_MARKDOWN = _Style(escape=escape_markdown, bold=lambda s: f"**{s}**", pm=" ± ", missing=MISSING)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(table: ReportTable) -> str:
    """README-ready Markdown: the summary table, the Δ table and the notes."""
    header, rows, _ = _summary_lines(table, _MARKDOWN)
    parts = [_markdown_table(header, rows, 2), "", f"*{escape_markdown(_caption(table))}*"]
    delta_header, delta_rows, _ = _delta_lines(table, _MARKDOWN)
    if delta_rows:
        parts += ["", _markdown_table(delta_header, delta_rows, 2), "", f"*{escape_markdown(_delta_caption(table))}*"]
    if table.notes:
        parts += [""] + [f"- {escape_markdown(note)}" for note in table.notes]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------------
# LaTeX
# ---------------------------------------------------------------------------------------------------------
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def escape_latex(text: str) -> str:
    """``text`` safe in LaTeX text mode: ``\\ & % $ # _ { } ~ ^`` replaced in one pass (no double escaping)."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))


_LATEX = _Style(escape=escape_latex, bold=lambda s: rf"\textbf{{{s}}}", pm=r" $\pm$ ", missing="--", minus="$-$")


def _latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], starts: Sequence[int], numeric_from: int, caption: str) -> str:
    spec = "l" * numeric_from + "r" * (len(header) - numeric_from)
    lines = [f"% {caption}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for index, row in enumerate(rows):
        if index and index in starts:
            lines.append(r"\midrule")
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_latex(table: ReportTable) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``) of the summary, ready to ``\\input``."""
    header, rows, starts = _summary_lines(table, _LATEX)
    header = header[:2] + ["$n$"] + header[3:]
    return _latex_table(header, rows, starts, 2, _caption(table).replace("—", "--"))


def to_latex_deltas(table: ReportTable) -> str | None:
    """The Δ table as a booktabs ``tabular``; ``None`` when no model size has the baseline."""
    header, rows, starts = _delta_lines(table, _LATEX)
    if not rows:
        return None
    return _latex_table(header, rows, starts, 2, _delta_caption(table))


# ---------------------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------------------
def results_csv(runs: Sequence[RunRecord], efficiency: Mapping[str, float | None] | None = None) -> str:
    """Tidy CSV: one row per run × benchmark × eval metric (all logged metrics, not only the table's).

    With ``efficiency`` (``{MLflow run id: learning-curve mean}``), one more row per run: benchmark
    ``train``, metric :data:`EFFICIENCY_CSV_METRIC`. Values are as logged (fractions), full precision.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULTS_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        base = {"experiment_id": run.experiment_id, "mlflow_run_id": run.mlflow_run_id, "run_id": run.run_id,
                "model_size": run.model_size, "model": run.model, "algorithm": run.algorithm, "seed": run.seed, "state": run.state}
        for benchmark in sorted(run.eval_metrics):
            identity = run.eval_identity.get(benchmark, {})
            for metric in sorted(run.eval_metrics[benchmark]):
                writer.writerow(base | {"benchmark": benchmark, "metric": metric, "value": repr(run.eval_metrics[benchmark][metric])}
                                | {name: identity.get(name, "") for name in ("hash", "protocol", "k", "temperature", "top_p")})
        value = (efficiency or {}).get(run.mlflow_run_id)
        if value is not None:
            writer.writerow(base | {"benchmark": "train", "metric": EFFICIENCY_CSV_METRIC, "value": repr(value)})
    return buffer.getvalue()


def deltas_csv(table: ReportTable) -> str:
    """One row per model size × algorithm × column of the Δ table (empty fields where missing)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=DELTAS_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for group in table.groups:
        for delta_row in group.deltas:
            for key in table.value_keys:
                cell = delta_row.cells[key]
                result = cell.bootstrap
                writer.writerow({
                    "model_size": group.model_size, "algorithm": delta_row.algorithm, "baseline": table.baseline, "column": key,
                    "delta": "" if cell.delta is None else repr(cell.delta),
                    "ci_low": "" if result is None else repr(result.low), "ci_high": "" if result is None else repr(result.high),
                    "confidence": "" if result is None else repr(result.confidence),
                    "p_improvement": "" if result is None else repr(result.p_improvement),
                    "significant": "" if result is None else str(result.significant).lower(),
                    "n_problems": "" if result is None else str(result.n_problems),
                    "paired_seeds": "" if result is None else str(result.paired_seeds).lower(),
                })
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------
_HTML = _Style(escape=html.escape, bold=lambda s: f"<b>{s}</b>", pm=" ± ", missing=MISSING)
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{padding:.3em .7em;text-align:right;border-bottom:1px solid #ddd}th{border-bottom:2px solid #444}
td.l,th.l{text-align:left}tr.start td{border-top:2px solid #888}caption{caption-side:bottom;font-size:.85em;color:#555;text-align:left}
img{max-width:48%;margin:.5em}"""


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


def to_html(table: ReportTable, images: Mapping[str, bytes] | None = None, title: str = "lgrpo-bench report") -> str:
    """A self-contained page: the summary, the Δ table, the notes and PNG plots embedded as base64."""
    import base64

    header, rows, starts = _summary_lines(table, _HTML)
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", _html_table(header, rows, starts, 2, _caption(table))]
    delta_header, delta_rows, delta_starts = _delta_lines(table, _HTML)
    if delta_rows:
        parts.append(_html_table(delta_header, delta_rows, delta_starts, 2, _delta_caption(table)))
    if table.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in table.notes) + "</ul>")
    for name, png in (images or {}).items():
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------------
# rich (terminal)
# ---------------------------------------------------------------------------------------------------------
def rich_tables(table: ReportTable) -> list:
    """``rich.table.Table`` objects: the summary, and the Δ table when there is one."""
    from rich.markup import escape
    from rich.table import Table

    style = _Style(escape=escape, bold=lambda s: f"[bold]{s}[/bold]", pm=" ± ", missing=MISSING)
    header, rows, starts = _summary_lines(table, style)
    summary = Table(title=f"{table.metric} (points, mean ± std over seeds)", caption=_caption(table), caption_justify="left")
    for index, name in enumerate(header):
        summary.add_column(name, justify="left" if index < 2 else "right")
    for index, row in enumerate(rows):
        summary.add_row(*row, end_section=index + 1 in starts, style="dim" if row[1] == "seed std (pooled)" else None)
    tables = [summary]
    delta_header, delta_rows, delta_starts = _delta_lines(table, style)
    if delta_rows:
        deltas = Table(title=f"Δ vs {table.baseline}", caption=_delta_caption(table), caption_justify="left")
        for index, name in enumerate(delta_header):
            deltas.add_column(name, justify="left" if index < 2 else "right")
        for index, row in enumerate(delta_rows):
            deltas.add_row(*row, end_section=index + 1 in delta_starts)
        tables.append(deltas)
    return tables
