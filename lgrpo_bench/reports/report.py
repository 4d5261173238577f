"""A report end to end: load from the store, build the table, write the formats and the plots.

    from lgrpo_bench.reports import generate_report
    result = generate_report("sqlite:///mlflow.db", grid="quickstart", formats=["md", "html"], out_dir="report")

Files written under ``out_dir`` (only those asked for): ``table.md``; ``table.tex`` and ``deltas.tex``;
``results.csv`` (tidy) and ``deltas.csv``; ``report.html`` (self-contained, titled by the grid or experiments);
``plots/<name>.png`` (and ``.pdf`` with the ``latex`` format; :data:`PLOT_NAMES`), also logged as artifacts under ``report/plots/`` of the grid parent
run when every reported run belongs to that one grid. Under the tables, ``table.md`` and ``report.html`` carry the
evaluation-statistics sections where they apply (:mod:`.eval_sections`: evaluation sampling as a nested design, the
per-question paired Δ of one-seed comparisons, IQM and probability of improvement across benchmarks), with
``plots/performance_profile.png`` when there are two benchmarks or more.

Imports: without plots nothing here imports MLflow (SQLite stores), matplotlib, pandas or ``scipy.stats``;
``lgrpo-bench report --no-plots`` of the quickstart's 15 runs stays a light process (docs/reports.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from statistics import fmean
from dataclasses import dataclass, field
from pathlib import Path

from lgrpo_bench.algorithms.presets import HYPERPARAMETERS
from lgrpo_bench.reports import DEFAULT_BASELINE, DEFAULT_METRIC, render
from lgrpo_bench.reports.loader import NO_GRID, ReportData, ReportInputError, RunRecord, Store, load_histories, load_runs, open_store
from lgrpo_bench.reports.eval_sections import PERFORMANCE_PROFILE, build_eval_sections
from lgrpo_bench.reports.stats import generated_tokens, learning_curve_mean
from lgrpo_bench.reports.table import ReportTable, build_table
from lgrpo_bench.reports.trl_settings import load_trl_settings, trl_settings_notes
from lgrpo_bench.tracking import schema as t

__all__ = [
    "FORMATS", "PLOT_CAPTIONS", "PLOT_NAMES", "ReportResult", "generate_report", "load_report_table", "print_summary_table",
    "report_figures",
]

FORMATS: tuple[str, ...] = ("md", "latex", "csv", "html")
PLOT_NAMES: tuple[str, ...] = ("training_curves", "heldout_accuracy", "token_preference", "accuracy_vs_compute")
PLOT_CAPTIONS: dict[str, str] = {
    "training_curves": "Training curves: mean over each row's seeds, band ±1 std; one colour, line style and marker per table row.",
    "heldout_accuracy": "Greedy held-out accuracy during training (train/heldout_acc), mean over seeds ±1 std; the table's "
                        "Sample eff. column is the time-average of each run's curve (given in the legend).",
    "token_preference": "Weight per token relative to the token mean, for one group of completions spread over the lengths "
                        "(λ-GRPO at each row's mean final λ); lines with the same weights are drawn on top of each other and named.",
    "accuracy_vs_compute": "Accuracy against the tokens generated in training: one point per run, one colour and marker per table row.",
}
_GRID_ARTIFACT_DIR = "report"


@dataclass
class ReportResult:
    table: ReportTable
    data: ReportData
    files: list[Path] = field(default_factory=list)
    logged_to: list[str] = field(default_factory=list)
    """MLflow run ids of the grid parent runs the plots were logged to: those of the grid every reported run
    belongs to (:attr:`ReportData.grid_parents`)."""


def load_report_table(
    tracking: Store | str | None = None,
    *,
    experiments: Sequence[str] | None = None,
    grid: str | None = None,
    run_ids: Collection[str] | None = None,
    all_versions: bool = False,
    filter_string: str | None = None,
    baseline: str = DEFAULT_BASELINE,
    metric: str = DEFAULT_METRIC,
    split: bool = False,
    statistics: bool = True,
    group_by: Sequence[str] | None = None,
    average_over: Sequence[str] = (),
    key_order: Sequence[str] = (),
    extra_histories: Sequence[str] = (),
) -> tuple[ReportTable, ReportData, dict[str, dict[str, tuple[list[int], list[float]]]]]:
    """(table, runs, histories) of a selection: the library entry point for notebooks and other tools.

    ``statistics=False``: Δ without intervals and power rows. ``group_by`` / ``average_over`` / ``key_order``:
    the row keys (:func:`~lgrpo_bench.reports.table.build_table`). ``extra_histories``: more metric histories
    to load with ``train/heldout_acc`` (``{metric: {MLflow run id: (steps, values)}}``). ``run_ids`` / ``all_versions``:
    the grid file's current run ids, and whether runs of its earlier versions join them (:func:`~.loader.load_runs`);
    a note counts the runs left out, or names the keys that tell the versions apart.
    """
    client = open_store(tracking)
    data = load_runs(client, experiments, grid=grid, filter_string=filter_string, run_ids=run_ids, all_versions=all_versions)
    run_ids = [run.mlflow_run_id for run in data.runs]
    histories = load_histories(client, run_ids, list(dict.fromkeys([t.TRAIN_HELDOUT_ACC, *extra_histories])))
    table = build_table(
        data.runs, metric=metric, baseline=baseline, heldout_curves=histories[t.TRAIN_HELDOUT_ACC], split=split,
        statistics=statistics, group_by=group_by, average_over=average_over, key_order=key_order,
    )
    if data.skipped:
        left_out = ", ".join(f"{count} {state}" for state, count in sorted(data.skipped.items()))
        table.notes.append(f"runs left out (not finished): {left_out}")
    table.notes += _versions_notes(table, data)
    table.notes += trl_settings_notes(data.runs, load_trl_settings(client, data.runs))
    if data.from_elsewhere:
        made = ", ".join(f"{count} by {'runs outside any grid' if name == NO_GRID else f'grid {name}'}"
                         for name, count in sorted(data.from_elsewhere.items()))
        table.notes.append(f"{sum(data.from_elsewhere.values())} of the {len(data.runs)} runs of this grid's points were "
                           f"made first elsewhere ({made}) and are reused here")
    return table, data, histories


def _versions_notes(table: ReportTable, data: ReportData) -> list[str]:
    """The line about runs of earlier versions of the grid: left out, or included and told apart by which keys."""
    earlier = data.earlier_versions
    if not data.earlier_count:
        return []
    if not data.all_versions:
        return [f"{data.earlier_count} runs of earlier versions of this grid are not shown; lgrpo-bench report "
                "--all-versions includes them"]
    earlier_ids = {run.mlflow_run_id for run in earlier}
    current = [run for run in data.runs if run.mlflow_run_id not in earlier_ids]
    differing = [table.row_keys.labels[key] for key in table.row_keys.keys
                 if {run.params.get(key) for run in earlier} != {run.params.get(key) for run in current}]
    return [f"{len(earlier)} runs of earlier versions of this grid are included (--all-versions), keyed by the values that differ"
            + (f": {', '.join(differing)}" if differing else "")]


def generate_report(
    tracking: Store | str | None = None,
    *,
    experiments: Sequence[str] | None = None,
    grid: str | None = None,
    run_ids: Collection[str] | None = None,
    all_versions: bool = False,
    filter_string: str | None = None,
    formats: Sequence[str] = ("md",),
    out_dir: str | Path = "report",
    baseline: str = DEFAULT_BASELINE,
    metric: str = DEFAULT_METRIC,
    split: bool = False,
    plots: bool = True,
    statistics: bool = True,
    group_by: Sequence[str] | None = None,
    average_over: Sequence[str] = (),
    key_order: Sequence[str] = (),
    log_to_grid: bool = True,
    per_seed: bool = False,
) -> ReportResult:
    """Load, build and write a report (see the module doc for the files). Raises ``ReportInputError``.

    ``per_seed``: ``table.md`` and ``report.html`` also list every run's value of each column."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ReportInputError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    client = open_store(tracking)
    curve_metrics = ("train/reward_mean", "train/completion_length_mean", "train/entropy", "train/lambda") if plots else ()
    table, data, histories = load_report_table(
        client, experiments=experiments, grid=grid, run_ids=run_ids, all_versions=all_versions, filter_string=filter_string,
        baseline=baseline, metric=metric,
        split=split, statistics=statistics, group_by=group_by, average_over=average_over, key_order=key_order,
        extra_histories=curve_metrics,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ReportResult(table, data)
    images: dict[str, bytes] = {}
    plot_files: list[Path] = []
    sections = build_eval_sections(table, client)  # nested design, one-seed per-question Δ, across benchmarks: if they apply
    profile_png = None
    if plots:
        for name, figure in report_figures(table, data.runs, histories).items():
            paths, png = _save(figure, out / "plots", name, pdf="latex" in formats)
            plot_files += paths
            images[name] = png
        if (profile := sections.profile_figure()) is not None:
            paths, profile_png = _save(profile, out / "plots", PERFORMANCE_PROFILE, pdf="latex" in formats)
            plot_files += paths
        result.files += plot_files
    writers = {
        "md": lambda: {"table.md": render.to_markdown(table, per_seed=per_seed) + sections.markdown()},
        "latex": lambda: {"table.tex": render.to_latex(table)} | ({"deltas.tex": d} if (d := render.to_latex_deltas(table)) else {}),
        "csv": lambda: {"results.csv": render.results_csv(table, data.runs, _efficiency(data.runs, histories)),
                        "deltas.csv": render.deltas_csv(table)},
        "html": lambda: {"report.html": sections.into_html(render.to_html(
            table, images, title=f"lgrpo-bench report: {data.title}", captions=PLOT_CAPTIONS, per_seed=per_seed,
            subtitle=f"{len(data.runs)} run{'' if len(data.runs) == 1 else 's'} of {data.location}, in the MLflow store {client.uri}"), profile_png)},
    }
    for fmt in formats:
        for filename, text in writers[fmt]().items():
            path = out / filename
            path.write_text(text, encoding="utf-8")
            result.files.append(path)
    if plots and log_to_grid and data.grid_parents:
        from lgrpo_bench.tracking.artifacts import log_files

        for grid_run in data.grid_parents:
            log_files(grid_run, data.grid_artifact_uris.get(grid_run), plot_files, f"{_GRID_ARTIFACT_DIR}/plots",
                      client.mlflow_client)
            result.logged_to.append(grid_run)
    return result


def _save(figure, folder: Path, name: str, *, pdf: bool):
    from lgrpo_bench.reports.plots import save_figure

    return save_figure(figure, folder, name, pdf=pdf)


def _efficiency(runs: Sequence[RunRecord], histories) -> dict[str, float | None]:
    curves = histories.get(t.TRAIN_HELDOUT_ACC, {})
    return {run.mlflow_run_id: learning_curve_mean(*curves[run.mlflow_run_id]) for run in runs if run.mlflow_run_id in curves}


def _int_param(run: RunRecord, key: str) -> int | None:
    try:
        return int(run.params[key])
    except (KeyError, ValueError):
        return None


def report_figures(table: ReportTable, runs: Sequence[RunRecord], histories, names: Sequence[str] = PLOT_NAMES) -> dict:
    """``{name: matplotlib Figure}`` for the ``names`` asked (of :data:`PLOT_NAMES`), from loaded data.

    ``histories`` as :func:`load_report_table` returns them (with the curve metrics in ``extra_histories``).
    One series per table row (algorithm and row keys, never several configurations as one line), named in the
    legend, in the same style in every figure: training curves (mean ± std over the row's seeds), held-out accuracy
    curves (``train/heldout_acc``, the data behind Sample eff.), the implied token preference (λ-GRPO at the
    mean final ``train/lambda`` of the row's runs; G, L_max and r from the runs' params), accuracy vs generated
    tokens (Σ steps ``train/completion_length_mean`` × prompts_per_step × num_generations; ``train/num_tokens``
    when those params are missing).
    """
    from lgrpo_bench.reports import plots

    multi_size = len({run.model_size for run in runs}) > 1
    row_of = table.row_of()

    def label(run: RunRecord) -> str:
        row = row_of.get(run.mlflow_run_id)
        details = [run.model_size] if multi_size else []
        if row is not None and row.keys_text:
            details.append(row.keys_text)
        return f"{run.algorithm} ({', '.join(details)})" if details else run.algorithm

    curves: dict[str, dict[str, list]] = {}
    for metric in plots.CURVE_METRICS:
        per_run = histories.get(metric, {})
        for run in runs:
            if run.mlflow_run_id in per_run:
                curves.setdefault(metric, {}).setdefault(label(run), []).append(per_run[run.mlflow_run_id])
    figures = {}
    if "training_curves" in names:
        figures["training_curves"] = plots.training_curves_figure(curves)
    if "heldout_accuracy" in names:
        heldout: dict[str, list] = {}
        per_run = histories.get(t.TRAIN_HELDOUT_ACC, {})
        for run in runs:
            if run.mlflow_run_id in per_run:
                heldout.setdefault(label(run), []).append(per_run[run.mlflow_run_id])
        figures["heldout_accuracy"] = plots.heldout_accuracy_figure(heldout)
    if "token_preference" in names:
        figures["token_preference"] = _token_preference(runs, label)
    if "accuracy_vs_compute" in names:
        figures["accuracy_vs_compute"] = _accuracy_vs_compute(table, runs, histories, label)
    return figures


def _token_preference(runs: Sequence[RunRecord], label):
    from lgrpo_bench.algorithms import ALGORITHMS
    from lgrpo_bench.reports import plots

    algorithms = [a for a in dict.fromkeys(run.algorithm for run in runs) if a in ALGORITHMS]
    lambdas: dict[str, list[float]] = {}
    for run in runs:
        if ALGORITHMS.get(run.algorithm) is not None and ALGORITHMS[run.algorithm].uses_lambda:
            lam = run.train_metrics.get(t.TRAIN_LAMBDA)
            if lam is not None:
                lambdas.setdefault(label(run), []).append(lam)
    group_size = _most_common([_int_param(r, "train.num_generations") for r in runs]) or 8
    max_length = _most_common([_int_param(r, "train.max_completion_length") for r in runs]) or 512
    r_values = []
    for run in runs:
        try:
            r_values.append(float(run.params["algorithm.r"]))
        except (KeyError, ValueError):
            pass
    return plots.token_preference_figure(
        algorithms, group_size=group_size, max_completion_length=max_length,
        r=_most_common(r_values) or HYPERPARAMETERS["r"].default, lambdas={k: fmean(v) for k, v in lambdas.items()},
    )


def _accuracy_vs_compute(table: ReportTable, runs: Sequence[RunRecord], histories, label):
    from lgrpo_bench.reports import plots

    lengths = histories.get(t.TRAIN_COMPLETION_LENGTH_MEAN, {})
    by_size: dict[str, dict[str, list[tuple[float, float]]]] = {}
    column_keys = [c.key for c in table.columns]
    for run in runs:
        accuracy = _run_accuracy(table, run)
        per_step = (_int_param(run, "train.prompts_per_step") or 0) * (_int_param(run, "train.num_generations") or 0)
        if run.mlflow_run_id in lengths and per_step:
            tokens = generated_tokens(lengths[run.mlflow_run_id][1], per_step)
        else:
            tokens = run.train_metrics.get("train/num_tokens")
        if accuracy is not None and tokens is not None:
            by_size.setdefault(run.model_size, {}).setdefault(label(run), []).append((tokens, accuracy))
    ylabel = (f"{table.metric} ({table.unit.name}, "
              f"{'average over benchmarks' if table.has_average else column_keys[0] if column_keys else '?'})")
    return plots.accuracy_vs_compute_figure(by_size, ylabel)


def _run_accuracy(table: ReportTable, run: RunRecord) -> float | None:
    """The run's benchmark average (or its only column) of the table metric, in the table's unit; ``None`` when
    incomplete."""
    values = [table.run_values.get(run.mlflow_run_id, {}).get(c.key) for c in table.columns]
    if not values or any(v is None for v in values):
        return None
    if table.has_average or len(values) == 1:
        return table.unit.shown(fmean(values))
    return None


def _most_common(values):
    present = [v for v in values if v is not None]
    return max(set(present), key=present.count) if present else None


def print_summary_table(
    tracking: Store | str | None = None,
    experiments: Sequence[str] | None = None,
    grid: str | None = None,
    console=None,
    *,
    baseline: str = DEFAULT_BASELINE,
    metric: str = DEFAULT_METRIC,
    statistics: bool = True,
    key_order: Sequence[str] = (),
    run_ids: Collection[str] | None = None,
) -> ReportTable | None:
    """Print the summary (and Δ) table with rich, e.g. at the end of ``lgrpo-bench run``.

    Reads the runs of ``experiments`` (default: all) and/or ``grid``; prints a one-line note instead of raising when there
    is nothing to report (the caller's work is done either way). ``key_order``: the grid's axis keys (order
    of the key columns); ``run_ids``: the grid file's current run ids (runs of earlier versions are counted in a
    note, not shown). Returns the table, or ``None``.
    """
    from rich.console import Console

    console = console or Console()
    try:
        table, _, _ = load_report_table(tracking, experiments=experiments, grid=grid, run_ids=run_ids,
                                        baseline=baseline, metric=metric, statistics=statistics, key_order=key_order)
    except ReportInputError as error:
        console.print(f"[yellow]no results table:[/yellow] {error}", markup=True, highlight=False)
        return None
    for rich_table in render.rich_tables(table):
        console.print(rich_table)
    for note in table.notes:
        console.print(f"- {note}", markup=False, highlight=False)
    return table
