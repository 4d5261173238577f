"""The paper table as data: groups by model size, one row per configuration, benchmark columns, Δ vs a baseline.

Pure: built from :class:`~lgrpo_bench.reports.loader.RunRecord` objects and learning curves that the caller
loaded; renderers (:mod:`.render`) only format it.

Rules
-----
* Rows: one per model size × algorithm × value of the row keys (:mod:`.keys`: every config key that varies
  among the runs, except seeds), so different configurations are never averaged as seeds. Two runs of one
  row with the same seed are an error naming both.
* Cell: mean ± std over seeds (:func:`~lgrpo_bench.reports.stats.seed_stats`) of one eval metric (``acc``
  by default); a row's ``n`` is its number of runs (seeds); a cell built from fewer runs carries its own n.
* Average: per run, the mean over the table's benchmark columns (only for runs that have all of them),
  then mean ± std over seeds; only with two benchmark columns or more (with one it would repeat that column).
  Sample efficiency: per run, :func:`~lgrpo_bench.reports.stats.learning_curve_mean`
  of ``train/heldout_acc``, then mean ± std over seeds (the column exists when any run logged it).
* Metric (:mod:`.metrics`): ``acc`` (every benchmark), ``eval/<benchmark>/<metric>`` (one), ``train/<name>`` (last
  logged value); one no run logged is refused, naming those they hold. Every value is in the metric's unit from the
  schema (:attr:`ReportTable.unit`); the Sample efficiency column (held-out accuracy) only joins accuracy-like metrics.
* Best: the best mean of a column within a model size is marked (when at least two rows have a value), every row
  whose mean, as shown, equals it (ties all marked); none for a metric with no better direction (a length).
* Seed std line: :func:`~lgrpo_bench.reports.stats.pooled_seed_std` per column and model size, over its rows.
* Δ: every non-baseline row minus the baseline row of its model size with the same key values
  (:func:`~lgrpo_bench.reports.keys.match_baseline`), difference of seed means, with the t interval over
  seeds of :func:`~lgrpo_bench.reports.stats.delta_interval` (paired by seed when both rows ran the same seeds).
* Power: per model size and column, the minimum detectable effect and the seeds 1 and 2 points need
  (:mod:`.power`), from the pooled std of the paired per-seed differences when some Δ is paired, else from
  the pooled seed std, and the most common number of seeds (pairs, or runs per row).
* Comparability: two evaluations of a benchmark go into the same column only when their identity tags
  ``hash``, ``protocol``, ``k``, ``temperature`` and ``top_p`` agree. Otherwise :func:`build_table`
  refuses (:class:`IncomparableRuns`, naming the runs of each variant) or, with ``split=True``, gives each
  variant its own column (and leaves the Average out, since rows would average different sets).
* Small benchmarks: a column of fewer than :data:`SMALL_BENCHMARK` problems knows its problem count, so the
  captions can say what one problem moves (100 / n points).
* NaN: a run that logged NaN for a value of a cell makes the cell NaN (shown as ``NaN``, never as missing, never
  best), and so its Average and its Δ; :attr:`ReportTable.notes` warns once per run, naming its NaN metrics.
* Marks (footnotes under the table, :attr:`ReportTable.footnotes`): :data:`WARM_START_MARK` on a row with a run
  that rests on a warm start outside its preset's accuracy band (tag ``lgrpo.warm_start.in_band`` = ``false``);
  :data:`LAMBDA_MARK` on a row with a run whose λ moved at its optimizer's rate limit in more than
  :data:`LAMBDA_RATE_LIMITED_MAX` of its steps (tag ``lgrpo.lambda.rate_limited_frac``): λ still rising at its
  learning rate, not converged (its final value says more about ``lambda_lr × steps`` than about the data).
* Hardware: when the runs of a table carry more than one ``lgrpo.hardware`` value (or some carry none), one
  footnote says so with the count of each (``results.csv`` has each run's).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lgrpo_bench.reports import DEFAULT_BASELINE, DEFAULT_METRIC
from lgrpo_bench.reports.keys import BaselineMatch, RowKeys, check_replicates, match_baseline, resolve_row_keys, sort_key
from lgrpo_bench.reports.loader import ReportInputError, RunRecord
from lgrpo_bench.reports.metrics import TRAIN_SOURCE, MetricChoice, resolve_metric
from lgrpo_bench.reports.power import PowerSummary, power_summary
from lgrpo_bench.reports.stats import (
    DEFAULT_CONFIDENCE,
    PAIRED_T,
    DeltaInterval,
    SeedStats,
    delta_interval,
    learning_curve_mean,
    pooled_seed_std,
    seed_stats,
)
from lgrpo_bench.tracking import schema as t

__all__ = [
    "AVERAGE",
    "COMPARABILITY_FIELDS",
    "EFFICIENCY",
    "LAMBDA_MARK",
    "LAMBDA_RATE_LIMITED_MAX",
    "SMALL_BENCHMARK",
    "WARM_START_MARK",
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
SMALL_BENCHMARK = 100
"""Benchmarks with fewer problems get a note of what one problem moves (AIME: 30, AMC: 40)."""
WARM_START_MARK = "†"
"""Marks a row with a run on an out-of-band warm start (issue 12 §2)."""
LAMBDA_MARK = "‡"
"""Marks a row with a run whose λ was at its rate limit for most steps (issue 12 §5)."""
LAMBDA_RATE_LIMITED_MAX = 0.5
"""A run whose ``lgrpo.lambda.rate_limited_frac`` exceeds this share of steps marks its row with :data:`LAMBDA_MARK`."""
_MAX_NAMED_RUNS = 8
_MAX_NAMED_ROWS = 6


class IncomparableRuns(ReportInputError):
    """Runs evaluated a benchmark under different content hashes or protocols."""


@dataclass(frozen=True)
class Column:
    """A benchmark column: the benchmark and the identity every value in it shares."""

    key: str
    benchmark: str
    identity: tuple[tuple[str, str], ...]
    label: str
    n_problems: int | None = None
    """Problems of the benchmark (identity tag ``n``), when the runs logged it."""
    source: str = "eval"
    """``eval``: the value is ``eval/<benchmark>/<metric>``; ``train``: the training metric ``key`` (last logged value)."""


@dataclass
class Cell:
    stats: SeedStats
    best: bool = False
    nan: int = 0
    """Runs of the row whose value is NaN: the cell shows ``NaN`` (their other values are in ``stats``)."""


@dataclass
class Row:
    model_size: str
    algorithm: str
    runs: list[RunRecord]
    cells: dict[str, Cell]
    """Keyed by column key, :data:`AVERAGE` and :data:`EFFICIENCY`."""
    key_values: tuple[str | None, ...] = ()
    """Values of :attr:`ReportTable.row_keys` ``.keys``, in that order."""
    keys_text: str = ""
    """The shown keys as ``lam_init=1.0, learning_rate=3e-05`` (empty without shown keys)."""
    marks: tuple[str, ...] = ()
    """:data:`WARM_START_MARK` / :data:`LAMBDA_MARK` when the row's runs earn them (footnotes say why)."""

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def label(self) -> str:
        """How plots and messages name the row: ``lambda_grpo (lam_init=1.0)``."""
        return f"{self.algorithm} ({self.keys_text})" if self.keys_text else self.algorithm


