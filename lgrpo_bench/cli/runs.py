"""Commands about single runs and the store: train, config, algorithms, ui."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from lgrpo_bench.cli.common import app, config_app, fail_input, library_output, offline_defaults, serve_until_stopped


@app.command()
def train(
    config_file: Path = typer.Argument(..., help="Run YAML (see `lgrpo-bench config schema`)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key: --set train.learning_rate=2e-6"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print the final line"),
) -> None:
    """Train one run (resumes an interrupted one, skips a finished one). Example: lgrpo-bench train experiments/tiny_lambda.yaml"""
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.runs.resolve import load_run

    offline_defaults()
    try:
        config = load_run(config_file, set_ or [])
    except ConfigError as error:
        fail_input(str(error))
    from lgrpo_bench.runs.lifecycle import EvaluationFailed, RunDidNotLearn, execute_run
    from lgrpo_bench.runs.owner import FolderConflict
    from lgrpo_bench.runs.resolve import prepare_run
    from lgrpo_bench.tracking import TrackingUnavailable
    from lgrpo_bench.tracking.reader import StoreProblem
    from lgrpo_bench.tracking.record import RunLayout

    prepared = prepare_run(config)
    problem = failure = None
    with library_output(RunLayout.for_config(prepared.config, prepared.run_id).run_log):
        try:
            outcome = execute_run(prepared.config, prepared.run_id, emit=None if quiet else typer.echo)
        except (TrackingUnavailable, NotImplementedError) as error:
            problem = str(error)
        except (EvaluationFailed, RunDidNotLearn, FolderConflict, StoreProblem) as error:
            failure = str(error)
    if problem is not None:
        fail_input(problem)
    if failure is not None:
        typer.echo(f"error: {failure}", err=True)
        raise typer.Exit(1)
    if quiet:
        what = f"{outcome.state}" if outcome.trained_now else f"{outcome.state} (nothing to train)"
        typer.echo(f"run {outcome.run_id}: {what}; MLflow run {outcome.mlflow_run_id}")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of a run config (for editors). Example: lgrpo-bench config schema > run.schema.json"""
    from lgrpo_bench.config import RunConfig

    typer.echo(json.dumps(RunConfig.model_json_schema(), indent=2, ensure_ascii=False))


@config_app.command("show")
def config_show(
    config_file: Path = typer.Argument(..., help="Run YAML"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key: --set algorithm.lam_init=0.5"),
) -> None:
    """Validate a run config and print it resolved, with its run id. Example: lgrpo-bench config show run.yaml"""
    from lgrpo_bench.algorithms.presets import algorithm_of
    from lgrpo_bench.config import ConfigError, dump_yaml
    from lgrpo_bench.runs.resolve import load_run, run_id

    try:
        config = load_run(config_file, set_ or [])
    except ConfigError as error:
        fail_input(str(error))
    typer.echo(f"# run id: {run_id(config)}")
    algorithm = algorithm_of(config)
    typer.echo("# algorithm: " + ", ".join(f"{k}={v}" for k, v in algorithm.identity().items() if v is not None))
    for note in algorithm.notes:
        typer.echo(f"# note: {note}")
    typer.echo(dump_yaml(config))


@app.command()
def algorithms() -> None:
    """List the presets (algorithm.name) and the four axes with their choices. Example: lgrpo-bench algorithms"""
    from lgrpo_bench.algorithms.presets import AXES, PRESETS

    typer.echo("presets (algorithm.name): aggregation × surrogate × advantage × group_filter")
    for name, preset in PRESETS.items():
        typer.echo(f"  {name:12s} {preset.aggregation} × {preset.surrogate} × {preset.advantage} × {preset.group_filter}"
                   f"\n  {'':12s} {preset.summary}\n  {'':12s} ref: {preset.reference}")
    for axis, choices in AXES.items():
        typer.echo(f"\naxis algorithm.{axis}:")
        for value, description in choices.items():
            typer.echo(f"  {value:20s} {description}")


@app.command()
def ui(
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Store (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)"),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps the UI private to this machine"),
    port: int = typer.Option(5000, help="Port"),
    grid: Optional[str] = typer.Option(None, "--grid", help="Print the URL of this grid's run list: its training runs "
                                       "grouped by configuration, with their eval metrics"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Print the URL of this experiment's runs table"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="uvicorn worker processes (default: MLflow's, 4)"),
) -> None:
    """Start the MLflow UI on the configured store; Ctrl-C (or SIGTERM) stops it and every process it started.
    Example: lgrpo-bench ui --grid quickstart"""
    from lgrpo_bench.tracking import TrackingUnavailable, resolve_tracking_uri
    from lgrpo_bench.ui.views import start_ui, ui_base_url, ui_links

    offline_defaults()
    uri = resolve_tracking_uri(tracking_uri)
    try:
        links = ui_links(uri, grid, experiment, is_config_key=_is_config_key)
    except (TrackingUnavailable, ValueError) as error:
        fail_input(str(error))
    base = ui_base_url(host, port)

    def announce() -> None:
        typer.echo(f"MLflow UI for {uri} at {base} (Ctrl-C stops it)")
        for label, route in links:
            typer.echo(f"{label}: {base}/{route}")

    serve_until_stopped(lambda log: start_ui(uri, host=host, port=port, workers=workers, stdout=log, stderr=log),
                        base, announce, what="the MLflow UI")


def _is_config_key(key: str) -> bool:
    """A param that can tell a grid's configurations apart (as a report's row keys); reports imported on use only."""
    from lgrpo_bench.reports.keys import is_row_key_candidate

    return is_row_key_candidate(key)
