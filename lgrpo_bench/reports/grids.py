"""A grid file as a report sees it: its name (the ``lgrpo.grid`` tag of its runs), its store, the order of its keys
and the run ids of its current points.

A report of a grid (``report --grid``, and the results table of ``run`` and ``status``) shows the grid's *current*
points: the runs whose ``lgrpo.run_id`` is the run id of a point of the file as it is now, in the experiments its
points log to, whichever grid first ran them (a note counts those made elsewhere). Runs tagged with the grid's name
whose run ids are no longer in the file ran an earlier version of it (a value was edited since): the report counts
them in a note, or includes them with ``--all-versions`` (:func:`~lgrpo_bench.reports.loader.load_runs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["GridSelection", "grid_selection", "load_grid_file", "selection_of"]


@dataclass(frozen=True)
class GridSelection:
    """What a report needs of a grid file."""

    name: str
    tracking_uri: str | None
    """The points' ``tracking.uri`` (``None``: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///./mlflow.db``)."""
    key_order: tuple[str, ...]
    """The grid's axis keys, then the keys only its ``include`` entries set: the order of the key columns."""
    run_ids: frozenset[str]
    """Run ids of the file's current points."""
    experiments: tuple[str, ...] = ()
    """The MLflow experiments the points log to (a report of the grid reads only these)."""


def load_grid_file(path: str | Path):
    """The expanded grid (``ExpandedGrid``) of the file at ``path``, resolved and checked by
    :func:`lgrpo_bench.runs.resolve.load_grid`; ``ConfigError`` on bad input. The one place reports expand a grid."""
    from lgrpo_bench.runs.resolve import load_grid

    return load_grid(path)


def selection_of(expanded) -> GridSelection:
    """The :class:`GridSelection` of an already expanded grid (``run`` and ``status`` have one)."""
    uri = expanded.points[0].config.tracking.uri if expanded.points else None
    experiments = tuple(dict.fromkeys(point.config.tracking.experiment for point in expanded.points))
    return GridSelection(expanded.grid.name, uri, tuple(expanded.value_keys), frozenset(point.run_id for point in expanded.points),
                         experiments)


def grid_selection(path: str | Path) -> GridSelection:
    """The :class:`GridSelection` of the grid file at ``path`` (expanded with :func:`load_grid_file`)."""
    return selection_of(load_grid_file(path))