@dataclass
class DeltaCell:
    delta: float | None
    """Difference of seed means (fraction); ``None`` when either side is missing or there is no baseline row; NaN
    when either side is NaN."""
    interval: DeltaInterval | None = None
    """The t interval over seeds (or why there is none); ``None`` without statistics."""


@dataclass
class DeltaRow:
    model_size: str
    algorithm: str
    cells: dict[str, DeltaCell]
    key_values: tuple[str | None, ...] = ()
    keys_text: str = ""
    match: BaselineMatch | None = None
    """Which baseline row the row is compared with, and on which keys (``index is None``: none)."""
    baseline_keys_text: str = ""
    """The baseline row's values of the algorithm options it was not matched on (``lam_init=0.0``)."""
    marks: tuple[str, ...] = ()
    """The compared row's :attr:`Row.marks`."""


@dataclass
class Group:
    model_size: str
    rows: list[Row]
    seed_std: dict[str, float | None]
    deltas: list[DeltaRow]
    baseline_present: bool
    power: dict[str, PowerSummary | None] = field(default_factory=dict)
    """Per column: what a Δ of this model size can detect (only with statistics)."""


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
    row_keys: RowKeys = field(default_factory=lambda: RowKeys((), {}, ()))
    statistics: bool = True
    """Intervals and power were computed."""
    footnotes: list[tuple[str, str]] = field(default_factory=list)
    """(mark, text) lines that belong under the tables in every format: the meaning of each row mark used, and the
    hardware line when the runs mix hardware (mark ``""``)."""
    choice: MetricChoice = field(default_factory=lambda: MetricChoice(DEFAULT_METRIC))
    """The metric tabulated, its unit and better direction (:mod:`.metrics`)."""
    run_values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """``{MLflow run id: {value key: the run's value}}``: what each cell's mean ± std is computed from (``--per-seed``)."""

    @property
    def unit(self) -> t.Unit:
        """The unit every value column is shown in (from the schema: points for fractions, tokens, reward, ...)."""
        return self.choice.unit

    @property
    def higher_is_better(self) -> bool | None:
        """Which mean of a column is marked best (``None``: none is)."""
        return self.choice.spec.higher_is_better

    @property
    def value_keys(self) -> list[str]:
        """Column keys in display order: benchmarks, then Average and Sample efficiency when present."""
        return [c.key for c in self.columns] + ([AVERAGE] if self.has_average else []) + ([EFFICIENCY] if self.has_efficiency else [])

    def label(self, key: str) -> str:
        for column in self.columns:
            if column.key == key:
                return column.label
        return {AVERAGE: "Average", EFFICIENCY: "Sample eff."}[key]

    @property
    def key_labels(self) -> list[str]:
        """Column names of the shown row keys, in order."""
        return [self.row_keys.labels[key] for key in self.row_keys.shown]

    @property
    def matched_labels(self) -> list[str]:
        """Names of the keys every Δ row with a baseline was matched on, in key order."""
        matches = [d.match for g in self.groups for d in g.deltas if d.match is not None and d.match.index is not None]
        if not matches:
            return []
        common = set.intersection(*(set(m.matched) for m in matches))
        return [self.row_keys.labels[key] for key in self.row_keys.keys if key in common]

    def row_of(self) -> dict[str, Row]:
        """``{MLflow run id: its row}``."""
        return {run.mlflow_run_id: row for group in self.groups for row in group.rows for run in row.runs}


