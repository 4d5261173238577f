"""``lgrpo-bench sweep``: run an Optuna sweep, show a study, export its best config, open the dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from lgrpo_bench.cli.common import (
    EXIT_RUN_FAILED,
    PLAIN_HELP,
    _Group,
    app,
    fail_input,
    make_console,
    offline_defaults,
    serve_until_stopped,
)

IMPORTANCE_TRIALS = 20
"""Below this many complete trials, ``sweep show`` prints its fANOVA importances with a caveat."""

ACTIONS = ("run", "show", "export", "dashboard")
STORAGE_HELP = "Optuna storage (default: the sweep file's, else sqlite:///./optuna.db); journal:PATH for a journal file"
STUDY_HELP = "The study name (or its sweep YAML)"


class _SweepGroup(_Group):
    """``lgrpo-bench sweep FILE`` is ``lgrpo-bench sweep run FILE``: a first argument that names no subcommand (and is
    no option) is a sweep file to run, so each subcommand keeps its own ``--help``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


sweep_app = typer.Typer(cls=_SweepGroup, no_args_is_help=True, help=(
    "Optuna sweeps: run a sweep file, show a study, export its best config as a grid, open the dashboard. Examples: "
    "lgrpo-bench sweep run sweeps/lambda_lr.yaml · lgrpo-bench sweep show lambda-lr · lgrpo-bench sweep export lambda-lr "
    "--seeds 10,11,12 -o experiments/best.yaml · lgrpo-bench sweep dashboard lambda-lr"))
app.add_typer(sweep_app, name="sweep")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Bad input is exit 2; a corrupt, empty, read-only or locked Optuna storage one line and exit 1."""
    from lgrpo_bench.config.loading import ConfigError
    from lgrpo_bench.tracking.studies import StudyStorageProblem

    offline_defaults()
    try:
        yield
    except ConfigError as error:
        fail_input(str(error))
    except StudyStorageProblem as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_RUN_FAILED) from None


def _storage_for(study_or_file: str, storage: str | None) -> tuple[str, str]:
    """(study name, storage URL) from a study name (+ --storage) or a sweep file."""
    from lgrpo_bench.config.sweep import resolve_storage
    from lgrpo_bench.runs.resolve import load_sweep

    path = Path(study_or_file)
    if path.suffix in (".yaml", ".yml"):
        loaded = load_sweep(path)
        return loaded.sweep.name, resolve_storage(storage, "--storage") if storage else loaded.storage
    return study_or_file, resolve_storage(storage, "--storage")


def _study_of(study: Optional[str], storage: Optional[str], action: str) -> tuple[str, str]:
    if study is None:
        fail_input(f"sweep {action}: give the study name (or its sweep YAML), e.g. lgrpo-bench sweep {action} lambda-lr")
    return _storage_for(study, storage)


@sweep_app.command("run")
def sweep_run(
    sweep_file: Path = typer.Argument(..., help="Sweep YAML (see sweeps/lambda_lr.yaml)"),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1, help="Finished trials the study must reach "
                                           "(instead of the file's n_trials; trials finished earlier count)"),
) -> None:
    """Run a sweep: trials until the study has n_trials finished ones (resumes an interrupted sweep). Also
    `lgrpo-bench sweep FILE`. Example: lgrpo-bench sweep run sweeps/lambda_lr.yaml --n-trials 4"""
    with _one_line_errors():
        _run(sweep_file, n_trials)


@sweep_app.command("show")
def sweep_show(
    study: Optional[str] = typer.Argument(None, help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    top: int = typer.Option(5, "--top", help="How many best trials"),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
) -> None:
    """Show a study: trial counts, the best trials and parameter importances (fANOVA). Example: lgrpo-bench sweep show lambda-lr"""
    with _one_line_errors():
        _show(*_study_of(study, storage, "show"), top, plain)


@sweep_app.command("export")
def sweep_export(
    study: Optional[str] = typer.Argument(None, help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Reporting seeds, e.g. 10,11,12 (fresh, not the tuning ones)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Grid file to write"),
    name: Optional[str] = typer.Option(None, "--name", help="Grid name (default <study>-best)"),
    allow_tuning_seeds: bool = typer.Option(False, "--allow-tuning-seeds", help="Allow seeds used while tuning"),
) -> None:
    """Write a grid that re-runs the study's best config with new seeds. Example: lgrpo-bench sweep export lambda-lr --seeds 10,11,12 -o experiments/best.yaml"""
    with _one_line_errors():
        _export(*_study_of(study, storage, "export"), seeds, out, name, allow_tuning_seeds)


