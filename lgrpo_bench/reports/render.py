"""Renderers of a :class:`~lgrpo_bench.reports.table.ReportTable`: Markdown, LaTeX, CSV, HTML and rich.

Numbers are shown in points (percent of the metric, one decimal). Missing data is ``—`` (``--`` in
LaTeX), never 0; a single seed shows its std as missing. Row keys (the config keys that tell rows apart) get
one column each, named by the key. A Δ reads ``+3.1 [-0.4, +6.6] p=0.071 n.s.``: the t interval over seeds,
its p-value, and ``n.s.`` (not significant) when the interval contains 0; ``+3.1 (1 seed)`` when no interval
can be estimated. Under each model size the Δ table has two power rows: the minimum detectable effect and the
seeds needed for 1 / 2 points (:mod:`.power`).
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lgrpo_bench.reports.loader import RunRecord
from lgrpo_bench.reports.power import MAX_SEEDS, TARGET_EFFECTS
from lgrpo_bench.reports.stats import PAIRED_T
from lgrpo_bench.reports.table import SMALL_BENCHMARK, Cell, DeltaCell, ReportTable

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
"""Fixed columns of ``results.csv``; one column per row key (and ``--average-over`` key) follows ``algorithm``."""
DELTAS_CSV_FIELDS: tuple[str, ...] = (
    "model_size", "algorithm", "baseline", "matched_keys", "baseline_keys", "column", "delta", "ci_low", "ci_high",
    "confidence", "p_value", "significant", "method", "df", "n_seeds", "n_seeds_baseline", "no_interval",
)
"""Fixed columns of ``deltas.csv``; one column per row key follows ``algorithm``. ``matched_keys``: the keys the
baseline row agrees on (``;``-separated); ``baseline_keys``: the baseline's values of the algorithm options it
was not matched on; ``method``: ``paired t`` or ``Welch t``; ``no_interval``: why there is none."""
MDE_LABEL = "MDE (80 % power)"
SEEDS_LABEL = "seeds for " + " / ".join(f"{100 * e:g}" for e in TARGET_EFFECTS) + " pts"
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


def _p_text(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def _delta_text(cell: DeltaCell, style: _Style) -> str:
    if cell.delta is None:
        return style.missing
    text = points(cell.delta, signed=True)
    result = cell.interval
    if result is not None:
        if result.low is None:
            text += " (1 seed)"
        else:
            text += f" [{points(result.low, signed=True)}, {points(result.high, signed=True)}] {_p_text(result.p_value)}"
            if not result.significant:
                text += f" {NOT_SIGNIFICANT}"
    return text.replace("-", style.minus)


def _key_cells(values: Sequence[str | None], table: ReportTable, style: _Style) -> list[str]:
    by_key = dict(zip(table.row_keys.keys, values))
    return [style.missing if by_key.get(key) is None else style.escape(by_key[key]) for key in table.row_keys.shown]


SEED_STD_LABEL = "seed std (pooled)"


def _label_columns(table: ReportTable) -> int:
    """Left-aligned columns before the numbers: Size, Algorithm and the shown row keys."""
    return 2 + len(table.row_keys.shown)


def _summary_lines(table: ReportTable, style: _Style) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, indices of rows that start a model size) with cells already escaped and styled."""
    header = (["Size", "Algorithm"] + [style.escape(label) for label in table.key_labels] + ["n"]
              + [style.escape(table.label(k)) for k in table.value_keys])
    blank_keys = [""] * len(table.row_keys.shown)
    rows: list[list[str]] = []
    starts: list[int] = []
    for group in table.groups:
        starts.append(len(rows))
        for row in group.rows:
            rows.append([style.escape(group.model_size), style.escape(row.algorithm)] + _key_cells(row.key_values, table, style)
                        + [str(row.n)] + [_cell_text(row.cells[k], row.n, style) for k in table.value_keys])
        seed_line = [points(group.seed_std[k]) or style.missing for k in table.value_keys]
        rows.append([style.escape(group.model_size), SEED_STD_LABEL] + blank_keys + [""] + seed_line)
    return header, rows, starts


def _power_cells(table: ReportTable, group, style: _Style) -> tuple[list[str], list[str]]:
    """The MDE row and the seeds-needed row of a model size (``—`` where no std could be pooled)."""
    mde, seeds = [], []
    for key in table.value_keys:
        summary = group.power.get(key)
        if summary is None:
            mde.append(style.missing)
            seeds.append(style.missing)
            continue
        mde.append(f"{points(summary.mde)} (n={summary.n})" if summary.mde is not None else style.missing)
        seeds.append(" / ".join(f">{MAX_SEEDS}" if summary.seeds_for[e] is None else str(summary.seeds_for[e]) for e in TARGET_EFFECTS))
    return mde, seeds


