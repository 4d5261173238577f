r"""Renderers of a :class:`~lgrpo_bench.reports.table.ReportTable`: Markdown, LaTeX, CSV, HTML and rich.

Numbers are shown in points (percent of the metric, one decimal). Missing data is ``—`` (``--`` in
LaTeX), never 0; a single seed shows its std as missing; a NaN value shows as ``NaN`` (never as missing). Row keys (the config keys that tell rows apart) get
one column each, named by the key. A Δ reads ``+3.1 [-0.4, +6.6] p=0.071 n.s.``: the t interval over seeds,
its p-value, and ``n.s.`` (not significant) when the interval contains 0; ``+3.1 (1 seed)`` when no interval
can be estimated. Under each model size the Δ table has two power rows: the minimum detectable effect and the
seeds needed for 1 / 2 points (:mod:`.power`). Row marks (``†`` out-of-band warm start, ``‡`` λ at its rate limit)
follow the algorithm's name; their footnotes, and the hardware line, stand right under the summary table.

LaTeX (``table.tex``, ``deltas.tex``) fits an ``article``'s text width at 10, 11 and 12 pt: the tables are set in
``\small`` with 4 pt column padding, a Δ cell stacks its interval under the value (its p-value is left out: the
interval says whether it excludes 0, and ``deltas.csv`` has it), and when the
estimated width (:func:`latex_width_em`, from Computer Modern's character widths) of the columns exceeds
:data:`LATEX_WIDTH_EM` the value columns are split over several tabulars stacked vertically, each repeating the
label columns; the stacked tabulars are paragraphs, so outside a float a tall table breaks between them
(``tests/test_reports_latex.py`` compiles them with pdflatex and finds no overfull box).
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lgrpo_bench.reports.loader import RunRecord
from lgrpo_bench.reports.power import MAX_SEEDS, TARGET_EFFECTS
from lgrpo_bench.reports.stats import PAIRED_T
from lgrpo_bench.reports.table import SMALL_BENCHMARK, Cell, DeltaCell, ReportTable

__all__ = [
    "LATEX_WIDTH_EM",
    "MISSING",
    "NAN",
    "NOT_SIGNIFICANT",
    "deltas_csv",
    "escape_latex",
    "escape_markdown",
    "latex_width_em",
    "results_csv",
    "rich_tables",
    "to_html",
    "to_latex",
    "to_latex_deltas",
    "to_markdown",
]

MISSING = "—"
NAN = "NaN"
NOT_SIGNIFICANT = "n.s."
RESULTS_CSV_FIELDS: tuple[str, ...] = (
    "experiment_id", "mlflow_run_id", "run_id", "model_size", "model", "algorithm", "seed", "state",
    "benchmark", "metric", "value", "hash", "protocol", "k", "temperature", "top_p", "hardware",
)
"""Fixed columns of ``results.csv``; one column per row key (and ``--average-over`` key) follows ``algorithm``, and
one per ``lgrpo.host.*`` tag any run carries (``host.cpu``, ``host.torch_threads``, ...) follows ``hardware``."""
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
    mark: Callable[[str], str] = lambda marks: marks
    """How row marks (``†‡``) follow a name."""
    stack: Callable[[Sequence[str]], str] = " ".join
    """How the parts of a Δ cell (value, interval, p-value) are joined: one line, or stacked (LaTeX)."""
    literal: Callable[[str], str] = lambda text: text
    """Applied to generated number texts (``p<0.001``, ``>10000``): ``<`` and ``>`` are not text in LaTeX or HTML."""
    p_values: bool = True
    """Δ cells give the p-value (LaTeX leaves it out to keep a cell two lines high: the interval says the same)."""


def _cell_text(cell: Cell, row_n: int, style: _Style) -> str:
    stats = cell.stats
    if cell.nan:
        return NAN
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
    if math.isnan(cell.delta):
        return NAN
    parts = [points(cell.delta, signed=True)]
    result = cell.interval
    if result is not None:
        if result.low is None:
            parts[0] += " (1 seed)"
        elif style.p_values:
            parts.append(f"[{points(result.low, signed=True)}, {points(result.high, signed=True)}]")
            parts.append(_p_text(result.p_value) + ("" if result.significant else f" {NOT_SIGNIFICANT}"))
        else:
            parts[0] += "" if result.significant else f" {NOT_SIGNIFICANT}"
            parts.append(f"[{points(result.low, signed=True)}, {points(result.high, signed=True)}]")
    return style.stack([style.literal(part.replace("-", style.minus)) for part in parts])


def _name(name: str, marks: Sequence[str], style: _Style) -> str:
    """An algorithm's name with its row marks."""
    return style.escape(name) + (style.mark("".join(marks)) if marks else "")


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
            rows.append([style.escape(group.model_size), _name(row.algorithm, row.marks, style)] + _key_cells(row.key_values, table, style)
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
        seeds.append(style.literal(" / ".join(f">{MAX_SEEDS}" if summary.seeds_for[e] is None else str(summary.seeds_for[e])
                                              for e in TARGET_EFFECTS)))
    return mde, seeds


def _delta_lines(table: ReportTable, style: _Style, compact: bool = False) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, indices of rows that start a model size) of the Δ table. ``compact`` (LaTeX): the ``vs`` column
    gives only the baseline's values of the unmatched keys (``lam_init=0.0``), ``same`` or ``none``, under ``vs <baseline>``."""
    with_keys = bool(table.row_keys.shown)
    versus_header = [f"vs {style.escape(table.baseline)}" if compact else "vs"] if with_keys else []
    header = (["Size", "Algorithm"] + [style.escape(label) for label in table.key_labels] + versus_header
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
                if compact:
                    unmatched = match is not None and match.index is None
                    versus = [style.escape("none" if unmatched else delta_row.baseline_keys_text or "same")]
                elif match is not None and match.index is None:
                    versus = [style.escape(match.reason or f"no {table.baseline} row")]
                else:
                    versus = [style.escape(table.baseline + (f" at {delta_row.baseline_keys_text}" if delta_row.baseline_keys_text else ""))]
            rows.append([style.escape(group.model_size), _name(delta_row.algorithm, delta_row.marks, style)]
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
    for mark, text in table.footnotes:
        parts += ["", escape_markdown(f"{mark} {text}" if mark else text)]
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
    "—": "---", "–": "--", "−": r"$-$", "±": r"$\pm$", "×": r"$\times$", "λ": r"$\lambda$", "Δ": r"$\Delta$",
    "≤": r"$\leq$", "≥": r"$\geq$", "†": r"\textdagger{}", "‡": r"\textdaggerdbl{}", "<": r"\textless{}", ">": r"\textgreater{}",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def escape_latex(text: str) -> str:
    """``text`` safe in LaTeX text mode (pdflatex, no extra package): ``\\ & % $ # _ { } ~ ^ < >`` escaped and the
    few non-ASCII symbols the reports use (``— – − ± × λ Δ ≤ ≥ † ‡``) spelled as LaTeX, in one pass (no double
    escaping)."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))


def _latex_stack(parts: Sequence[str]) -> str:
    """A Δ cell's value (and ``n.s.``) over its interval (``\\scriptsize``), as a top-aligned inner tabular."""
    if len(parts) == 1:
        return parts[0]
    return r"\begin{tabular}[t]{@{}r@{}}" + parts[0] + "".join(rf"\\{{\scriptsize {part}}}" for part in parts[1:]) + r"\end{tabular}"


def _latex_literal(text: str) -> str:
    return text.replace("<", r"\textless{}").replace(">", r"\textgreater{}")


_LATEX = _Style(escape=escape_latex, bold=lambda s: rf"\textbf{{{s}}}", pm=r" $\pm$ ", missing="--", minus="$-$",
                mark=lambda marks: rf"\textsuperscript{{{escape_latex(marks)}}}", stack=_latex_stack, literal=_latex_literal,
                p_values=False)
_BOLD_ON, _BOLD_OFF, _SUPER = "\x02", "\x03", "\x04"
_LATEX_PLAIN = _Style(escape=str, bold=lambda s: f"{_BOLD_ON}{s}{_BOLD_OFF}", pm=" ± ", missing="--", minus="−",
                      mark=lambda marks: _SUPER + marks, stack="\n".join, p_values=False)
"""The LaTeX cells as the reader sees them (for :func:`latex_width_em`): bold and superscripts marked, Δ parts on lines."""

LATEX_WIDTH_EM = 35.5
"""Widest table (in em of its ``\\small`` font) that fits an ``article``'s ``\\textwidth``: 345 pt / 9 pt = 38.3 em
at 10 pt, 360 / 10 = 36.0 at 11 pt, 390 / 10.95 = 35.6 at 12 pt."""
_LATEX_COLUMN_PAD_EM = 2 * 0.45
"""Two ``\\tabcolsep`` of 4 pt per column, in em of the table's font (4 / 9 = 0.44 at 10 pt; less at 11 and 12 pt)."""
_SCRIPT_SCALE = 0.8
"""``\\scriptsize`` (7 pt at 10 pt, 8 pt at 11 and 12 pt) relative to ``\\small`` (9, 10, 10.95 pt), rounded up."""
_CM_EM = {
    **dict.fromkeys("0123456789", 0.5), " ": 0.333, ".": 0.278, ",": 0.278, ":": 0.278, ";": 0.278, "!": 0.278,
    "'": 0.278, "(": 0.389, ")": 0.389, "[": 0.278, "]": 0.278, "+": 0.778, "=": 0.778, "<": 0.778, ">": 0.778,
    "−": 0.778, "±": 0.778, "×": 0.778, "-": 0.333, "/": 0.5, "%": 0.833, "_": 0.5, "#": 0.833, "&": 0.778,
    "*": 0.5, "?": 0.472, "—": 1.0, "–": 0.5, "λ": 0.583, "Δ": 0.833, "†": 0.444, "‡": 0.444, "@": 0.778,
    "a": 0.5, "b": 0.556, "c": 0.444, "d": 0.556, "e": 0.444, "f": 0.306, "g": 0.5, "h": 0.556, "i": 0.278,
    "j": 0.306, "k": 0.528, "l": 0.278, "m": 0.833, "n": 0.556, "o": 0.5, "p": 0.556, "q": 0.528, "r": 0.392,
    "s": 0.394, "t": 0.389, "u": 0.556, "v": 0.528, "w": 0.722, "x": 0.528, "y": 0.528, "z": 0.444,
}
"""Advance widths of Computer Modern Roman 10 pt (``cmr10``, ``cmsy10`` for the math signs), in em."""
_CM_UPPER_EM, _CM_OTHER_EM, _CM_BOLD_SCALE = 0.75, 0.6, 1.15


def latex_width_em(text: str) -> float:
    """Estimated width of a plain cell in em of the table font: the sum of its characters' Computer Modern widths
    (capitals 0.75 em, unknown characters 0.6 em, bold × 1.15, superscripts × 0.7); a cell of several lines
    (a stacked Δ) is as wide as its widest line, lines after the first in ``\\scriptsize``."""
    widest = 0.0
    for index, line in enumerate(text.split("\n")):
        total, scale = 0.0, 1.0
        for char in line:
            if char == _BOLD_ON:
                scale = _CM_BOLD_SCALE
            elif char == _BOLD_OFF:
                scale = 1.0
            elif char == _SUPER:
                scale = 0.7
            else:
                total += scale * _CM_EM.get(char, _CM_UPPER_EM if char.isupper() else _CM_OTHER_EM)
        widest = max(widest, total * (1.0 if index == 0 else _SCRIPT_SCALE))
    return widest


_SPANNING_LABELS = frozenset({SEED_STD_LABEL, MDE_LABEL, SEEDS_LABEL})
r"""Row labels that span the Algorithm column and the columns up to the values in LaTeX (``\multicolumn``)."""


def _latex_blocks(plain_header: Sequence[str], plain_rows: Sequence[Sequence[str]], repeated: int) -> list[list[int]]:
    """The value columns (indices from ``repeated``) of each stacked tabular: as many per tabular as fit
    :data:`LATEX_WIDTH_EM` beside the ``repeated`` label columns, in order; at least one per tabular."""
    lines = [plain_header, *plain_rows]

    def width(column: int) -> float:
        return _LATEX_COLUMN_PAD_EM + max(latex_width_em(line[column]) for line in lines
                                          if not (line[1] in _SPANNING_LABELS and 1 <= column < repeated))

    widths = [width(column) for column in range(len(plain_header))]
    spanned = max((latex_width_em(line[1]) + _LATEX_COLUMN_PAD_EM for line in lines if line[1] in _SPANNING_LABELS), default=0.0)
    labels = sum(widths[:repeated]) + max(0.0, spanned - sum(widths[1:repeated]))
    blocks: list[list[int]] = [[]]
    used = labels
    for column in range(repeated, len(plain_header)):
        if blocks[-1] and used + widths[column] > LATEX_WIDTH_EM:
            blocks.append([])
            used = labels
        blocks[-1].append(column)
        used += widths[column]
    return blocks


def _latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], starts: Sequence[int], repeated: int, numeric_from: int,
                 caption: str, plain: tuple[Sequence[str], Sequence[Sequence[str]]], footnotes: Sequence[tuple[str, str]]) -> str:
    """Booktabs tabulars of ``rows``: the first ``repeated`` columns in each, the others split by :func:`_latex_blocks`;
    columns from ``numeric_from`` right-aligned; the seed std and power rows' labels span the label columns."""
    plain_header, plain_rows = plain
    lines = [f"% {caption}", r"% needs \usepackage{booktabs}; fits an article's text width (value columns split over stacked tabulars;"
             r" outside a float they break across pages)",
             r"\begingroup\small\setlength{\tabcolsep}{4pt}"]
    for number, block in enumerate(_latex_blocks(plain_header, plain_rows, repeated)):
        columns = [*range(repeated), *block]
        if number:
            lines.append(r"\par\medskip")
        spec = "".join("l" if c < numeric_from else "r" for c in columns)
        lines += [f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header[c] for c in columns) + r" \\", r"\midrule"]
        for index, row in enumerate(rows):
            if index and index in starts:
                lines.append(r"\midrule")
            if plain_rows[index][1] in _SPANNING_LABELS and repeated > 2:
                cells = [row[0], f"\\multicolumn{{{repeated - 1}}}{{l}}{{{row[1]}}}", *(row[c] for c in block)]
            else:
                cells = [row[c] for c in columns]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
    if footnotes:
        lines.append(r"\par\smallskip{\footnotesize\raggedright")
        lines += [(rf"\textsuperscript{{{escape_latex(mark)}}}" if mark else "") + escape_latex(text) + r"\par" for mark, text in footnotes]
        lines.append("}")
    lines.append(r"\par\endgroup")
    return "\n".join(lines) + "\n"


