"""What every format of :mod:`lgrpo_bench.reports.render` shares: the cell texts (:class:`Style`), the rows of the
summary and Δ tables, their captions and the power rows."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lgrpo_bench.reports.power import MAX_SEEDS, STD_CONFIDENCE, TARGET_EFFECTS
from lgrpo_bench.reports.stats import PAIRED_T
from lgrpo_bench.reports.table import SMALL_BENCHMARK, Cell, DeltaCell, ReportTable
from lgrpo_bench.tracking.schema import UNIT_POINTS, Unit

__all__ = [
    "MDE_LABEL",
    "MISSING",
    "NAN",
    "NOT_SIGNIFICANT",
    "SEEDS_LABEL",
    "SEED_STD_LABEL",
    "Style",
    "delta_caption",
    "delta_lines",
    "label_columns",
    "per_run_caption",
    "per_run_lines",
    "points",
    "seeds_label",
    "summary_caption",
    "summary_lines",
]

MISSING = "—"
NAN = "NaN"
NOT_SIGNIFICANT = "n.s."
MDE_LABEL = "MDE (80 % power)"
SEEDS_LABEL = "seeds for " + " / ".join(f"{100 * e:g}" for e in TARGET_EFFECTS) + " pts"


def seeds_label(unit: Unit = UNIT_POINTS) -> str:
    """The power row of the seeds needed: ``seeds for 1 / 2 pts`` (points), ``seeds for 1 / 2 tokens``, ..."""
    return "seeds for " + " / ".join(f"{unit.shown(e):g}" for e in unit.effects) + f" {unit.abbreviation}"


def points(value: float | None, signed: bool = False) -> str | None:
    """``value`` (a fraction) in points with one decimal (``+`` sign when ``signed``); ``None`` stays ``None``."""
    if value is None:
        return None
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


@dataclass(frozen=True)
class Style:
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


def _cell_text(cell: Cell, row_n: int, style: Style, unit: Unit = UNIT_POINTS) -> str:
    stats = cell.stats
    if cell.nan:
        return NAN
    if stats.mean is None:
        return style.missing
    mean = unit.format(stats.mean)
    std = unit.format(stats.std) if stats.std is not None else style.missing
    text = f"{mean}{style.pm}{std}"
    if cell.best:
        text = style.bold(text)
    if stats.n != row_n:
        text += f" (n={stats.n})"
    return text


def _p_text(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def _delta_text(cell: DeltaCell, style: Style, unit: Unit = UNIT_POINTS) -> str:
    if cell.delta is None:
        return style.missing
    if math.isnan(cell.delta):
        return NAN
    parts = [unit.format(cell.delta, signed=True)]
    result = cell.interval
    if result is not None:
        if result.low is None:
            parts[0] += " (1 seed)"
        elif style.p_values:
            parts.append(f"[{unit.format(result.low, signed=True)}, {unit.format(result.high, signed=True)}]")
            parts.append(_p_text(result.p_value) + ("" if result.significant else f" {NOT_SIGNIFICANT}"))
        else:
            parts[0] += "" if result.significant else f" {NOT_SIGNIFICANT}"
            parts.append(f"[{unit.format(result.low, signed=True)}, {unit.format(result.high, signed=True)}]")
    return style.stack([style.literal(part.replace("-", style.minus)) for part in parts])


def _name(name: str, marks: Sequence[str], style: Style) -> str:
    """An algorithm's name with its row marks."""
    return style.escape(name) + (style.mark("".join(marks)) if marks else "")


def _key_cells(values: Sequence[str | None], table: ReportTable, style: Style) -> list[str]:
    by_key = dict(zip(table.row_keys.keys, values))
    return [style.missing if by_key.get(key) is None else style.escape(by_key[key]) for key in table.row_keys.shown]


SEED_STD_LABEL = "seed std (pooled)"


def label_columns(table: ReportTable) -> int:
    """Left-aligned columns before the numbers: Size, Algorithm and the shown row keys."""
    return 2 + len(table.row_keys.shown)


def summary_lines(table: ReportTable, style: Style) -> tuple[list[str], list[list[str]], list[int]]:
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
                        + [str(row.n)] + [_cell_text(row.cells[k], row.n, style, table.unit) for k in table.value_keys])
        seed_line = [table.unit.format(group.seed_std[k]) or style.missing for k in table.value_keys]
        rows.append([style.escape(group.model_size), SEED_STD_LABEL] + blank_keys + [""] + seed_line)
    return header, rows, starts


def _seed_order(seed: str) -> tuple:
    return (0, int(seed), seed) if seed.lstrip("-").isdigit() else (1, 0, seed)


