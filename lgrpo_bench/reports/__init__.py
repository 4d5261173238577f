"""Reports for papers: tables, statistics and plots, read from the MLflow store only.

* :mod:`.stats` — pure statistics (mean ± std over seeds, pooled seed std, learning-curve mean, paired
  bootstrap over problems and seeds, probability of improvement).
* :mod:`.loader` — bulk reads of the store (runs, metric histories, per-problem records).
* :mod:`.table` — the paper table as data (grouping, best cells, Δ vs baseline, comparability checks).
* :mod:`.render` — Markdown, LaTeX, CSV, HTML and rich renderers.
* :mod:`.plots` / :mod:`.preference` — training curves, implied token preference, accuracy vs compute.
* :mod:`.report` — :func:`generate_report` (all of it, to files) and :func:`print_summary_table` (terminal).
"""

from lgrpo_bench.reports.loader import ReportData, ReportInputError, RunRecord, load_histories, load_problem_records, load_runs
from lgrpo_bench.reports.report import FORMATS, ReportResult, generate_report, load_report_table, print_summary_table
from lgrpo_bench.reports.table import IncomparableRuns, ReportTable, build_table

__all__ = [
    "FORMATS",
    "IncomparableRuns",
    "ReportData",
    "ReportInputError",
    "ReportResult",
    "ReportTable",
    "RunRecord",
    "build_table",
    "generate_report",
    "load_histories",
    "load_problem_records",
    "load_report_table",
    "load_runs",
    "print_summary_table",
]