@sweep_app.command("dashboard")
def sweep_dashboard(
    study: Optional[str] = typer.Argument(None, help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (127.0.0.1 = this machine only)"),
    port: int = typer.Option(8080, "--port", help="Port"),
) -> None:
    """Open optuna-dashboard on the study's storage; Ctrl-C stops it. Example: lgrpo-bench sweep dashboard lambda-lr"""
    with _one_line_errors():
        _dashboard(_study_of(study, storage, "dashboard")[1], host, port)


def _run(path: Path, n_trials: int | None = None) -> None:
    import dataclasses

    from lgrpo_bench.runs.resolve import load_sweep
    from lgrpo_bench.dispatch.orchestrator import GridBusy
    from lgrpo_bench.sweeps import run_sweep
    from lgrpo_bench.tracking import TrackingUnavailable

    loaded = load_sweep(path)
    if n_trials is not None:
        loaded = dataclasses.replace(loaded, sweep=loaded.sweep.model_copy(update={"n_trials": n_trials}))
    sweep = loaded.sweep
    typer.echo(f"sweep {sweep.name}: {sweep.n_trials} trials, {sweep.parallel} at once, {sweep.sampler.kind} sampler, "
               f"pruner {sweep.pruner.kind}, objective {sweep.objective.direction} {sweep.objective.metric}, "
               f"storage {loaded.storage}")
    try:
        summary = run_sweep(loaded, emit=typer.echo)
    except (GridBusy, TrackingUnavailable) as error:
        fail_input(str(error))
    typer.echo(f"sweep {sweep.name}: {summary.finished_total}/{sweep.n_trials} trials finished "
               f"({len(summary.complete)} complete, {len(summary.pruned)} pruned, {len(summary.failed)} failed attempts "
               f"this time) in {summary.seconds:.0f} s")
    if summary.best_value is not None:
        typer.echo(f"best {sweep.objective.metric} = {summary.best_value:.4f} with {summary.best_params}")
    if summary.exit_code:
        raise typer.Exit(EXIT_RUN_FAILED)


def _show(study_name: str, storage_url: str, top: int, plain: bool) -> None:
    from rich.table import Table

    from lgrpo_bench.sweeps import load_study, study_overview

    overview = study_overview(load_study(study_name, storage_url), top=top)
    console = make_console(plain)
    counts = ", ".join(f"{n} {state}" for state, n in overview.counts.items() if n)
    console.print(f"study {overview.name}: {counts or 'no trials'}; {overview.direction} {overview.objective}")
    if overview.best:
        table = Table(title=f"best {len(overview.best)} trials")
        table.add_column("trial", justify="right")
        table.add_column(overview.objective, justify="right")
        keys = list(overview.best[0].params)
        for key in keys:
            table.add_column(key, justify="right")
        for trial in overview.best:
            table.add_row(str(trial.number), f"{trial.value:.4f}", *(_param_text(trial.params.get(k)) for k in keys))
        console.print(table)
    if overview.importances:
        table = Table(title="parameter importances (fANOVA)")
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        for key, value in overview.importances.items():
            table.add_row(key, f"{value:.3f}")
        console.print(table)
        complete = overview.counts.get("complete", 0)
        if complete < IMPORTANCE_TRIALS:
            console.print(f"caveat: these importances come from {complete} complete trials; fANOVA fits a random forest "
                          f"to them, and below {IMPORTANCE_TRIALS} trials it can rank any parameter first: a hint, "
                          "not a finding", highlight=False)


def _param_text(value) -> str:
    """A parameter for a table cell: floats to 4 significant digits (1.014e-04), others as written."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _export(study_name: str, storage_url: str, seeds: str | None, out: Path | None, name: str | None,
            allow_tuning_seeds: bool) -> None:
    from lgrpo_bench.config.loading import ConfigError
    from lgrpo_bench.sweeps import export_best_grid, load_study

    if not seeds:
        fail_input("sweep export: --seeds is required, e.g. --seeds 10,11,12 (fresh seeds, not the tuning ones)")
    if out is None:
        fail_input("sweep export: --out/-o is required, e.g. -o experiments/best.yaml")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 10,11,12") from None
    grid = export_best_grid(load_study(study_name, storage_url), seed_list, out, name=name,
                            allow_tuning_seeds=allow_tuning_seeds)
    typer.echo(f"wrote {out}: grid {grid['name']!r}, {len(seed_list)} runs; next: lgrpo-bench plan {out}")


def _dashboard(storage_url: str, host: str, port: int) -> None:
    from lgrpo_bench.sweeps import dashboard_command
    from lgrpo_bench.tracking.studies import open_storage
    from lgrpo_bench.ui.serve import start_supervised
    from lgrpo_bench.ui.views import ui_base_url

    open_storage(storage_url)  # storage trouble is one line here, not a traceback in the dashboard's log
    command = dashboard_command(storage_url, host=host, port=port)
    base = ui_base_url(host, port)
    serve_until_stopped(lambda log: start_supervised(command, stdout=log, stderr=log), base,
                        lambda: typer.echo(f"optuna-dashboard for {storage_url} at {base} (Ctrl-C stops it)"),
                        what="optuna-dashboard")
