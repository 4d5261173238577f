"""The ``eval`` command: evaluate a model (or a trained run) on math benchmarks through lm-eval."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import List, Optional

import typer

from lgrpo_bench.cli.common import PLAIN_HELP, app, echo_err, fail_input, library_output, make_console, offline_defaults

RUN_PREFIX = "run:"


def _split_benchmarks(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _print_table(result, plain: bool) -> None:
    from rich.table import Table

    skipped = any(bench.skipped for bench in result.benchmarks.values())
    columns = ["benchmark", "protocol", "n", "acc", "± stderr", "pass@k", "mean length"] + (["note"] if skipped else [])
    table = Table(title=f"{result.model} ({result.backend})")
    for column in columns:
        table.add_column(column, justify="left" if column in ("benchmark", "protocol", "note") else "right")
    for name, bench in result.benchmarks.items():
        metrics = bench.metrics
        passes = [key for key in metrics if key.startswith("pass@")]
        best = max(passes, key=lambda key: int(key.split("@")[1])) if passes else None
        stderr = metrics.get("acc_stderr", math.nan)
        cells = [
            name, bench.identity.get("protocol", ""), f"{int(metrics.get('n', 0))}", f"{metrics['acc']:.4f}",
            "n/a" if math.isnan(stderr) else f"{stderr:.4f}", f"{best} {metrics[best]:.4f}" if best else "",
            f"{metrics.get('mean_length', math.nan):.1f}",
        ]
        table.add_row(*cells, *(["skipped (logged before)" if bench.skipped else ""] if skipped else []))
    console = make_console(plain)
    console.print(table)
    if result.mlflow_run_id:
        console.print(f"MLflow run {result.mlflow_run_id}", highlight=False)


@app.command("eval")
def eval_command(
    model: Optional[str] = typer.Option(
        None, "--model", help="tiny-s|tiny-m|tiny-l, a Qwen preset, a local folder, a hub id, run:<run_id>, oracle:gold|oracle:wrong"),
    benchmarks: Optional[str] = typer.Option(None, "--benchmarks", help="Comma-separated, e.g. math500,aime24 (default with "
                                             "--config or run:<id>: the run's eval.benchmarks)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="hf, vllm or auto (default: the config's, else auto)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder of <benchmark>.jsonl (default: $LGRPO_DATA_DIR, else the hub)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N problems of each benchmark (smoke tests)"),
    as_json: bool = typer.Option(False, "--json", help="Print {benchmark: {metric: value}} as JSON instead of a table"),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
    config_file: Optional[Path] = typer.Option(None, "--config", help="Run YAML: evaluate that run's final model into its MLflow run"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key: any key of --config's run config; an "
                                             "eval.* key with --model too, e.g. --set eval.overrides.gsm8k.max_tokens=2048"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store (default: the config's, $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment (without --config): where "
                                             "run:<id> is looked for (default: every experiment) and where other "
                                             "models' evaluations are logged (default: lgrpo-bench)"),
    force: bool = typer.Option(False, "--force", help="Evaluate again and replace a benchmark logged with other settings"),
    no_log: bool = typer.Option(False, "--no-log", help="Log nothing to MLflow (and skip nothing)"),
) -> None:
    """Evaluate a model on math benchmarks (lm-eval). Example: lgrpo-bench eval --model tiny-s --benchmarks arith"""
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.config.loading import set_dotted
    from lgrpo_bench.config.schema import EvalConfig
    from lgrpo_bench.runs.resolve import eval_problems, load_run

    offline_defaults()
    eval_sets = []  # --set eval.* with --model: applied to the evaluation settings below
    if set_ and config_file is None:
        try:
            eval_sets = _eval_overrides(set_)
        except ConfigError as error:
            fail_input(str(error))
    if (config_file is None) == (model is None):
        fail_input("give exactly one of --model and --config")
    run_config = None
    try:
        if config_file is not None:
            run_config = load_run(config_file, set_ or [])
        elif model.startswith(RUN_PREFIX):
            run_config = _run_config_of(model[len(RUN_PREFIX):], tracking_uri, experiment)
    except ConfigError as error:
        fail_input(str(error))
    base = run_config.eval if run_config is not None else EvalConfig()
    updates = {key: value for key, value in (("backend", backend), ("limit", limit),
                                             ("data_dir", str(data_dir) if data_dir else None)) if value is not None}
    data = {"eval": base.model_dump()}
    for key, value in eval_sets:
        set_dotted(data, key, value)
    names = _split_benchmarks(benchmarks) or list(data["eval"]["benchmarks"])
    try:
        eval_config = EvalConfig.model_validate({**data["eval"], **updates, "benchmarks": names})
    except Exception as error:  # pydantic ValidationError: name the key
        from pydantic import ValidationError

        from lgrpo_bench.config.loading import format_validation_error

        if isinstance(error, ValidationError):
            text = format_validation_error(error, "command line", EvalConfig)
            fail_input(text.replace("command line: benchmarks", "--benchmarks").replace("command line: ", "--set eval."))
        raise
    if not names:
        fail_input("no benchmarks: pass --benchmarks (e.g. --benchmarks math500,aime24) or set eval.benchmarks in the config")
    problems = eval_problems(eval_config)
    if problems:
        fail_input("\n".join(f"{'--benchmarks' if p.key == 'eval.benchmarks' else p.key}: {p.message}" for p in problems))
    if eval_config.backend == "vllm" and importlib.util.find_spec("vllm") is None:  # said before torch is imported
        from lgrpo_bench.evaluation.backends import VLLM_INSTALL_HINT

        fail_input(VLLM_INSTALL_HINT)
    if run_config is not None or not no_log:  # a store that cannot open, too
        from lgrpo_bench.tracking.location import StoreProblem, check_store_scheme, resolve_tracking_uri

        try:
            check_store_scheme(resolve_tracking_uri(tracking_uri or (run_config.tracking.uri if run_config else None)))
        except StoreProblem as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None

    from lgrpo_bench.evaluation import (
        BackendUnavailable,
        BenchmarkDataError,
        EvalIdentityConflict,
        RunNotTrained,
        evaluate,
    )
    from lgrpo_bench.models.loading import ModelLoadError
    from lgrpo_bench.models.tiny import WarmStartCacheError
    from lgrpo_bench.tracking import TrackingUnavailable

    from lgrpo_bench.runs.lifecycle import EvaluationFailed, evaluate_step
    from lgrpo_bench.runs.resolve import prepare_run
    from lgrpo_bench.tracking.reader import StoreProblem
    from lgrpo_bench.tracking.record import RunLayout

    emit = echo_err if as_json or plain else typer.echo
    errors = (BackendUnavailable, BenchmarkDataError, EvalIdentityConflict, RunNotTrained, ModelLoadError,
              WarmStartCacheError, TrackingUnavailable, KeyError, ValueError)
    prepared = None
    if run_config is not None:
        run_config = run_config.model_copy(update={"eval": eval_config})
        if tracking_uri:
            run_config.tracking.uri = tracking_uri
        try:
            prepared = prepare_run(run_config, write=False)
        except errors as error:
            fail_input(str(error).strip('"'))
    run_log = RunLayout.for_config(prepared.config, prepared.run_id).run_log if prepared else None
    problem = failure = None
    with library_output(run_log):  # lm-eval's and the model loaders' messages go to the run log (or a temp file)
        try:
            if prepared is not None:
                result = evaluate_step(prepared.config, prepared.run_id, benchmarks=names, force=force, emit=emit)
            else:
                result = evaluate(model, names, eval_config, tracking_uri=tracking_uri, experiment=experiment or "lgrpo-bench",
                                  log=not no_log, force=force, emit=emit)
        except errors as error:
            problem = str(error).strip('"')
        except EvaluationFailed as error:  # recorded on the run (failed_step = eval); a setting to fix, or a failure
            cause = error.__cause__
            if isinstance(cause, errors):
                problem = str(cause).strip('"')
            else:
                failure = str(error)
        except StoreProblem as error:
            failure = str(error)
    if problem is not None:
        fail_input(problem)
    if failure is not None:
        typer.echo(f"error: {failure}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(result.metrics(), indent=2, sort_keys=True, allow_nan=True))
    else:
        _print_table(result, plain)


def _eval_overrides(texts: list[str]) -> list[tuple[str, object]]:
    """(dotted key, value) of each ``--set`` given with ``--model``: only ``eval.*`` keys of the run config schema
    (:class:`~lgrpo_bench.config.schema.EvalConfig`), each checked with a did-you-mean."""
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.config.loading import check_override_key, parse_override

    found = []
    for text in texts:
        key, value = parse_override(text)
        if not key.startswith("eval."):
            raise ConfigError(f"--set {key}: with --model only evaluation settings (eval.*) can be set, e.g. "
                              "--set eval.overrides.gsm8k.max_tokens=2048; a run config's other keys need --config")
        check_override_key(key)
        found.append((key, value))
    return found


def _run_config_of(run_id: str, tracking_uri: str | None, experiment: str | None):
    """The resolved config of training run ``run_id`` (``lgrpo.run_id`` or MLflow run id), from its run folder; the run
    is looked for in ``experiment``, or in every experiment of the store when none is given."""
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.runs.resolve import read_resolved
    from lgrpo_bench.tracking import TAG_MODEL_DIR, TAG_STATE, TrackingUnavailable, resolve_tracking_uri
    from lgrpo_bench.tracking.reader import StoreProblem, find_train_runs_anywhere, open_reader

    uri = resolve_tracking_uri(tracking_uri)
    try:
        with open_reader(uri) as reader:
            found = find_train_runs_anywhere(reader, run_id)
    except (TrackingUnavailable, StoreProblem) as error:
        fail_input(str(error))
    holding = sorted({name for name, _ in found})
    if experiment is not None:
        found = [(name, run) for name, run in found if name == experiment]
    if not found:
        where = f"experiment {experiment!r} of {uri}" if experiment is not None else uri
        elsewhere = f"; experiments holding it: {', '.join(holding)} (pass --experiment)" if holding else ""
        fail_input(f"run:{run_id}: no training run with that lgrpo.run_id or MLflow run id in {where}{elsewhere}")
    if len({name for name, _ in found}) > 1:
        fail_input(f"run:{run_id}: training runs of that run id are in several experiments ({', '.join(holding)}); "
                   "choose one with --experiment")
    name, run = found[0]
    model_dir = run.data.tags.get(TAG_MODEL_DIR)
    if not model_dir:
        fail_input(f"run:{run_id}: the run has no final model yet (state {run.data.tags.get(TAG_STATE)!r})")
    try:
        config, _ = read_resolved(Path(model_dir).parent)
    except ConfigError as error:
        fail_input(str(error))
    config.tracking.uri = uri
    config.tracking.experiment = name
    return config
