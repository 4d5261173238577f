"""What ``notebooks/analysis.ipynb`` needs beyond the report: the store it reads and its per-run frame in the report's unit.

The notebook's kernel runs in ``notebooks/`` (``jupyter execute notebooks/analysis.ipynb`` from the project root), the
CLI in the project root: :func:`notebook_tracking_uri` finds the store the CLI would use there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lgrpo_bench.reports.loader import ReportInputError

__all__ = ["REPORT_URI_ENV", "notebook_tracking_uri", "per_run_rows"]

REPORT_URI_ENV = "LGRPO_REPORT_URI"
"""The notebook's own store variable (wins over ``MLFLOW_TRACKING_URI``)."""


def notebook_tracking_uri(start: str | Path | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The store a notebook reads: ``$LGRPO_REPORT_URI``, else ``$MLFLOW_TRACKING_URI`` (as the CLI), else the
    ``mlflow.db`` of ``start`` (default: the working folder) or of the nearest folder above it that has one: the
    CLI's ``sqlite:///./mlflow.db`` when it runs in the project root and the notebook in ``notebooks/``.

    :class:`ReportInputError` when none is set and no folder up to the file system's root holds an ``mlflow.db``,
    naming the folders searched and the variables to set."""
    from lgrpo_bench.tracking import DEFAULT_DB_FILENAME, resolve_tracking_uri

    environ = os.environ if environ is None else environ
    for name in (REPORT_URI_ENV, "MLFLOW_TRACKING_URI"):
        if environ.get(name):
            return resolve_tracking_uri(environ[name])
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_DB_FILENAME).is_file():
            return f"sqlite:///{folder / DEFAULT_DB_FILENAME}"
    raise ReportInputError(f"no MLflow store: no {DEFAULT_DB_FILENAME} in {here} or any folder above it, and neither "
                           f"{REPORT_URI_ENV} nor MLFLOW_TRACKING_URI is set; run a grid first (lgrpo-bench run "
                           f"experiments/quickstart.yaml), or set {REPORT_URI_ENV}=sqlite:////path/to/mlflow.db")


def per_run_rows(table, runs) -> list[dict[str, Any]]:
    """One row per (run, benchmark): model size, algorithm, the table's row keys, seed and the table's metric in the
    table's unit (``acc (points)``: 100 × the logged fraction), the numbers the table's cells average."""
    unit = table.unit
    column = f"{table.metric} ({unit.name})"
    rows = []
    for run in runs:
        keys = {table.row_keys.labels[key]: run.params.get(key) for key in table.row_keys.keys}
        for benchmark, values in run.eval_metrics.items():
            value = values.get(table.metric)
            rows.append({"model_size": run.model_size, "algorithm": run.algorithm, **keys, "seed": run.seed,
                         "benchmark": benchmark, column: None if value is None else unit.shown(value)})
    return rows