def to_latex(table: ReportTable) -> str:
    """The summary as booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), ready to ``\\input``: set in ``\\small``,
    split into stacked tabulars (each repeating Size, Algorithm, the keys and n) when wider than an ``article``'s
    text, footnotes (row marks, hardware) under it."""
    header, rows, starts = _summary_lines(table, _LATEX)
    plain_header, plain_rows, _ = _summary_lines(table, _LATEX_PLAIN)
    n_at = _label_columns(table)
    header = header[:n_at] + ["$n$"] + header[n_at + 1:]
    return _latex_table(header, rows, starts, n_at + 1, n_at, _caption(table).replace("—", "--"), (plain_header, plain_rows),
                        table.footnotes)


def to_latex_deltas(table: ReportTable) -> str | None:
    """The Δ table like :func:`to_latex` (each Δ over its interval and p-value; the ``vs`` column compact); ``None``
    when no model size has the baseline."""
    header, rows, starts = _delta_lines(table, _LATEX, compact=True)
    if not rows:
        return None
    plain = _delta_lines(table, _LATEX_PLAIN, compact=True)[:2]
    marks = {mark for group in table.groups for delta_row in group.deltas for mark in delta_row.marks}
    footnotes = [(mark, text) for mark, text in table.footnotes if mark in marks]
    labels = _label_columns(table) + bool(table.row_keys.shown)
    caption = (_delta_caption(table).replace("—", "--") + "; in LaTeX each Δ stands over its interval, without its p-value (in deltas.csv)"
               + ("; vs: the baseline's values of the keys it was not matched on (same: all matched; none: no baseline row)"
                  if table.row_keys.shown else ""))
    return _latex_table(header, rows, starts, labels, labels, caption, plain, footnotes)


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
    run's logged value; ``hardware`` and one ``host.<name>`` column per ``lgrpo.host.*`` tag hold the run's provenance
    tags (empty when it has none). With ``efficiency`` (``{MLflow run id: learning-curve mean}``), one more row per run:
    benchmark ``train``, metric :data:`EFFICIENCY_CSV_METRIC`. Values are as logged (fractions), full precision.
    """
    key_columns = _csv_key_columns(table, averaged=True)
    host_names = sorted({name for run in runs for name in run.host})
    fields = _with_keys(RESULTS_CSV_FIELDS, key_columns)
    at = fields.index("hardware") + 1
    fields[at:at] = [f"host.{name}" for name in host_names]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        base = {"experiment_id": run.experiment_id, "mlflow_run_id": run.mlflow_run_id, "run_id": run.run_id,
                "model_size": run.model_size, "model": run.model, "algorithm": run.algorithm, "seed": run.seed, "state": run.state,
                "hardware": run.hardware or ""}
        base |= {f"host.{name}": run.host.get(name, "") for name in host_names}
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
_HTML = _Style(escape=html.escape, bold=lambda s: f"<b>{s}</b>", pm=" ± ", missing=MISSING, mark=lambda marks: f"<sup>{marks}</sup>",
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
            subtitle: str = "", captions: Mapping[str, str] | None = None) -> str:
    """A self-contained page: ``title`` (the grid or experiments reported) and ``subtitle`` (the exact selection), the
    summary with its footnotes, the Δ table, the notes, and each PNG plot embedded as base64 in a ``<figure>`` at
    its own width with its caption (``captions[name]``)."""
    import base64

    header, rows, starts = _summary_lines(table, _HTML)
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f'<p class="selection">{html.escape(subtitle)}</p>')
    parts.append(_html_table(header, rows, starts, _label_columns(table), _caption(table)))
    parts += [f'<p class="foot">{html.escape(f"{mark} {text}" if mark else text)}</p>' for mark, text in table.footnotes]
    delta_header, delta_rows, delta_starts = _delta_lines(table, _HTML)
    if delta_rows:
        numeric_from = _label_columns(table) + bool(table.row_keys.shown)
        parts.append(_html_table(delta_header, delta_rows, delta_starts, numeric_from, _delta_caption(table)))
    if table.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in table.notes) + "</ul>")
    for name, png in (images or {}).items():
        encoded = base64.b64encode(png).decode("ascii")
        caption = (captions or {}).get(name, "")
        parts.append(f'<figure id="{html.escape(name)}"><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">'
                     + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "") + "</figure>")
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
    caption = "\n".join([_caption(table), *(f"{mark} {text}" if mark else text for mark, text in table.footnotes)])
    summary = Table(title=f"{table.metric} (points, mean ± std over seeds)", caption=escape(caption), caption_justify="left")
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
