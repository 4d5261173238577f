"""The paper table as data: groups by model size, one row per algorithm, benchmark columns, Δ vs a baseline.

Pure: built from :class:`~lgrpo_bench.reports.loader.RunRecord` objects, learning curves and per-problem
accuracies that the caller loaded; renderers (:mod:`.render`) only format it.

Rules
-----
* Cell: mean ± std over seeds (:func:`~lgrpo_bench.reports.stats.seed_stats`) of one eval metric (``acc``
  by default); a row's ``n`` is its number of runs (seeds); a cell built from fewer runs carries its own n.
* Average: per run, the mean over the table's benchmark columns (only for runs that have all of them),
  then mean ± std over seeds. Sample efficiency: per run, :func:`~lgrpo_bench.reports.stats.learning_curve_mean`
  of ``train/heldout_acc``, then mean ± std over seeds (the column exists when any run logged it).
* Best: the highest mean of a column within a model size is marked (when at least two rows have a value).
* Seed std line: :func:`~lgrpo_bench.reports.stats.pooled_seed_std` per column and model size.
* Δ: per model size, every algorithm minus the baseline (difference of seed means), with the interval and
  probability of improvement of :func:`~lgrpo_bench.reports.stats.paired_bootstrap` where every run involved
  has per-problem records.
* Comparability: two evaluations of a benchmark go into the same column only when their identity tags
  ``hash``, ``protocol``, ``k``, ``temperature`` and ``top_p`` agree. Otherwise :func:`build_table`
  refuses (:class:`IncomparableRuns`, naming the runs of each variant) or, with ``split=True``, gives each
  variant its own column (and leaves the Average out, since rows would average different sets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lgrpo_bench.reports.loader import ReportInputError, RunRecord
from lgrpo_bench.reports.stats import (
    DEFAULT_RESAMPLES,
    BootstrapResult,
    SeedStats,
    learning_curve_mean,
    paired_bootstrap,
    pooled_seed_std,
    seed_stats,
)

__all__ = [
    "AVERAGE",
    "COMPARABILITY_FIELDS",
    "EFFICIENCY",
    "Cell",
    "Column",
    "DeltaCell",
    "DeltaRow",
    "Group",
    "IncomparableRuns",
    "ReportTable",
    "Row",
    "build_table",
    "table_columns",
]

COMPARABILITY_FIELDS: tuple[str, ...] = ("hash", "protocol", "k", "temperature", "top_p")
"""Eval identity fields that must agree for two evaluations of a benchmark to be averaged or compared."""
AVERAGE = "average"
EFFICIENCY = "sample_efficiency"
_MAX_NAMED_RUNS = 8


class IncomparableRuns(ReportInputError):
    """Runs evaluated a benchmark under different content hashes or protocols."""


@dataclass(frozen=True)
class Column:
    """A benchmark column: the benchmark and the identity every value in it shares."""

    key: str
    benchmark: str
    identity: tuple[tuple[str, str], ...]
    label: str


@dataclass
class Cell:
    stats: SeedStats
    best: bool = False


@dataclass
class Row:
    model_size: str
    algorithm: str
    runs: list[RunRecord]
    cells: dict[str, Cell]
    """Keyed by column key, :data:`AVERAGE` and :data:`EFFICIENCY`."""

    @property
    def n(self) -> int:
        return len(self.runs)


@dataclass
class DeltaCell:
    delta: float | None
    """Difference of seed means (fraction); ``None`` when either side is missing."""
    bootstrap: BootstrapResult | None = None
    """Interval and P(improvement); ``None`` when per-problem records are missing."""


@dataclass
class DeltaRow:
    model_size: str
    algorithm: str
    cells: dict[str, DeltaCell]


@dataclass
class Group:
    model_size: str
    rows: list[Row]
    seed_std: dict[str, float | None]
    deltas: list[DeltaRow]
    baseline_present: bool


@dataclass
class ReportTable:
    metric: str
    baseline: str
    columns: list[Column]
    groups: list[Group]
    has_average: bool
    has_efficiency: bool
    confidence: float
    notes: list[str] = field(default_factory=list)

    @property
    def value_keys(self) -> list[str]:
        """Column keys in display order: benchmarks, then Average and Sample efficiency when present."""
        return [c.key for c in self.columns] + ([AVERAGE] if self.has_average else []) + ([EFFICIENCY] if self.has_efficiency else [])

    def label(self, key: str) -> str:
        for column in self.columns:
            if column.key == key:
                return column.label
        return {AVERAGE: "Average", EFFICIENCY: "Sample eff."}[key]


def _identity_key(run: RunRecord, benchmark: str) -> tuple[tuple[str, str], ...]:
    identity = run.eval_identity.get(benchmark, {})
    return tuple((name, identity.get(name, "")) for name in COMPARABILITY_FIELDS)


def _describe_identity(identity: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{name}={value or '?'}" for name, value in identity)


def table_columns(runs: Sequence[RunRecord], metric: str, split: bool) -> tuple[list[Column], list[str]]:
    """The benchmark columns of ``runs`` (benchmarks with ``metric``, sorted), and notes about splits.

    Raises :class:`IncomparableRuns` when a benchmark has several identities and ``split`` is False.
    """
    benchmarks = sorted({b for run in runs for b, values in run.eval_metrics.items() if metric in values})
    columns: list[Column] = []
    notes: list[str] = []
    problems: list[str] = []
    for benchmark in benchmarks:
        variants: dict[tuple, list[RunRecord]] = {}
        for run in runs:
            if metric in run.eval_metrics.get(benchmark, {}):
                variants.setdefault(_identity_key(run, benchmark), []).append(run)
        if len(variants) == 1:
            identity = next(iter(variants))
            columns.append(Column(benchmark, benchmark, identity, benchmark))
            continue
        if not split:
            lines = []
            for identity, members in variants.items():
                named = "; ".join(r.label for r in members[:_MAX_NAMED_RUNS])
                more = f"; and {len(members) - _MAX_NAMED_RUNS} more" if len(members) > _MAX_NAMED_RUNS else ""
                lines.append(f"  [{_describe_identity(identity)}]: {named}{more}")
            problems.append(f"benchmark {benchmark!r} was evaluated {len(variants)} different ways:\n" + "\n".join(lines))
            continue
        for identity in sorted(variants):
            fields = dict(identity)
            suffix = f"{fields['protocol'] or '?'}, {(fields['hash'] or '?')[:8]}"
            key = f"{benchmark}[{suffix}]"
            columns.append(Column(key, benchmark, identity, f"{benchmark} ({suffix})"))
        notes.append(f"{benchmark}: {len(variants)} evaluation variants shown as separate columns")
    if problems:
        raise IncomparableRuns(
            "runs whose evaluations differ in content hash or protocol (protocol/k/temperature/top_p) cannot be "
            "averaged together:\n" + "\n".join(problems)
            + "\nre-evaluate them the same way, narrow the selection (--filter), or split them into columns (--split)"
        )
    return columns, notes


def _value(run: RunRecord, column: Column, metric: str) -> float | None:
    if _identity_key(run, column.benchmark) != column.identity:
        return None
    return run.eval_metrics.get(column.benchmark, {}).get(metric)


def build_table(
    runs: Sequence[RunRecord],
    *,
    metric: str = "acc",
    baseline: str = "grpo",
    heldout_curves: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None,
    problem_accuracy: Mapping[tuple[str, str], Mapping[str, float] | None] | None = None,
    split: bool = False,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = 0,
) -> ReportTable:
    """The :class:`ReportTable` of ``runs`` (see the module doc for every rule).

    Args:
        heldout_curves: ``{MLflow run id: (steps, train/heldout_acc values)}``; empty = no efficiency column.
        problem_accuracy: ``{(MLflow run id holding the eval, benchmark): {problem_id: accuracy}}``
            (``None`` values: no records); empty = Δ without intervals.
        split: give each evaluation variant of a benchmark its own column instead of refusing.
    """
    if not runs:
        raise ReportInputError("no run to report")
    columns, notes = table_columns(runs, metric, split)
    split_happened = len({c.benchmark for c in columns}) != len(columns)
    has_average = bool(columns) and not split_happened
    if split_happened:
        notes.append("the Average column is left out: some benchmark has several evaluation variants")
    curves = heldout_curves or {}
    efficiency = {run.mlflow_run_id: learning_curve_mean(*curves[run.mlflow_run_id]) for run in runs if run.mlflow_run_id in curves}
    has_efficiency = any(value is not None for value in efficiency.values())

    def run_values(run: RunRecord) -> dict[str, float | None]:
        values: dict[str, float | None] = {c.key: _value(run, c, metric) for c in columns}
        if has_average:
            per_column = [values[c.key] for c in columns]
            values[AVERAGE] = float(np.mean(per_column)) if all(v is not None for v in per_column) else None
        if has_efficiency:
            values[EFFICIENCY] = efficiency.get(run.mlflow_run_id)
        return values

    keys = [c.key for c in columns] + ([AVERAGE] if has_average else []) + ([EFFICIENCY] if has_efficiency else [])
    by_size: dict[str, dict[str, list[RunRecord]]] = {}
    for run in runs:
        by_size.setdefault(run.model_size, {}).setdefault(run.algorithm, []).append(run)

    groups = []
    for size in sorted(by_size, key=_size_sort_key):
        algorithms = by_size[size]
        order = sorted(algorithms, key=lambda a: (a != baseline, a))
        values_by_algorithm = {a: [run_values(r) for r in algorithms[a]] for a in order}
        rows = []
        for algorithm in order:
            cells = {key: Cell(seed_stats(v[key] for v in values_by_algorithm[algorithm])) for key in keys}
            rows.append(Row(size, algorithm, algorithms[algorithm], cells))
        for key in keys:
            means = [row.cells[key].stats.mean for row in rows if row.cells[key].stats.mean is not None]
            if len(means) >= 2:
                best = max(means)
                for row in rows:
                    row.cells[key].best = row.cells[key].stats.mean == best
        seed_std = {key: pooled_seed_std([[v[key] for v in values_by_algorithm[a]] for a in order]) for key in keys}
        baseline_present = baseline in algorithms
        deltas = []
        if baseline_present:
            base_row = rows[0]
            for row in rows[1:]:
                deltas.append(DeltaRow(size, row.algorithm, {
                    key: _delta_cell(row, base_row, key, columns, has_average, problem_accuracy or {},
                                     confidence, n_resamples, bootstrap_seed)
                    for key in keys if key != EFFICIENCY
                } | ({EFFICIENCY: DeltaCell(_difference(row, base_row, EFFICIENCY))} if has_efficiency else {})))
        else:
            notes.append(f"model size {size}: no {baseline!r} runs, so no Δ vs baseline (choose another with --baseline)")
        groups.append(Group(size, rows, seed_std, deltas, baseline_present))
    return ReportTable(metric, baseline, columns, groups, has_average, has_efficiency, confidence, notes)


def _size_sort_key(size: str) -> tuple[float, str]:
    """Sizes like ``0.5B``, ``1.5B``, ``350M`` sort by parameter count; anything else after, by name."""
    text = size.strip().upper()
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(text[-1:], None)
    try:
        return (float(text[:-1]) * scale, size) if scale else (float(text), size)
    except ValueError:
        return (float("inf"), size)


def _difference(row: Row, base: Row, key: str) -> float | None:
    a, b = row.cells[key].stats.mean, base.cells[key].stats.mean
    return None if a is None or b is None else a - b


def _accuracy_matrix(
    runs: Sequence[RunRecord], column: Column, problem_ids: Sequence[str],
    problem_accuracy: Mapping[tuple[str, str], Mapping[str, float] | None],
) -> np.ndarray:
    return np.array([[problem_accuracy[(r.eval_source[column.benchmark], column.benchmark)][p] for p in problem_ids] for r in runs])


def _delta_cell(
    row: Row, base: Row, key: str, columns: Sequence[Column], has_average: bool,
    problem_accuracy: Mapping[tuple[str, str], Mapping[str, float] | None],
    confidence: float, n_resamples: int, bootstrap_seed: int,
) -> DeltaCell:
    delta = _difference(row, base, key)
    if delta is None or not problem_accuracy:
        return DeltaCell(delta)
    used = list(columns) if key == AVERAGE else [c for c in columns if c.key == key]
    if key == AVERAGE and not has_average:
        return DeltaCell(delta)

    def usable(runs: Sequence[RunRecord]) -> list[RunRecord] | None:
        """The runs sorted by seed when every one has records for every column used, else None."""
        for run in runs:
            for column in used:
                source = run.eval_source.get(column.benchmark)
                if _identity_key(run, column.benchmark) != column.identity or problem_accuracy.get((source, column.benchmark)) is None:
                    return None
        return sorted(runs, key=lambda r: r.seed)

    candidate_runs, baseline_runs = usable(row.runs), usable(base.runs)
    if not candidate_runs or not baseline_runs:
        return DeltaCell(delta)
    candidates, baselines = [], []
    for column in used:
        shared = set.intersection(*[set(problem_accuracy[(r.eval_source[column.benchmark], column.benchmark)]) for r in candidate_runs + baseline_runs])
        problem_ids = sorted(shared)
        if len(problem_ids) < 2:
            return DeltaCell(delta)
        candidates.append(_accuracy_matrix(candidate_runs, column, problem_ids, problem_accuracy))
        baselines.append(_accuracy_matrix(baseline_runs, column, problem_ids, problem_accuracy))
    paired = [r.seed for r in candidate_runs] == [r.seed for r in baseline_runs]
    result = paired_bootstrap(candidates, baselines, paired_seeds=paired, confidence=confidence,
                              n_resamples=n_resamples, seed=bootstrap_seed)
    return DeltaCell(delta, result)
