"""CSV (``results.csv``: tidy, one row per run × benchmark × metric; ``deltas.csv``: the Δ table).

Both hold numbers in the units the tables show (the schema's, :func:`lgrpo_bench.tracking.schema.metric_spec`:
a fraction × 100 in points, lengths in tokens, ...) at full precision, each row naming its unit in the ``unit``
column."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

from lgrpo_bench.reports.loader import RunRecord
from lgrpo_bench.reports.table import ReportTable
from lgrpo_bench.tracking import schema as t

__all__ = ["DELTAS_CSV_FIELDS", "EFFICIENCY_CSV_METRIC", "RESULTS_CSV_FIELDS", "deltas_csv", "results_csv"]

RESULTS_CSV_FIELDS: tuple[str, ...] = (
    "experiment_id", "mlflow_run_id", "run_id", "model_size", "model", "algorithm", "seed", "state",
    "benchmark", "metric", "value", "unit", "hash", "protocol", "k", "temperature", "top_p", "hardware",
)
"""Fixed columns of ``results.csv``; one column per row key (and ``--average-over`` key) follows ``algorithm``, and
one per ``lgrpo.host.*`` tag any run carries (``host.cpu``, ``host.torch_threads``, ...) follows ``hardware``."""
DELTAS_CSV_FIELDS: tuple[str, ...] = (
    "model_size", "algorithm", "baseline", "matched_keys", "baseline_keys", "column", "delta", "ci_low", "ci_high", "unit",
    "confidence", "p_value", "significant", "method", "df", "n_seeds", "n_seeds_baseline", "no_interval",
)
"""Fixed columns of ``deltas.csv``; one column per row key follows ``algorithm``. ``matched_keys``: the keys the
baseline row agrees on (``;``-separated); ``baseline_keys``: the baseline's values of the algorithm options it
was not matched on; ``delta``, ``ci_low``, ``ci_high`` in ``unit`` (the table's); ``method``: ``paired t`` or ``Welch t``;
``no_interval``: why there is none."""
#: ``train/heldout_acc`` learning-curve mean in the tidy CSV: benchmark ``train``, this metric name.
EFFICIENCY_CSV_METRIC = "heldout_acc_curve_mean"


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
    benchmark ``train``, metric :data:`EFFICIENCY_CSV_METRIC`; a table of a training metric adds one row per run:
    benchmark ``train``, that metric (its last logged value). Values in the unit of the ``unit`` column (the tables':
    points for a fraction, i.e. 100 × the logged value), full precision.
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
                writer.writerow(base | {"benchmark": benchmark, "metric": metric}
                                | _shown(run.eval_metrics[benchmark][metric], t.metric_spec(metric).unit)
                                | {name: identity.get(name, "") for name in ("hash", "protocol", "k", "temperature", "top_p")})
        for column in table.columns:
            if column.source == "train" and column.key in run.train_metrics:
                writer.writerow(base | {"benchmark": "train", "metric": column.key}
                                | _shown(run.train_metrics[column.key], table.unit))
        value = (efficiency or {}).get(run.mlflow_run_id)
        if value is not None:
            writer.writerow(base | {"benchmark": "train", "metric": EFFICIENCY_CSV_METRIC} | _shown(value, t.UNIT_POINTS))
    return buffer.getvalue()


def _shown(value: float, unit: t.Unit) -> dict[str, str]:
    """``value`` and ``unit`` fields: the logged ``value`` in ``unit`` (``unit.scale × value``), full precision."""
    return {"value": repr(unit.shown(value)), "unit": unit.name}


def deltas_csv(table: ReportTable) -> str:
    """One row per model size × compared row × column of the Δ table (empty fields where missing), with one
    column per row key."""
    key_columns = _csv_key_columns(table, averaged=False)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_with_keys(DELTAS_CSV_FIELDS, key_columns), lineterminator="\n")
    writer.writeheader()
    labels = table.row_keys.labels
    unit = table.unit
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
                    "delta": "" if cell.delta is None else repr(unit.shown(cell.delta)),
                    "ci_low": repr(unit.shown(result.low)) if has_interval else "",
                    "ci_high": repr(unit.shown(result.high)) if has_interval else "", "unit": unit.name,
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
