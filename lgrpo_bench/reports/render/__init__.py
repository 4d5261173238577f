r"""Renderers of a :class:`~lgrpo_bench.reports.table.ReportTable`, one module per format: Markdown (:mod:`.markdown`),
LaTeX (:mod:`.latex`), CSV (:mod:`.csv_files`), HTML (:mod:`.html_page`) and the terminal (:mod:`.terminal`: rich, and
the same rows as plain text for ``--plain``), on the cell texts, rows and captions of :mod:`.cells`.

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

from lgrpo_bench.reports.render.cells import MISSING, NAN, NOT_SIGNIFICANT
from lgrpo_bench.reports.render.csv_files import deltas_csv, results_csv
from lgrpo_bench.reports.render.html_page import to_html
from lgrpo_bench.reports.render.latex import LATEX_WIDTH_EM, escape_latex, latex_width_em, to_latex, to_latex_deltas
from lgrpo_bench.reports.render.markdown import escape_markdown, to_markdown
from lgrpo_bench.reports.render.terminal import plain_tables, rich_tables

__all__ = [
    "LATEX_WIDTH_EM",
    "MISSING",
    "NAN",
    "NOT_SIGNIFICANT",
    "deltas_csv",
    "escape_latex",
    "escape_markdown",
    "latex_width_em",
    "plain_tables",
    "results_csv",
    "rich_tables",
    "to_html",
    "to_latex",
    "to_latex_deltas",
    "to_markdown",
]
