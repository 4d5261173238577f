"""Reports for papers: tables, statistics and plots, read from the MLflow store only.

* :mod:`.stats` — pure statistics (mean ± std over seeds, pooled seed std, learning-curve mean, the Δ t
  interval over seeds, paired by seed).
* :mod:`.power` — minimum detectable effect (from the std's upper confidence limit) and seeds needed (noncentral t);
  pure maths, scipy imported inside the functions that compute.
* :mod:`.power_lines` — ``plan``'s power lines: the earlier runs of a grid's model and task, their table, its power.
* :mod:`.keys` — the row keys (config keys that vary, never seeds) and baseline matching.
* :mod:`.loader` — bulk reads of the store (runs, metric histories, per-problem records); SQLite stores without MLflow.
* :mod:`.grids` — a grid file's name, store, key order and current run ids (``report --grid``, ``run``, ``status``).
* :mod:`.table` — the paper table as data (rows per configuration, best cells, Δ vs baseline, power,
  comparability checks).
* :mod:`.render` — Markdown, LaTeX, CSV, HTML and terminal (rich and ``--plain``) renderers, one module per format.
* :mod:`.plots` / :mod:`.preference` — training curves, held-out accuracy, implied token preference, accuracy vs compute.
* :mod:`.report` — :func:`generate_report` (all of it, to files) and :func:`print_summary_table` (terminal).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

DEFAULT_METRIC = "acc"
"""What a table shows unless ``--metric`` says otherwise (:mod:`.metrics` resolves it); here, not in :mod:`.metrics`,
so that the CLI's option defaults name it without importing the store reader."""

DEFAULT_BASELINE = "grpo"
"""The algorithm the Δ columns compare against unless ``--baseline`` says otherwise (here for the same reason)."""

if TYPE_CHECKING:
    from lgrpo_bench.reports.loader import (
        ReportData,
        ReportInputError,
        RunRecord,
        Store,
        load_histories,
        load_problem_records,
        load_runs,
        open_store,
    )
    from lgrpo_bench.reports.report import FORMATS, ReportResult, generate_report, load_report_table, print_summary_table
    from lgrpo_bench.reports.table import IncomparableRuns, ReportTable, build_table

_HOMES = {
    **dict.fromkeys(("ReportData", "ReportInputError", "RunRecord", "Store", "load_histories",
                     "load_problem_records", "load_runs", "open_store"), "loader"),
    **dict.fromkeys(("FORMATS", "ReportResult", "generate_report", "load_report_table", "print_summary_table"), "report"),
    **dict.fromkeys(("IncomparableRuns", "ReportTable", "build_table"), "table"),
}
"""Where each public name lives: imported on first use, so ``plan`` (which needs only :mod:`.power_lines`) does not pay
for the renderers, plots and statistics."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_BASELINE",
    "DEFAULT_METRIC",
    "FORMATS",
    "IncomparableRuns",
    "ReportData",
    "ReportInputError",
    "ReportResult",
    "ReportTable",
    "RunRecord",
    "Store",
    "build_table",
    "generate_report",
    "load_histories",
    "load_problem_records",
    "load_report_table",
    "load_runs",
    "open_store",
    "print_summary_table",
]
