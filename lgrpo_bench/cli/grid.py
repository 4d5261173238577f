"""Commands about experiment grids: run, plan, status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from lgrpo_bench.cli.common import EXIT_RUN_FAILED, PLAIN_HELP, app, fail_input, make_console, offline_defaults
from lgrpo_bench.reports import DEFAULT_BASELINE, DEFAULT_METRIC


MAX_POINTS_HELP = "Refuse grids with more points than this (default 20,000; counted before anything is expanded)"
ALL_ROWS_HELP = "List every run in the table (default: at most 200 rows, runs with news first; the states line counts all; --plain lists every run)"
PLAN_ALL_ROWS_HELP = ALL_ROWS_HELP.replace("--plain lists", "--plain and --json list")  # plan alone has --json


def _load(grid_file: Path, max_points: int | None = None):
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.config.grid import DEFAULT_MAX_POINTS
    from lgrpo_bench.runs.resolve import load_grid

    try:
        return load_grid(grid_file, max_points=max_points or DEFAULT_MAX_POINTS)
    except ConfigError as error:
        fail_input(str(error))


@app.command("run")
def run(
    grid_file: Path = typer.Argument(..., help="Grid YAML (see experiments/quickstart.yaml)"),
    slots: Optional[int] = typer.Option(None, "--slots", min=1, help="Runs at once (local slots, Ray tasks in flight, "
                                        "SLURM array parallelism); default: the grid's executor"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run and the commands; launch and write nothing"),
    max_points: Optional[int] = typer.Option(None, "--max-points", min=1, help=MAX_POINTS_HELP),
    baseline: str = typer.Option(DEFAULT_BASELINE, "--baseline", help="Algorithm the results table's Δ compares against"),
    metric: str = typer.Option(DEFAULT_METRIC, "--metric", help="Metric of the results table: acc, eval/<benchmark>/<metric> or "
                               "train/<name> (as lgrpo-bench report --metric)"),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
) -> None:
    """Run a grid: everything not done yet, resuming interrupted runs. Example: lgrpo-bench run experiments/quickstart.yaml"""
    offline_defaults()
    expanded = _load(grid_file, max_points)
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.dispatch.orchestrator import GridBusy, build_jobs, run_grid
    from lgrpo_bench.dispatch.progress import plan_table, states_line
    from lgrpo_bench.dispatch.state import count_states
    from lgrpo_bench.tracking import TrackingUnavailable

    console = make_console(plain)
    try:
        summary = run_grid(expanded, slots=slots, dry_run=dry_run, console=console)
    except (ConfigError, GridBusy, TrackingUnavailable) as error:
        fail_input(str(error))
    if dry_run:
        console.print(plan_table(expanded, summary.statuses, title=f"grid {expanded.grid.name}: dry run"))
        from lgrpo_bench.dispatch.job import job_steps

        for job in build_jobs(expanded, summary.statuses, {}, write=False):
            for name, argv in job_steps(job, port=29500):
                console.print(f"{job.run_id} {name}: {' '.join(argv)}", highlight=False, soft_wrap=True)
        console.print(f"would run {len(summary.planned)}, skip {len(summary.skipped_done)} done, "
                      f"leave {len(summary.running_elsewhere)} running elsewhere; nothing launched")
        return
    console.print(f"grid {expanded.grid.name}: ran {len(summary.done) + len(summary.failed) + len(summary.cancelled)} "
                  f"in {summary.seconds:.1f} s — done {len(summary.done)}, failed {len(summary.failed)}, "
                  f"stopped {len(summary.cancelled)}; skipped {len(summary.skipped_done)} already done, "
                  f"{len(summary.running_elsewhere)} running elsewhere", highlight=False)
    console.print(f"states now: {states_line(count_states(summary.statuses.values()))}", highlight=False)
    for rid, error in summary.failed.items():
        console.print(f"[red]failed[/red] {rid}: {error} (log: {_layout(expanded, rid).run_log})", highlight=False)
    _print_results(expanded, console, baseline, metric)
    if summary.exit_code:
        raise typer.Exit(EXIT_RUN_FAILED)


def _print_results(expanded, console, baseline: str = DEFAULT_BASELINE, metric: str = DEFAULT_METRIC) -> None:
    """The report's results table (mean ± std over seeds, Δ vs baseline) for the finished runs of the grid's current points."""
    from lgrpo_bench.reports import print_summary_table
    from lgrpo_bench.reports.grids import selection_of
    from lgrpo_bench.tracking.store import resolve_tracking_uri

    selection = selection_of(expanded)
    print_summary_table(resolve_tracking_uri(selection.tracking_uri), experiments=selection.experiments, grid=selection.name,
                        console=console, baseline=baseline, metric=metric, key_order=selection.key_order,
                        run_ids=selection.run_ids)


def _layout(expanded, rid: str):
    from lgrpo_bench.tracking.record import RunLayout

    point = next(p for p in expanded.points if p.run_id == rid)
    return RunLayout.for_config(point.config, rid)


@app.command("plan")
def plan(
    grid_file: Path = typer.Argument(..., help="Grid YAML"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per run) instead of a table"),
    max_points: Optional[int] = typer.Option(None, "--max-points", min=1, help=MAX_POINTS_HELP),
    every_row: bool = typer.Option(False, "--all", help=PLAN_ALL_ROWS_HELP),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
) -> None:
    """List a grid's runs with their state (new/queued/running/trained/stopped/failed/pruned/done); runs nothing. Example: lgrpo-bench plan experiments/quickstart.yaml"""
    expanded = _load(grid_file, max_points)
    from lgrpo_bench.dispatch.state import plan_grid
    from lgrpo_bench.dispatch.progress import PLAN_TABLE_ROWS, plan_table, states_line
    from lgrpo_bench.dispatch.state import count_states, state_warnings
    from lgrpo_bench.tracking import TrackingUnavailable

    try:
        statuses = plan_grid(expanded)
    except TrackingUnavailable as error:
        fail_input(str(error))
    if as_json:
        rows = [{"index": p.index, "run_id": p.run_id, "values": p.values, "origin": p.origin,
                 "state": statuses[p.run_id].state, "detail": statuses[p.run_id].detail,
                 "mlflow_run_id": statuses[p.run_id].mlflow_run_id} for p in expanded.points]
        typer.echo(json.dumps({"grid": expanded.grid.name, "executor": expanded.grid.executor.kind, "runs": rows}, indent=1))
        return
    console = make_console(plain)
    title = f"grid {expanded.grid.name}: {len(expanded.points)} runs on {expanded.grid.executor.kind}"
    if expanded.grid.description:
        title += f" — {expanded.grid.description}"
    console.print(plan_table(expanded, statuses, title=title, limit=None if every_row or plain else PLAN_TABLE_ROWS))
    console.print(states_line(count_states(statuses.values())), highlight=False)
    for line in state_warnings(statuses):
        console.print(line, style="yellow", highlight=False)
    from lgrpo_bench.reports.power_lines import grid_power_lines  # what the grid's seeds can detect, from earlier runs

    for line in grid_power_lines(expanded.points, expanded.points[0].config.tracking.uri):
        console.print(line, highlight=False)