def _delta_lines(table: ReportTable, style: _Style) -> tuple[list[str], list[list[str]], list[int]]:
    with_keys = bool(table.row_keys.shown)
    header = (["Size", "Algorithm"] + [style.escape(label) for label in table.key_labels] + (["vs"] if with_keys else [])
              + [style.escape(table.label(k)) for k in table.value_keys])
    blank = [""] * (len(table.row_keys.shown) + with_keys)
    rows: list[list[str]] = []
    starts: list[int] = []
    for group in table.groups:
        if not group.deltas:
            continue
        starts.append(len(rows))
        for delta_row in group.deltas:
            versus: list[str] = []
            if with_keys:
                match = delta_row.match
                if match is not None and match.index is None:
                    versus = [style.escape(match.reason or f"no {table.baseline} row")]
                else:
                    versus = [style.escape(table.baseline + (f" at {delta_row.baseline_keys_text}" if delta_row.baseline_keys_text else ""))]
            rows.append([style.escape(group.model_size), style.escape(delta_row.algorithm)]
                        + _key_cells(delta_row.key_values, table, style) + versus
                        + [_delta_text(delta_row.cells[k], style) for k in table.value_keys])
        if table.statistics:
            mde, seeds = _power_cells(table, group, style)
            rows.append([style.escape(group.model_size), style.escape(MDE_LABEL)] + blank + mde)
            rows.append([style.escape(group.model_size), style.escape(SEEDS_LABEL)] + blank + seeds)
    return header, rows, starts


def _small_benchmarks(table: ReportTable) -> str:
    small = [c for c in table.columns if c.n_problems and c.n_problems < SMALL_BENCHMARK]
    return "; ".join(f"{c.label}: {c.n_problems} problems, ± 1 problem = {100 / c.n_problems:.1f} points" for c in small)


def _caption(table: ReportTable) -> str:
    keys = table.row_keys
    averaged = ""
    if keys.averaged:
        averaged = (f"; rows also average over {', '.join(keys.labels[k] for k in keys.averaged)} (--average-over: "
                    f"treated as replicates on purpose, n counts them)")
    by_keys = f"; one row per {', '.join(table.key_labels)}" if table.key_labels else ""
    small = _small_benchmarks(table)
    return (f"{table.metric} in points, mean ± std over seeds (n = seeds per row; a cell with fewer shows its own n){by_keys}"
            f"{averaged}; best per column and model size in bold; — = missing" + (f"; {small}" if small else ""))


def _delta_caption(table: ReportTable) -> str:
    level = f"{100 * table.confidence:g} %"
    matched = ", ".join(["model size", *table.matched_labels])
    text = f"Δ vs {table.baseline} in points: difference of seed means, each row against the {table.baseline} row with the same {matched}"
    if table.row_keys.shown:
        text += " (vs: the baseline row; algorithm options the baseline never varies are compared as they are)"
    if not table.statistics:
        return text + "; no intervals (--no-stats)"
    paired = any(d.cells[k].interval is not None and d.cells[k].interval.method == PAIRED_T
                 for g in table.groups for d in g.deltas for k in table.value_keys)
    small = _small_benchmarks(table)
    return (text + f" [{level} t interval over seeds: " + ("paired by seed, df = seeds − 1" if paired else "Welch, unpaired")
            + "; Welch when the seed sets differ] p = two-sided p-value; "
            f"{NOT_SIGNIFICANT} = the interval contains 0; (1 seed) = no interval: seed-to-seed variation cannot be "
            "estimated from one run and an interval over problems alone would be too narrow. "
            f"{MDE_LABEL}: the smallest true Δ a two-sided 5 % test detects 80 % of the time with n seeds, from the "
            "pooled std of the paired per-seed differences (or the pooled seed std when unpaired); "
            f"{SEEDS_LABEL}: seeds needed to detect a 1- or 2-point gain" + (f". {small}" if small else ""))


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
    parts = [_markdown_table(header, rows, _label_columns(table)), "", f"*{escape_markdown(_caption(table))}*"]
    delta_header, delta_rows, _ = _delta_lines(table, _MARKDOWN)
    if delta_rows:
        numeric_from = _label_columns(table) + bool(table.row_keys.shown)
        parts += ["", _markdown_table(delta_header, delta_rows, numeric_from), "", f"*{escape_markdown(_delta_caption(table))}*"]
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
    n_at = _label_columns(table)
    header = header[:n_at] + ["$n$"] + header[n_at + 1:]
    return _latex_table(header, rows, starts, n_at, _caption(table).replace("—", "--"))


def to_latex_deltas(table: ReportTable) -> str | None:
    """The Δ table as a booktabs ``tabular``; ``None`` when no model size has the baseline."""
    header, rows, starts = _delta_lines(table, _LATEX)
    if not rows:
        return None
    return _latex_table(header, rows, starts, _label_columns(table) + bool(table.row_keys.shown), _delta_caption(table).replace("—", "--"))


