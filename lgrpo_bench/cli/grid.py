"""Commands about experiment grids: run, plan, status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from lgrpo_bench.cli.common import EXIT_RUN_FAILED, app, fail_input, offline_defaults


def _load(grid_file: Path):
    from lgrpo_bench.config import ConfigError, load_grid

    try:
        return load_grid(grid_file)
    except ConfigError as error:
        fail_input(str(error))


def _console():
    from rich.console import Console

    return Console(soft_wrap=False)


@app.command("run")
def run(
    grid_file: Path = typer.Argument(..., help="Grid YAML (see experiments/quickstart.yaml)"),
    slots: Optional[int] = typer.Option(None, "--slots", min=1, help="Runs at once (local slots, Ray tasks in flight, "
                                        "SLURM array parallelism); default: the grid's executor"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run and the commands; launch and write nothing"),
) -> None:
    """Run a grid: everything not done yet, resuming interrupted runs. Example: lgrpo-bench run experiments/quickstart.yaml"""
    offline_defaults()
    expanded = _load(grid_file)
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.dispatch.orchestrator import GridBusy, build_jobs, run_grid
    from lgrpo_bench.dispatch.progress import plan_table, states_line
    from lgrpo_bench.dispatch.state import count_states
    from lgrpo_bench.tracking import TrackingUnavailable

    console = _console()
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
        console.print(f"[red]failed[/red] {rid}: {error} (log: {_run_dir(expanded, rid) / 'run.log'})", highlight=False)
    _print_results(expanded, console)
    if summary.exit_code:
        raise typer.Exit(EXIT_RUN_FAILED)


def _print_results(expanded, console) -> None:
    """The report's results table (mean ± std over seeds, Δ vs grpo) for the grid's finished runs."""
    from lgrpo_bench.reports import print_summary_table
    from lgrpo_bench.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(expanded.points[0].config.tracking.uri)
    print_summary_table(uri, grid=expanded.grid.name, console=console)


def _run_dir(expanded, rid: str) -> Path:
    point = next(p for p in expanded.points if p.run_id == rid)
    return Path(point.config.tracking.runs_dir).expanduser().resolve() / rid


@app.command("plan")
def plan(
    grid_file: Path = typer.Argument(..., help="Grid YAML"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per run) instead of a table"),
) -> None:
    """List a grid's runs with their state (new/queued/running/done/partial/failed); runs nothing. Example: lgrpo-bench plan experiments/quickstart.yaml"""
    expanded = _load(grid_file)
    from lgrpo_bench.dispatch.orchestrator import plan_grid
    from lgrpo_bench.dispatch.progress import plan_table, states_line
    from lgrpo_bench.dispatch.state import count_states
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
    console = _console()
    title = f"grid {expanded.grid.name}: {len(expanded.points)} runs on {expanded.grid.executor.kind}"
    if expanded.grid.description:
        title += f" — {expanded.grid.description}"
    console.print(plan_table(expanded, statuses, title=title))
    console.print(states_line(count_states(statuses.values())), highlight=False)


@app.command("status")
def status(
    grid_file: Optional[Path] = typer.Argument(None, help="Grid YAML; without it, every grid in the store"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Store (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Only this experiment (without a grid file)"),
) -> None:
    """Show a grid's progress from the store (states, step and reward of running runs, results). Example: lgrpo-bench status experiments/quickstart.yaml"""
    from lgrpo_bench.dispatch.progress import plan_table, read_log_progress, states_line
    from lgrpo_bench.dispatch.state import RUNNING, count_states
    from lgrpo_bench.tracking import TrackingUnavailable

    console = _console()
    if grid_file is None:
        try:
            _status_of_store(console, tracking_uri, experiment)
        except TrackingUnavailable as error:
            fail_input(str(error))
        return
    expanded = _load(grid_file)
    from lgrpo_bench.dispatch.orchestrator import plan_grid

    try:
        statuses = plan_grid(expanded)
    except TrackingUnavailable as error:
        fail_input(str(error))
    progress = {}
    for point in expanded.points:
        if statuses[point.run_id].state == RUNNING:
            found = read_log_progress(_run_dir(expanded, point.run_id) / "run.log")
            if found:
                progress[point.run_id] = found
    console.print(plan_table(expanded, statuses, title=f"grid {expanded.grid.name}", progress=progress))
    console.print(states_line(count_states(statuses.values())), highlight=False)
    _print_results(expanded, console)


def _status_of_store(console, tracking_uri: str | None, experiment: str | None) -> None:
    """Every grid parent run in the store, with its children's states (one search per experiment)."""
    from rich.table import Table

    from lgrpo_bench import tracking as t
    from lgrpo_bench.dispatch.state import (
        GRID_STATES,
        NEW,
        TRAIN_AND_GRID_FILTER,
        classify,
        read_worker,
        search_experiment_runs,
        worker_alive,
    )
    from lgrpo_bench.tracking.store import sqlite_path

    uri = t.resolve_tracking_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        console.print(f"no store at {uri}: nothing has run yet")
        return
    client = t.open_client(uri)
    experiments = [client.get_experiment_by_name(experiment)] if experiment else client.search_experiments()
    table = Table(title=f"grids in {uri}", title_justify="left")
    for column in ("grid", "experiment", "points", *GRID_STATES, "parent run"):
        table.add_column(column)
    found_any = False
    for exp in experiments:
        if exp is None:
            continue
        runs = search_experiment_runs(client, exp.experiment_id, TRAIN_AND_GRID_FILTER)
        grids = [r for r in runs if r.data.tags.get(t.TAG_KIND) == t.KIND_GRID]
        for parent in grids:
            name = parent.data.tags.get(t.TAG_GRID, "")
            runs_dir = Path(parent.data.tags.get("lgrpo.grid.runs_dir", "runs"))
            counts = dict.fromkeys(GRID_STATES, 0)
            children = {}
            for run in runs:
                tags = run.data.tags
                if tags.get(t.TAG_KIND) == t.KIND_TRAIN and tags.get(t.TAG_GRID) == name:
                    children.setdefault(tags.get(t.TAG_RUN_ID), run)
            for rid, run in children.items():
                alive = worker_alive(read_worker(runs_dir / str(rid)))
                state = classify(dict(run.data.tags), run.info.status, alive)[0]
                counts[state] += 1
            points = int(parent.data.tags.get("lgrpo.grid.n_points", len(children)))
            counts[NEW] += max(points - len(children), 0)
            table.add_row(name, exp.name, str(points), *(str(counts[s]) for s in GRID_STATES), parent.info.run_id)
            found_any = True
    if found_any:
        console.print(table)
    else:
        console.print(f"no grid has run in {uri}" + (f" (experiment {experiment!r})" if experiment else ""))