def per_run_lines(table: ReportTable, style: Style) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, indices of rows that start a model size) of the per-run table (``--per-seed``): every run of every
    row, by seed, with its own value of each column (:attr:`ReportTable.run_values`), in the table's unit."""
    averaged = table.row_keys.averaged
    header = (["Size", "Algorithm"] + [style.escape(label) for label in table.key_labels] + ["seed"]
              + [style.escape(table.row_keys.labels[key]) for key in averaged] + ["run id"]
              + [style.escape(table.label(k)) for k in table.value_keys])
    rows: list[list[str]] = []
    starts: list[int] = []
    for group in table.groups:
        starts.append(len(rows))
        for row in group.rows:
            for run in sorted(row.runs, key=lambda r: (_seed_order(r.seed), *table.row_keys.replicate(r)[1:])):
                values = table.run_values.get(run.mlflow_run_id, {})
                cells = []
                for key in table.value_keys:
                    value = values.get(key)
                    cells.append(style.missing if value is None else NAN if math.isnan(value) else table.unit.format(value))
                rows.append([style.escape(group.model_size), _name(row.algorithm, row.marks, style)]
                            + _key_cells(row.key_values, table, style) + [style.escape(run.seed)]
                            + [style.escape(str(run.params.get(key, style.missing))) for key in averaged]
                            + [style.escape(run.run_id)] + cells)
    return header, rows, starts


def per_run_caption(table: ReportTable) -> str:
    return (f"{table.metric} in {_unit_words(table)}, one line per run: the values each row's mean ± std is computed from "
            "(run id: the lgrpo run id; results.csv has every metric of every run)")


def _power_cells(table: ReportTable, group, style: Style) -> tuple[list[str], list[str]]:
    """The MDE row and the seeds-needed row of a model size (``—`` where no std could be pooled)."""
    mde, seeds = [], []
    for key in table.value_keys:
        summary = group.power.get(key)
        if summary is None:
            mde.append(style.missing)
            seeds.append(style.missing)
            continue
        mde.append(f"{table.unit.format(summary.mde)} (n={summary.n})" if summary.mde is not None else style.missing)
        seeds.append(style.literal(" / ".join(f">{MAX_SEEDS}" if summary.seeds_for[e] is None else str(summary.seeds_for[e])
                                              for e in summary.effects)))
    return mde, seeds


def delta_lines(table: ReportTable, style: Style, compact: bool = False) -> tuple[list[str], list[list[str]], list[int]]:
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
                        + [_delta_text(delta_row.cells[k], style, table.unit) for k in table.value_keys])
        if table.statistics:
            mde, seeds = _power_cells(table, group, style)
            rows.append([style.escape(group.model_size), style.escape(MDE_LABEL)] + blank + mde)
            rows.append([style.escape(group.model_size), style.escape(seeds_label(table.unit))] + blank + seeds)
    return header, rows, starts


def _small_benchmarks(table: ReportTable) -> str:
    small = [c for c in table.columns if c.n_problems and c.n_problems < SMALL_BENCHMARK]
    return "; ".join(f"{c.label}: {c.n_problems} problems, ± 1 problem = {100 / c.n_problems:.1f} points" for c in small)


def summary_caption(table: ReportTable) -> str:
    keys = table.row_keys
    averaged = ""
    if keys.averaged:
        averaged = (f"; rows also average over {', '.join(keys.labels[k] for k in keys.averaged)} (--average-over: "
                    f"treated as replicates on purpose, n counts them)")
    by_keys = f"; one row per {', '.join(table.key_labels)}" if table.key_labels else ""
    small = _small_benchmarks(table)
    better = {True: "; best per column and model size in bold", False: "; best (lowest) per column and model size in bold",
              None: "; no best marked (no better direction)"}[table.higher_is_better]
    return (f"{table.metric} in {_unit_words(table)}, mean ± std over seeds (n = seeds per row; a cell with fewer shows its own n)"
            f"{by_keys}{averaged}{better}; — = missing" + (f"; {small}" if small else ""))


def _unit_words(table: ReportTable) -> str:
    """``points`` (a fraction × 100), ``tokens``, ``reward (last logged value)``, ..."""
    last = " (last logged value of each run)" if any(c.source == "train" for c in table.columns) else ""
    return table.unit.name + last


def _gain_words(unit: Unit) -> str:
    if unit == UNIT_POINTS:
        return "a 1- or 2-point gain"
    return "a gain of " + " or ".join(f"{unit.shown(e):g}" for e in unit.effects) + f" {unit.name}"


def delta_caption(table: ReportTable) -> str:
    level = f"{100 * table.confidence:g} %"
    matched = ", ".join(["model size", *table.matched_labels])
    text = f"Δ vs {table.baseline} in {table.unit.name}: difference of seed means, each row against the {table.baseline} row with the same {matched}"
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
            f"one-sided {100 * STD_CONFIDENCE:g} % upper confidence limit (χ²) of the pooled std of the paired per-seed "
            "differences (or of the pooled seed std when unpaired), so at least the true MDE in "
            f"{100 * STD_CONFIDENCE:g} % of pilots; "
            f"{seeds_label(table.unit)}: seeds needed to detect {_gain_words(table.unit)}, from the pooled std itself" + (f". {small}" if small else ""))