# ---------------------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------------------
def _csv_key_columns(table: ReportTable, averaged: bool) -> list[tuple[str, str]]:
    """(column name, dotted key) of every row key (and ``--average-over`` key when ``averaged``)."""
    keys = [*table.row_keys.keys, *(table.row_keys.averaged if averaged else ())]
    return [(table.row_keys.labels[key], key) for key in keys]


def _with_keys(fields: Sequence[str], key_columns: Sequence[tuple[str, str]]) -> list[str]:
    at = list(fields).index("algorithm") + 1
    return [*fields[:at], *(name for name, _ in key_columns), *fields[at:]]


def results_csv(table: ReportTable, runs: Sequence[RunRecord], efficiency: Mapping[str, float | None] | None = None) -> str:
    """Tidy CSV: one row per run × benchmark × eval metric (all logged metrics, not only the table's).

    One column per row key of ``table`` and per ``--average-over`` key, after ``algorithm``, holding the
    run's logged value. With ``efficiency`` (``{MLflow run id: learning-curve mean}``), one more row per run:
    benchmark ``train``, metric :data:`EFFICIENCY_CSV_METRIC`. Values are as logged (fractions), full precision.
    """
    key_columns = _csv_key_columns(table, averaged=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_with_keys(RESULTS_CSV_FIELDS, key_columns), lineterminator="\n")
    writer.writeheader()
    for run in runs:
        base = {"experiment_id": run.experiment_id, "mlflow_run_id": run.mlflow_run_id, "run_id": run.run_id,
                "model_size": run.model_size, "model": run.model, "algorithm": run.algorithm, "seed": run.seed, "state": run.state}
        base |= {name: run.params.get(key, "") for name, key in key_columns}
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
    """One row per model size × compared row × column of the Δ table (empty fields where missing), with one
    column per row key."""
    key_columns = _csv_key_columns(table, averaged=False)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_with_keys(DELTAS_CSV_FIELDS, key_columns), lineterminator="\n")
    writer.writeheader()
    labels = table.row_keys.labels
    for group in table.groups:
        for delta_row in group.deltas:
            match = delta_row.match
            keys = {name: "" if value is None else value for (name, _), value in zip(key_columns, delta_row.key_values)}
            for key in table.value_keys:
                cell = delta_row.cells[key]
                result = cell.interval
                has_interval = result is not None and result.low is not None
                no_interval = ""
                if match is not None and match.index is None:
                    no_interval = match.reason or ""
                elif result is not None and result.reason:
                    no_interval = result.reason
                writer.writerow(keys | {
                    "model_size": group.model_size, "algorithm": delta_row.algorithm, "baseline": table.baseline,
                    "matched_keys": ";".join(labels[k] for k in match.matched) if match is not None else "",
                    "baseline_keys": delta_row.baseline_keys_text, "column": key,
                    "delta": "" if cell.delta is None else repr(cell.delta),
                    "ci_low": repr(result.low) if has_interval else "", "ci_high": repr(result.high) if has_interval else "",
                    "confidence": repr(result.confidence) if has_interval else "",
                    "p_value": repr(result.p_value) if has_interval else "",
                    "significant": str(result.significant).lower() if has_interval else "",
                    "method": result.method if has_interval else "",
                    "df": repr(result.df) if has_interval and result.df is not None else "",
                    "n_seeds": str(result.n_candidate) if result is not None else "",
                    "n_seeds_baseline": str(result.n_baseline) if result is not None else "",
                    "no_interval": no_interval,
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
             f"<h1>{html.escape(title)}</h1>", _html_table(header, rows, starts, _label_columns(table), _caption(table))]
    delta_header, delta_rows, delta_starts = _delta_lines(table, _HTML)
    if delta_rows:
        numeric_from = _label_columns(table) + bool(table.row_keys.shown)
        parts.append(_html_table(delta_header, delta_rows, delta_starts, numeric_from, _delta_caption(table)))
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
        summary.add_column(name, justify="left" if index < _label_columns(table) else "right")
    for index, row in enumerate(rows):
        summary.add_row(*row, end_section=index + 1 in starts, style="dim" if row[1] == SEED_STD_LABEL else None)
    tables = [summary]
    delta_header, delta_rows, delta_starts = _delta_lines(table, style)
    if delta_rows:
        deltas = Table(title=f"Δ vs {table.baseline}", caption=_delta_caption(table), caption_justify="left")
        numeric_from = _label_columns(table) + bool(table.row_keys.shown)
        for index, name in enumerate(delta_header):
            deltas.add_column(name, justify="left" if index < numeric_from else "right")
        power_rows = {escape(MDE_LABEL), escape(SEEDS_LABEL)}
        for index, row in enumerate(delta_rows):
            last_of_group = index + 1 in delta_starts or index + 1 == len(delta_rows)
            before_power = index + 1 < len(delta_rows) and delta_rows[index + 1][1] == escape(MDE_LABEL)
            deltas.add_row(*row, end_section=(last_of_group or before_power) and index + 1 != len(delta_rows),
                           style="dim" if row[1] in power_rows else None)
        tables.append(deltas)
    return tables
