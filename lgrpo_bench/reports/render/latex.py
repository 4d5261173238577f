"""LaTeX (``table.tex``, ``deltas.tex``): booktabs tabulars that fit an ``article``'s text width (package doc)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lgrpo_bench.reports.render.cells import (
    MDE_LABEL, SEED_STD_LABEL, SEEDS_LABEL, Style, delta_caption, delta_lines, label_columns, summary_caption, summary_lines,
)
from lgrpo_bench.reports.table import ReportTable

__all__ = ["LATEX_WIDTH_EM", "escape_latex", "latex_width_em", "to_latex", "to_latex_deltas"]


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


_LATEX = Style(escape=escape_latex, bold=lambda s: rf"\textbf{{{s}}}", pm=r" $\pm$ ", missing="--", minus="$-$",
                mark=lambda marks: rf"\textsuperscript{{{escape_latex(marks)}}}", stack=_latex_stack, literal=_latex_literal,
                p_values=False)
_BOLD_ON, _BOLD_OFF, _SUPER = "\x02", "\x03", "\x04"
_LATEX_PLAIN = Style(escape=str, bold=lambda s: f"{_BOLD_ON}{s}{_BOLD_OFF}", pm=" ± ", missing="--", minus="−",
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


def _spans(label: str) -> bool:
    """A row label of :data:`_SPANNING_LABELS`, or the seeds-needed label of any unit (``seeds for 1 / 2 tokens``)."""
    return label in _SPANNING_LABELS or label.startswith("seeds for ")


def _latex_blocks(plain_header: Sequence[str], plain_rows: Sequence[Sequence[str]], repeated: int) -> list[list[int]]:
    """The value columns (indices from ``repeated``) of each stacked tabular: as many per tabular as fit
    :data:`LATEX_WIDTH_EM` beside the ``repeated`` label columns, in order; at least one per tabular."""
    lines = [plain_header, *plain_rows]

    def width(column: int) -> float:
        return _LATEX_COLUMN_PAD_EM + max(latex_width_em(line[column]) for line in lines
                                          if not (_spans(line[1]) and 1 <= column < repeated))

    widths = [width(column) for column in range(len(plain_header))]
    spanned = max((latex_width_em(line[1]) + _LATEX_COLUMN_PAD_EM for line in lines if _spans(line[1])), default=0.0)
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
            if _spans(plain_rows[index][1]) and repeated > 2:
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
    header, rows, starts = summary_lines(table, _LATEX)
    plain_header, plain_rows, _ = summary_lines(table, _LATEX_PLAIN)
    n_at = label_columns(table)
    header = header[:n_at] + ["$n$"] + header[n_at + 1:]
    return _latex_table(header, rows, starts, n_at + 1, n_at, summary_caption(table).replace("—", "--"), (plain_header, plain_rows),
                        table.footnotes)


def to_latex_deltas(table: ReportTable) -> str | None:
    """The Δ table like :func:`to_latex` (each Δ over its interval and p-value; the ``vs`` column compact); ``None``
    when no model size has the baseline."""
    header, rows, starts = delta_lines(table, _LATEX, compact=True)
    if not rows:
        return None
    plain = delta_lines(table, _LATEX_PLAIN, compact=True)[:2]
    marks = {mark for group in table.groups for delta_row in group.deltas for mark in delta_row.marks}
    footnotes = [(mark, text) for mark, text in table.footnotes if mark in marks]
    labels = label_columns(table) + bool(table.row_keys.shown)
    caption = (delta_caption(table).replace("—", "--") + "; in LaTeX each Δ stands over its interval, without its p-value (in deltas.csv)"
               + ("; vs: the baseline's values of the keys it was not matched on (same: all matched; none: no baseline row)"
                  if table.row_keys.shown else ""))
    return _latex_table(header, rows, starts, labels, labels, caption, plain, footnotes)
