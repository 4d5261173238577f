"""``lgrpo-bench report``: tables, statistics and plots of finished runs, read from the MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from lgrpo_bench.cli.common import PLAIN_HELP, app, fail_input, make_console


def _grid_selection(grid_file: Path) -> tuple[str, str | None, list[str]]:
    """(grid name, tracking URI or None, key order) of a grid file; ConfigError on bad input.

    The file is checked against the grid schema (:class:`lgrpo_bench.config.grid.GridConfig`) without
    expanding its points (expansion resolves models, which a report does not need). The URI is the base
    config's ``tracking.uri`` (or an ``overrides`` entry), when the grid sets one. Runs are found in every
    experiment of the store by their ``lgrpo.grid`` tag. The key order (the report's key columns) is the
    grid's axes as written, then the keys its ``include`` entries set.
    """
    from lgrpo_bench.config import ConfigError, read_yaml

    data = read_yaml(grid_file)
    try:
        from lgrpo_bench.config.grid import GridConfig
    except ImportError:  # the grid schema is optional for reports: the name is all they need
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{grid_file}: name: a grid needs a name (the lgrpo.grid tag of its runs)") from None
        return name, None, []
    from pydantic import ValidationError

    from lgrpo_bench.config.loading import format_validation_error

    try:
        grid = GridConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, str(grid_file))) from None
    base = grid.base
    if isinstance(base, str):
        base = read_yaml((grid_file.parent / base).resolve())
    tracking = base.get("tracking") if isinstance(base.get("tracking"), dict) else {}
    uri = grid.overrides.get("tracking.uri", tracking.get("uri"))
    key_order = list(dict.fromkeys([*grid.axes, *(key for entry in grid.include for key in entry)]))
    return grid.name, (str(uri) if uri else None), key_order


@app.command()
def report(
    experiment: Optional[List[str]] = typer.Option(None, "--experiment", help="MLflow experiment(s) to report (repeatable); default: all"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="Grid YAML: report the runs tagged with its name"),
    filter_string: Optional[str] = typer.Option(None, "--filter", help="MLflow search filter, e.g. \"tags.`lgrpo.grid` = 'x'\""),
    formats: str = typer.Option("md", "--format", help="Comma-separated: md, latex, csv, html"),
    out: Path = typer.Option(Path("report"), "--out", help="Output folder"),
    baseline: str = typer.Option("grpo", "--baseline", help="Algorithm the Δ columns compare against"),
    metric: str = typer.Option("acc", "--metric", help="Eval metric of the table (eval/<benchmark>/<metric>)"),
    split: bool = typer.Option(False, "--split", help="Show differently evaluated variants of a benchmark as separate columns instead of refusing"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the figures (PNG+PDF) and log them to the grid run"),
    statistics: bool = typer.Option(True, "--stats/--no-stats", help="Δ intervals (t over seeds) and the power rows "
                                    "(minimum detectable effect, seeds needed)"),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Comma-separated config keys that make the rows "
                                           "(dotted or last part, e.g. lam_init,learning_rate); default: every key that "
                                           "varies among the runs, except seeds"),
    average_over: Optional[str] = typer.Option(None, "--average-over", help="Comma-separated config keys to treat as "
                                               "replicates like the seed, on purpose (said in the caption)"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Store (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)"),
    plain: bool = typer.Option(False, "--plain", help=PLAIN_HELP),
) -> None:
    """Write the paper table (one row per configuration, mean ± std over seeds, Δ vs baseline with t intervals over
    seeds, minimum detectable effect) and plots.

    Example: lgrpo-bench report --grid experiments/quickstart.yaml --format md,latex,csv,html --out report
    """
    from lgrpo_bench.config import ConfigError
    from lgrpo_bench.reports import FORMATS, ReportInputError, generate_report
    from lgrpo_bench.reports.render import rich_tables
    from lgrpo_bench.tracking import TrackingUnavailable

    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if not chosen or unknown:
        fail_input(f"--format {formats!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    grid_name = None
    experiments = list(experiment or [])
    uri = tracking_uri
    key_order: list[str] = []
    if grid is not None:
        try:
            grid_name, grid_uri, key_order = _grid_selection(grid)
        except ConfigError as error:
            fail_input(str(error))
        uri = uri or grid_uri

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
            uri, experiments=experiments or None, grid=grid_name, filter_string=filter_string, formats=chosen, out_dir=out,
            baseline=baseline, metric=metric, split=split, plots=plots, statistics=statistics, group_by=chosen_keys,
            average_over=averaged_keys, key_order=key_order,
        )
    except (ReportInputError, TrackingUnavailable) as error:
        fail_input(str(error))
    console = make_console(plain)
    for table in rich_tables(result.table):
        console.print(table)
    for note in result.table.notes:
        console.print(f"- {note}", markup=False, highlight=False)
    console.print(f"{len(result.data.runs)} runs from {result.data.selection}; wrote {len(result.files)} files to {out}",
                  markup=False, highlight=False)
    if result.logged_to:
        console.print(f"plots logged to grid run(s) {', '.join(result.logged_to)} under report/plots", markup=False,
                      highlight=False)