@app.command("status")
def status(
    grid_file: Optional[Path] = typer.Argument(None, help="Grid YAML; without it, every grid in the store"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Store (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Only this experiment (without a grid file)"),
    baseline: str = typer.Option(DEFAULT_BASELINE, "--baseline", help="Algorithm the results table's Δ compares against (with a grid file)"),
    metric: str = typer.Option(DEFAULT_METRIC, "--metric", help="Metric of each run's result column and of the results table "
                               "(with a grid file): acc, eval/<benchmark>/<metric> or train/<name>"),
    every_row: bool = typer.Option(False, "--all", help=ALL_ROWS_HELP),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
) -> None:
    """Show a grid's progress from the store (states, step and reward of running runs, each run's result, the results table). Example: lgrpo-bench status experiments/quickstart.yaml"""
    from lgrpo_bench.dispatch.progress import PLAN_TABLE_ROWS, plan_table, read_log_progress, result_columns, states_line
    from lgrpo_bench.dispatch.state import RUNNING, count_states, finished_runs, state_warnings
    from lgrpo_bench.tracking import TrackingUnavailable

    console = make_console(plain)
    if grid_file is None:
        try:
            _status_of_store(console, tracking_uri, experiment)
        except TrackingUnavailable as error:
            fail_input(str(error))
        return
    expanded = _load(grid_file)
    from lgrpo_bench.dispatch.state import plan_grid

    try:
        statuses = plan_grid(expanded)
    except TrackingUnavailable as error:
        fail_input(str(error))
    progress = {}
    for point in expanded.points:
        if statuses[point.run_id].state == RUNNING:
            found = read_log_progress(_layout(expanded, point.run_id).run_log)
            if found:
                progress[point.run_id] = found
    console.print(plan_table(expanded, statuses, title=f"grid {expanded.grid.name}", progress=progress,
                             limit=None if every_row or plain else PLAN_TABLE_ROWS, results=result_columns(statuses, metric)))
    console.print(states_line(count_states(statuses.values())), highlight=False)
    for line in state_warnings(statuses):
        console.print(line, style="yellow", highlight=False)
    if not finished_runs(statuses):  # nothing to tabulate yet: say so, not "check the experiment name"
        console.print(f"no results table yet: none of the grid's {len(statuses)} runs has finished training "
                      f"(it appears once one has; `lgrpo-bench status {grid_file}` again later)", highlight=False)
        return
    _print_results(expanded, console, baseline, metric)


def _status_of_store(console, tracking_uri: str | None, experiment: str | None) -> None:
    """Every grid parent run in the store, with its children's states."""
    from rich.table import Table

    from lgrpo_bench.dispatch.state import GRID_STATES, store_grids
    from lgrpo_bench.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    grids = store_grids(uri, experiment)
    if grids is None:
        console.print(f"no store at {uri}: nothing has run yet")
        return
    if not grids:
        console.print(f"no grid has run in {uri}" + (f" (experiment {experiment!r})" if experiment else ""))
        return
    table = Table(title=f"grids in {uri}", title_justify="left")
    for column in ("grid", "experiment", "points", *GRID_STATES, "parent run"):
        table.add_column(column)
    for grid in grids:
        table.add_row(grid.name, grid.experiment, str(grid.points), *(str(grid.counts[s]) for s in GRID_STATES),
                      grid.parent_run_id)
    console.print(table)