def _identity_key(run: RunRecord, benchmark: str) -> tuple[tuple[str, str], ...]:
    identity = run.eval_identity.get(benchmark, {})
    return tuple((name, identity.get(name, "")) for name in COMPARABILITY_FIELDS)


def _describe_identity(identity: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{name}={value or '?'}" for name, value in identity)


def _problem_count(runs: Sequence[RunRecord], benchmark: str) -> int | None:
    counts = Counter(run.eval_identity.get(benchmark, {}).get("n") or run.eval_metrics.get(benchmark, {}).get("n") for run in runs)
    counts.pop(None, None)
    if not counts:
        return None
    try:
        return int(float(counts.most_common(1)[0][0]))
    except ValueError:
        return None


def table_columns(runs: Sequence[RunRecord], metric: str | MetricChoice, split: bool) -> tuple[list[Column], list[str]]:
    """The benchmark columns of ``runs`` (benchmarks with ``metric``, sorted; only its benchmark for
    ``eval/<benchmark>/<metric>``; one column for a training metric), and notes about splits.

    Raises :class:`IncomparableRuns` when a benchmark has several identities and ``split`` is False.
    """
    choice = metric if isinstance(metric, MetricChoice) else MetricChoice(metric)
    if choice.source == TRAIN_SOURCE:
        return [Column(choice.name, "", (), choice.name, None, TRAIN_SOURCE)], []
    metric = choice.name
    benchmarks = sorted({b for run in runs for b, values in run.eval_metrics.items() if metric in values
                         and choice.benchmark in (None, b)})
    columns: list[Column] = []
    notes: list[str] = []
    problems: list[str] = []
    for benchmark in benchmarks:
        variants: dict[tuple, list[RunRecord]] = {}
        for run in runs:
            if metric in run.eval_metrics.get(benchmark, {}):
                variants.setdefault(_identity_key(run, benchmark), []).append(run)
        if len(variants) == 1:
            identity, members = next(iter(variants.items()))
            columns.append(Column(benchmark, benchmark, identity, benchmark, _problem_count(members, benchmark)))
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
            columns.append(Column(key, benchmark, identity, f"{benchmark} ({suffix})", _problem_count(variants[identity], benchmark)))
        notes.append(f"{benchmark}: {len(variants)} evaluation variants shown as separate columns")
    if problems:
        raise IncomparableRuns(
            "runs whose evaluations differ in content hash or protocol (protocol/k/temperature/top_p) cannot be "
            "averaged together:\n" + "\n".join(problems)
            + "\nre-evaluate them the same way, narrow the selection (--filter), or split them into columns (--split)"
        )
    return columns, notes


def _value(run: RunRecord, column: Column, metric: str) -> float | None:
    if column.source == TRAIN_SOURCE:
        return run.train_metrics.get(column.key)
    if _identity_key(run, column.benchmark) != column.identity:
        return None
    return run.eval_metrics.get(column.benchmark, {}).get(metric)


def build_table(
    runs: Sequence[RunRecord],
    *,
    metric: str = DEFAULT_METRIC,
    baseline: str = DEFAULT_BASELINE,
    heldout_curves: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None,
    split: bool = False,
    statistics: bool = True,
    confidence: float = DEFAULT_CONFIDENCE,
    group_by: Sequence[str] | None = None,
    average_over: Sequence[str] = (),
    key_order: Sequence[str] = (),
) -> ReportTable:
    """The :class:`ReportTable` of ``runs`` (see the module doc for every rule).

    Args:
        heldout_curves: ``{MLflow run id: (steps, train/heldout_acc values)}``; empty = no efficiency column.
        split: give each evaluation variant of a benchmark its own column instead of refusing.
        statistics: compute the Δ intervals and the power lines (off: Δ only).
        group_by: the row keys (dotted config keys, or their last part); default: every varying key.
        average_over: keys to treat as replicates, like the seed (stated in the caption).
        key_order: preferred order of the key columns (a grid's axes).
    Raises:
        ReportInputError: no run, bad ``group_by``/``average_over``, two runs of one row with one seed;
            :class:`IncomparableRuns` for differently evaluated benchmarks without ``split``.
    """
    if not runs:
        raise ReportInputError("no run to report")
    row_keys = resolve_row_keys(runs, group_by=group_by, average_over=average_over, key_order=key_order)
    choice = resolve_metric(runs, metric)
    metric = choice.name
    columns, notes = table_columns(runs, choice, split)
    split_happened = len({c.benchmark for c in columns}) != len(columns)
    has_average = len(columns) >= 2 and not split_happened
    if split_happened:
        notes.append("the Average column is left out: some benchmark has several evaluation variants")
    curves = heldout_curves or {}
    efficiency = {run.mlflow_run_id: learning_curve_mean(*curves[run.mlflow_run_id]) for run in runs if run.mlflow_run_id in curves}
    has_efficiency = choice.accuracy_like and any(value is not None for value in efficiency.values())
    keys = [c.key for c in columns] + ([AVERAGE] if has_average else []) + ([EFFICIENCY] if has_efficiency else [])

    def run_values(run: RunRecord) -> dict[str, float | None]:
        values: dict[str, float | None] = {c.key: _value(run, c, metric) for c in columns}
        if has_average:
            per_column = [values[c.key] for c in columns]
            values[AVERAGE] = float(np.mean(per_column)) if all(v is not None for v in per_column) else None
        if has_efficiency:
            values[EFFICIENCY] = efficiency.get(run.mlflow_run_id)
        return values

    values_of = {run.mlflow_run_id: run_values(run) for run in runs}
    by_size: dict[str, dict[tuple, list[RunRecord]]] = {}
    for run in runs:
        by_size.setdefault(run.model_size, {}).setdefault((run.algorithm, row_keys.values(run)), []).append(run)

    groups = []
    for size in sorted(by_size, key=_size_sort_key):
        configurations = by_size[size]
        order = sorted(configurations, key=lambda c: (c[0] != baseline, c[0], sort_key(c[1])))
        rows = []
        for algorithm, key_values in order:
            members = configurations[(algorithm, key_values)]
            row = Row(size, algorithm, members, {}, key_values, row_keys.describe(key_values), _marks(members))
            check_replicates(f"model size {size}, {row.label}", members, row_keys)
            row.cells = {key: _cell([values_of[r.mlflow_run_id][key] for r in members]) for key in keys}
            rows.append(row)
        for key in keys:
            _mark_best([row.cells[key] for row in rows], choice)
        per_row = {key: [[values_of[r.mlflow_run_id][key] for r in row.runs] for row in rows] for key in keys}
        seed_std = {key: pooled_seed_std(per_row[key]) for key in keys}
        base_rows = [row for row in rows if row.algorithm == baseline]
        deltas = []
        if base_rows:
            for row in rows:
                if row.algorithm != baseline:
                    deltas.append(_delta_row(row, base_rows, keys, values_of, row_keys, baseline, statistics, confidence))
        else:
            notes.append(f"model size {size}: no {baseline!r} runs, so no Δ vs baseline (choose another with --baseline)")
        power = {key: _power(key, rows, deltas, base_rows, per_row[key], values_of, row_keys, choice.unit.effects)
                 for key in keys} if statistics else {}
        groups.append(Group(size, rows, seed_std, deltas, bool(base_rows), power))
    notes += _nan_notes(runs, efficiency)
    table = ReportTable(metric, baseline, columns, groups, has_average, has_efficiency, confidence, notes, row_keys, statistics,
                        choice=choice, run_values=values_of)
    table.footnotes = _mark_footnotes(table) + _hardware_footnotes(runs, groups)
    return table


def _mark_best(cells: Sequence[Cell], choice: MetricChoice) -> None:
    """Mark every cell whose mean, as shown (the unit's decimals), equals the best shown mean: ties are all bold.
    Nothing is marked with fewer than two values, or for a metric with no better direction (a length)."""
    if choice.spec.higher_is_better is None:
        return
    shown = {id(cell): float(choice.unit.format(cell.stats.mean)) for cell in cells if cell.stats.mean is not None and not cell.nan}
    if len(shown) < 2:
        return
    best = max(shown.values()) if choice.spec.higher_is_better else min(shown.values())
    for cell in cells:
        cell.best = shown.get(id(cell)) == best


def _is_nan(value: float | None) -> bool:
    return value is not None and math.isnan(value)


def _cell(values: Sequence[float | None]) -> Cell:
    return Cell(seed_stats(values), nan=sum(map(_is_nan, values)))


def _marks(runs: Sequence[RunRecord]) -> tuple[str, ...]:
    marks = []
    if any(run.warm_start_out_of_band for run in runs):
        marks.append(WARM_START_MARK)
    if any(_rate_limited(run) for run in runs):
        marks.append(LAMBDA_MARK)
    return tuple(marks)


def _rate_limited(run: RunRecord) -> bool:
    fraction = run.lambda_rate_limited_frac
    return fraction is not None and fraction > LAMBDA_RATE_LIMITED_MAX


def _named_rows(parts: list[str]) -> str:
    more = f"; and {len(parts) - _MAX_NAMED_ROWS} more rows" if len(parts) > _MAX_NAMED_ROWS else ""
    return "; ".join(parts[:_MAX_NAMED_ROWS]) + more


def _mark_footnotes(table: ReportTable) -> list[tuple[str, str]]:
    """The footnote of each mark some row carries, naming the rows and how many of their runs earn it."""
    rows = [(group.model_size, row) for group in table.groups for row in group.rows]
    footnotes = []
    band = []
    for size, row in rows:
        if WARM_START_MARK in row.marks:
            members = [r for r in row.runs if r.warm_start_out_of_band]
            accuracies = sorted({r.tags[t.TAG_WARM_START_GREEDY_ACC] for r in members if t.TAG_WARM_START_GREEDY_ACC in r.tags})
            band.append(f"{size} {row.label}: {len(members)} of {row.n} runs"
                        + (f" (warm-start greedy accuracy {', '.join(accuracies)})" if accuracies else ""))
    if band:
        footnotes.append((WARM_START_MARK, f"rests on a warm start outside its preset's accuracy band ({t.TAG_WARM_START_IN_BAND} = "
                          f"false): {_named_rows(band)}. Another warm start may order the algorithms differently"))
    limited = []
    for size, row in rows:
        if LAMBDA_MARK in row.marks:
            members = [r for r in row.runs if _rate_limited(r)]
            fractions = [r.lambda_rate_limited_frac for r in members]
            share = f"{100 * min(fractions):.0f} %" + (f" to {100 * max(fractions):.0f} %" if max(fractions) != min(fractions) else "")
            limited.append(f"{size} {row.label}: {len(members)} of {row.n} runs, λ at its rate limit in {share} of steps")
    if limited:
        footnotes.append((LAMBDA_MARK, "λ still rising at its learning rate: not converged (λ moved at its optimizer's rate limit "
                          f"in more than {100 * LAMBDA_RATE_LIMITED_MAX:.0f} % of steps, {t.TAG_LAMBDA_RATE_LIMITED_FRAC}): "
                          f"{_named_rows(limited)}. Its final λ reflects lambda_lr × steps more than a learned preference"))
    return footnotes


def _hardware_footnotes(runs: Sequence[RunRecord], groups: Sequence[Group]) -> list[tuple[str, str]]:
    """One line when the runs mix hardware (``lgrpo.hardware`` values, or tagged and untagged runs)."""
    kinds = Counter(run.hardware or "not recorded" for run in runs)
    if len(kinds) < 2:
        return []
    listed = ", ".join(f"{kind} ({count} run{'s' if count != 1 else ''})" for kind, count in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    mixed = [f"{group.model_size} {row.label}" for group in groups for row in group.rows
             if len({run.hardware or "not recorded" for run in row.runs}) > 1]
    within = ""
    if mixed:
        within = f"; rows whose seeds mix them: {', '.join(mixed[:3])}" + (f" and {len(mixed) - 3} more" if len(mixed) > 3 else "")
    return [("", f"rows computed on {len(kinds)} kinds of hardware: {listed}{within} (results.csv: column hardware)")]


def _nan_notes(runs: Sequence[RunRecord], efficiency: Mapping[str, float | None]) -> list[str]:
    """One warning per run that logged NaN for an eval metric (or whose held-out curve mean is NaN)."""
    notes = []
    for run in runs:
        names = sorted(t.eval_metric(benchmark, metric) for benchmark, values in run.eval_metrics.items()
                       for metric, value in values.items() if _is_nan(value))
        if _is_nan(efficiency.get(run.mlflow_run_id)):
            names.append(t.TRAIN_HELDOUT_ACC)
        if names:
            notes.append(f"warning: run {run.label} logged NaN for {', '.join(names)}: shown as NaN, not as missing; "
                         "check its evaluation (run.log)")
    return notes


def _replicate_values(row: Row, key: str, values_of: Mapping[str, Mapping[str, float | None]], row_keys: RowKeys) -> dict:
    return {row_keys.replicate(run): values_of[run.mlflow_run_id][key] for run in row.runs}


def _delta_row(
    row: Row, base_rows: Sequence[Row], keys: Sequence[str], values_of: Mapping[str, Mapping[str, float | None]],
    row_keys: RowKeys, baseline: str, statistics: bool, confidence: float,
) -> DeltaRow:
    match = match_baseline(row.key_values, [b.key_values for b in base_rows], row_keys, baseline)
    if match.index is None:
        return DeltaRow(row.model_size, row.algorithm, {key: DeltaCell(None) for key in keys}, row.key_values, row.keys_text, match,
                        marks=row.marks)
    base = base_rows[match.index]
    cells = {}
    for key in keys:
        delta = _difference(row, base, key)
        interval = None
        if statistics and delta is not None and not math.isnan(delta):
            interval = delta_interval(_replicate_values(row, key, values_of, row_keys),
                                      _replicate_values(base, key, values_of, row_keys), confidence=confidence)
        cells[key] = DeltaCell(delta, interval)
    unmatched = ", ".join(f"{row_keys.labels[k]}={'—' if v is None else v}" for k, v in match.unmatched.items())
    return DeltaRow(row.model_size, row.algorithm, cells, row.key_values, row.keys_text, match, unmatched, row.marks)


def _difference(row: Row, base: Row, key: str) -> float | None:
    if row.cells[key].nan or base.cells[key].nan:
        return math.nan
    a, b = row.cells[key].stats.mean, base.cells[key].stats.mean
    return None if a is None or b is None else a - b


def _power(
    key: str, rows: Sequence[Row], deltas: Sequence[DeltaRow], base_rows: Sequence[Row], per_row: Sequence[Sequence[float | None]],
    values_of: Mapping[str, Mapping[str, float | None]], row_keys: RowKeys, effects: Sequence[float] | None = None,
) -> PowerSummary | None:
    """What a Δ in this column can detect (module doc): paired design when some Δ of the group is paired."""
    differences: list[list[float]] = []
    for delta_row in deltas:
        cell = delta_row.cells[key]
        if cell.interval is None or cell.interval.method != PAIRED_T:
            continue
        row = next(r for r in rows if r.algorithm == delta_row.algorithm and r.key_values == delta_row.key_values)
        candidate = _replicate_values(row, key, values_of, row_keys)
        base = _replicate_values(base_rows[delta_row.match.index], key, values_of, row_keys)
        differences.append([candidate[s] - base[s] for s in candidate if candidate[s] is not None and base.get(s) is not None])
    if differences:
        std, df = pooled_seed_std(differences), sum(len(d) - 1 for d in differences)
        n = Counter(len(d) for d in differences).most_common(1)[0][0]
        paired = True
    else:
        present = [[v for v in values if v is not None] for values in per_row]
        std, df = pooled_seed_std(present), sum(max(len(v) - 1, 0) for v in present)
        counts = Counter(len(v) for v in present if v)
        n = counts.most_common(1)[0][0] if counts else 0
        paired = False
    if std is None or not std > 0:
        return None
    return power_summary(std, n, paired=paired, std_df=df, **({"effects": tuple(effects)} if effects else {}))


def _size_sort_key(size: str) -> tuple[float, str]:
    """Sizes like ``0.5B``, ``1.5B``, ``350M`` sort by parameter count; anything else after, by name."""
    text = size.strip().upper()
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(text[-1:], None)
    try:
        return (float(text[:-1]) * scale, size) if scale else (float(text), size)
    except ValueError:
        return (float("inf"), size)


