"""``lgrpo-bench plan``'s power lines: what a grid's seeds could detect, from the earlier runs of its model and task.

A use case above :mod:`.power` (the maths) and :mod:`.table` (which builds the table whose pooled std it reads):
it loads runs, builds their table and describes its power with the grid's number of seeds.

* :func:`plan_power_lines` — for one model and task.
* :func:`grid_power_lines` — for each (model, task) of a grid's points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lgrpo_bench.reports import DEFAULT_BASELINE, DEFAULT_METRIC
from lgrpo_bench.reports.loader import ReportInputError, load_runs, open_store
from lgrpo_bench.reports.power import describe_power
from lgrpo_bench.reports.table import AVERAGE, build_table
from lgrpo_bench.tracking import schema as t

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["grid_power_lines", "plan_power_lines"]


def plan_power_lines(
    tracking: MlflowClient | str | None, model: str, task: str, n_seeds: int, *, baseline: str = DEFAULT_BASELINE, metric: str = DEFAULT_METRIC,
) -> list[str]:
    """What a grid of ``n_seeds`` seeds on ``model`` and ``task`` could detect, from the store's earlier runs.

    Reads the finished train runs tagged ``lgrpo.model = model`` and ``lgrpo.task = task`` (every experiment),
    builds their report table and takes the pooled std of its Average column (or of each benchmark column
    when there is no Average): the std of paired differences vs ``baseline`` when earlier runs were paired by
    seed, else the pooled seed std. Returns no line when the store does not exist or holds no such runs with
    two seeds of one configuration; one line saying why when they cannot be tabulated.
    """
    try:
        client = open_store(tracking)
        data = load_runs(client, tags={t.TAG_MODEL: model, t.TAG_TASK: task})
    except ReportInputError:
        return []
    try:
        table = build_table(data.runs, metric=metric, baseline=baseline, split=True)
    except ReportInputError as error:
        first = str(error).splitlines()[0]
        return [f"power: the {len(data.runs)} earlier runs of {model} on {task} give no seed std ({first})"]
    keys = [AVERAGE] if table.has_average else [c.key for c in table.columns]
    lines = []
    for group in table.groups:
        for key in keys:
            summary = group.power.get(key)
            if summary is None:
                continue
            column = table.label(key)  # the benchmark (or Average) column; named once when it is the task's own
            lines.append(f"power ({len(data.runs)} earlier runs of {model} on {task}"
                         f"{'' if column == task else f', column {column}'}): "
                         + describe_power(summary.with_seeds(n_seeds), table.unit))
    return lines


def grid_power_lines(points: Sequence, tracking_uri: str | None) -> list[str]:
    """:func:`plan_power_lines` for each (model, task) of a grid's points, with the grid's number of seeds.

    ``points``: the grid's :class:`~lgrpo_bench.config.grid.GridPoint` objects. Reads the store only when it
    exists (a SQLite file that is missing means nothing has run: no line, nothing created).
    """
    from lgrpo_bench.tracking.store import resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    db_file = sqlite_path(uri)
    if db_file is not None and not db_file.is_file():
        return []
    seeds: dict[tuple[str, str], set[int]] = {}
    for point in points:
        seeds.setdefault((point.config.model.name, point.config.task.name), set()).add(point.config.train.seed)
    lines: list[str] = []
    for (model, task), values in seeds.items():
        lines += plan_power_lines(uri, model, task, len(values))
    return lines
