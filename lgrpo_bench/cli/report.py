"""``lgrpo-bench report``: tables, statistics and plots of finished runs, read from the MLflow store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from lgrpo_bench.cli.common import app, fail_input, make_console
from lgrpo_bench.reports import DEFAULT_BASELINE, DEFAULT_METRIC


@app.command()
def report(
    experiment: Optional[List[str]] = typer.Option(None, "--experiment", help="MLflow experiment(s) to report (repeatable); default: all"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="Grid YAML: report the runs of its current points (run ids of "
                                        "the file as it is now)"),
    all_versions: bool = typer.Option(False, "--all-versions", help="With --grid: also the runs of earlier versions of the "
                                      "grid file (same grid name, run ids no longer in the file), keyed by the values that differ"),
    filter_string: Optional[str] = typer.Option(None, "--filter", help="MLflow search filter, e.g. \"tags.`lgrpo.grid` = 'x'\""),
    formats: str = typer.Option("md", "--format", help="Comma-separated: md, latex, csv, html"),
    out: Path = typer.Option(Path("report"), "--out", help="Output folder"),
    baseline: str = typer.Option(DEFAULT_BASELINE, "--baseline", help="Algorithm the Δ columns compare against"),
    metric: str = typer.Option(DEFAULT_METRIC, "--metric", help="Metric of the table, in its unit from the schema: acc (every "
                               "benchmark; or pass@k, mean_length, ...), eval/<benchmark>/<metric> (one benchmark), or "
                               "train/<name> (last logged value, e.g. train/reward_mean); one no run logged is an error "
                               "listing those they hold"),
    split: bool = typer.Option(False, "--split", help="Show differently evaluated variants of a benchmark as separate columns instead of refusing"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the figures (PNG; also PDF with --format latex) and log them to the grid run"),
    statistics: bool = typer.Option(True, "--stats/--no-stats", help="Δ intervals (t over seeds) and the power rows "
                                    "(minimum detectable effect, seeds needed)"),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Comma-separated config keys that make the rows "
                                           "(dotted or last part, e.g. lam_init,learning_rate); default: every key that "
                                           "varies among the runs, except seeds"),
    average_over: Optional[str] = typer.Option(None, "--average-over", help="Comma-separated config keys to treat as "
                                               "replicates like the seed, on purpose (said in the caption)"),
    per_seed: bool = typer.Option(False, "--per-seed", help="Also list every run's value (one line per seed) under the "
                                  "tables, in the terminal, table.md and report.html"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Store (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)"),
    plain: bool = typer.Option(False, "--plain", help="Print the tables as tab-separated values on stdout, each under a "
                               "'# <name>: <title>' line saying which table it is (summary, deltas, per run); other "
                               "lines go to stderr"),
) -> None:
    """Write the paper table (one row per configuration, mean ± std over seeds, Δ vs baseline with t intervals over
    seeds, minimum detectable effect) and plots.

    Example: lgrpo-bench report --grid experiments/quickstart.yaml --format md,latex,csv,html --out report
    """
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.reports import FORMATS, ReportInputError, generate_report
    from lgrpo_bench.reports.grids import grid_selection
    from lgrpo_bench.reports.render import plain_tables, rich_tables
    from lgrpo_bench.tracking import TrackingUnavailable

    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if not chosen or unknown:
        fail_input(f"--format {formats!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    if all_versions and grid is None:
        fail_input("--all-versions needs --grid GRID.yaml (the versions are those of a grid file)")
    grid_name = None
    experiments = list(experiment or [])
    uri = tracking_uri
    key_order: list[str] = []
    run_ids = None
    if grid is not None:
        try:
            selection = grid_selection(grid)
        except ConfigError as error:
            fail_input(str(error))
        grid_name, key_order, run_ids = selection.name, list(selection.key_order), selection.run_ids
        uri = uri or selection.tracking_uri
        experiments = experiments or list(selection.experiments)

    def keys_of(option: str, value: str | None) -> list[str] | None:
        if value is None:
            return None
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if not keys:
            fail_input(f"{option} {value!r}: give comma-separated config keys, e.g. lam_init,learning_rate")
        return keys

    chosen_keys = keys_of("--group-by", group_by)
    averaged_keys = keys_of("--average-over", average_over) or []
    try:
        result = generate_report(
            uri, experiments=experiments or None, grid=grid_name, run_ids=run_ids, all_versions=all_versions,
            filter_string=filter_string, formats=chosen, out_dir=out,
            baseline=baseline, metric=metric, split=split, plots=plots, statistics=statistics, group_by=chosen_keys,
            average_over=averaged_keys, key_order=key_order, per_seed=per_seed,
        )
    except (ReportInputError, TrackingUnavailable) as error:
        fail_input(str(error))
    console = make_console(plain)
    if plain:  # the rows from the table's data: TSV on stdout under a "# name: title" line, captions on stderr
        for number, text in enumerate(plain_tables(result.table, per_seed=per_seed)):
            sys.stdout.write(("\n" if number else "") + "\n".join([text.heading, *("\t".join(row) for row in [text.header, *text.rows])])
                             + "\n")
            sys.stdout.flush()
            console.print(text.caption, markup=False, highlight=False)
    else:
        for table in rich_tables(result.table, per_seed=per_seed):
            console.print(table)
    for note in result.table.notes:
        console.print(f"- {note}", markup=False, highlight=False)
    files, runs = len(result.files), len(result.data.runs)
    console.print(f"{runs} run{'' if runs == 1 else 's'} of {result.data.location}; wrote {files} file{'' if files == 1 else 's'} to {out}",
                  markup=False, highlight=False)
    if result.logged_to:
        console.print(f"plots logged to grid run(s) {', '.join(result.logged_to)} under report/plots", markup=False,
                      highlight=False)
