"""Commands about single runs and the store: train, config, algorithms, ui."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from lgrpo_bench.cli.common import app, config_app, fail_input, offline_defaults


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
    from lgrpo_bench.runs.lifecycle import EvaluationFailed, execute_run
    from lgrpo_bench.runs.resolve import prepare_run
    from lgrpo_bench.tracking import TrackingUnavailable

    prepared = prepare_run(config)
    try:
        outcome = execute_run(prepared.config, prepared.run_id, emit=None if quiet else typer.echo)
    except (TrackingUnavailable, NotImplementedError) as error:
        fail_input(str(error))
    except EvaluationFailed as error:  # the evaluation process has printed why
        raise typer.Exit(error.returncode) from None
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
) -> None:
    """Start the MLflow UI on the configured store. Example: lgrpo-bench ui --port 5001"""
    from lgrpo_bench.tracking import resolve_tracking_uri, start_ui

    uri = resolve_tracking_uri(tracking_uri)
    process = start_ui(uri, host=host, port=port)
    typer.echo(f"MLflow UI for {uri} at http://{host}:{port} (Ctrl-C stops it)")
    try:
        process.wait()
    except KeyboardInterrupt:
        process.terminate()

