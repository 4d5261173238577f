"""Read-only access to an MLflow SQLite store without importing MLflow.

``import mlflow`` costs 2–5 s on a small CPU; ``lgrpo-bench plan`` and ``status`` only read a few tags and the
latest metrics of a grid's runs. For the default store (``sqlite:///…/mlflow.db``) they read MLflow's tables
directly with the standard library's ``sqlite3``, in one query per table:

* ``experiments(experiment_id, name, lifecycle_stage)``, ``experiment_tags(experiment_id, key, value)``
* ``runs(run_uuid, experiment_id, status, start_time, artifact_uri, lifecycle_stage)``
* ``tags(run_uuid, key, value)``, ``params(run_uuid, key, value)``, ``latest_metrics(run_uuid, key, value, is_nan)``

These tables and columns have been stable since MLflow 1.x; ``tests/test_sqlstore.py`` checks every read against
``MlflowClient.search_runs`` on a store written by MLflow itself, so an MLflow upgrade that changes them fails a
test instead of a report. Writes always go through MLflow. Other stores (a tracking server, PostgreSQL) are read
through ``MlflowClient`` by the callers.

The rows come back as :class:`StoredRun`, which has the attributes of an MLflow ``Run`` that readers use
(``info.run_id``, ``info.status``, ``info.start_time``, ``info.artifact_uri``, ``data.tags``, ``data.params``,
``data.metrics``), so code can take either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["StoreReader", "StoredRun", "StoredRunData", "StoredRunInfo"]

_CHUNK = 900
"""SQLite allows 999 bound parameters per statement by default."""


@dataclass
class StoredRunInfo:
    run_id: str
    experiment_id: str
    status: str
    start_time: int | None
    artifact_uri: str | None


@dataclass
class StoredRunData:
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class StoredRun:
    """One run as read from the tables (see the module docstring)."""

    info: StoredRunInfo
    data: StoredRunData


class StoreReader:
    """Read-only queries on the MLflow SQLite database at ``path`` (which must exist)."""

    def __init__(self, path: str | Path, timeout_s: float = 30.0):
        self.path = Path(path)
        self._connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=timeout_s)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def experiment_id(self, name: str) -> str | None:
        """The id of the *active* experiment called ``name``, else None."""
        row = self._connection.execute(
            "SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'", (name,)).fetchone()
        return None if row is None else str(row[0])

    def experiments(self) -> list[tuple[str, str]]:
        """(id, name) of every active experiment."""
        rows = self._connection.execute(
            "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active' ORDER BY experiment_id")
        return [(str(experiment_id), name) for experiment_id, name in rows]

    def experiment_tags(self) -> dict[str, dict[str, str]]:
        """Tags of every active experiment: ``{experiment id: {key: value}}`` (table ``experiment_tags``)."""
        tags: dict[str, dict[str, str]] = {experiment_id: {} for experiment_id, _ in self.experiments()}
        for experiment_id, key, value in self._connection.execute("SELECT experiment_id, key, value FROM experiment_tags"):
            if str(experiment_id) in tags:
                tags[str(experiment_id)][key] = value
        return tags

    def runs(self, experiment_ids: Sequence[str], *, tag_equals: Mapping[str, str] | None = None,
             tag_not_in: Mapping[str, Iterable[str]] | None = None, params: bool = False,
             metrics: bool = True) -> list[StoredRun]:
        """Active runs of ``experiment_ids``, newest first (like ``search_runs`` ordered by start time, descending).

        ``tag_equals``: keep runs whose tag ``key`` equals ``value`` for every item; ``tag_not_in``: drop runs whose
        tag ``key`` has one of the values (runs without the tag are kept). ``params``/``metrics``: read those too.
        """
        if not experiment_ids:
            return []
        query = ("SELECT run_uuid, experiment_id, status, start_time, artifact_uri FROM runs "
                 f"WHERE lifecycle_stage = 'active' AND experiment_id IN ({','.join('?' * len(experiment_ids))})")
        arguments: list = [int(i) if str(i).isdigit() else i for i in experiment_ids]
        for key, value in (tag_equals or {}).items():
            query += " AND run_uuid IN (SELECT run_uuid FROM tags WHERE key = ? AND value = ?)"
            arguments += [key, value]
        for key, values in (tag_not_in or {}).items():
            values = list(values)
            query += (" AND run_uuid NOT IN (SELECT run_uuid FROM tags WHERE key = ? AND value IN "
                      f"({','.join('?' * len(values))}))")
            arguments += [key, *values]
        query += " ORDER BY start_time DESC, run_uuid DESC"
        runs = {
            run_uuid: StoredRun(StoredRunInfo(run_uuid, str(experiment_id), status, start_time, artifact_uri), StoredRunData())
            for run_uuid, experiment_id, status, start_time, artifact_uri in self._connection.execute(query, arguments)
        }
        tables = [("tags", "SELECT run_uuid, key, value FROM tags")]
        if params:
            tables.append(("params", "SELECT run_uuid, key, value FROM params"))
        if metrics:
            tables.append(("metrics", "SELECT run_uuid, key, value, is_nan FROM latest_metrics"))
        ids = list(runs)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            where = f" WHERE run_uuid IN ({','.join('?' * len(chunk))})"
            for table, select in tables:
                for row in self._connection.execute(select + where, chunk):
                    target = getattr(runs[row[0]].data, table)
                    target[row[1]] = (float("nan") if row[3] else float(row[2])) if table == "metrics" else row[2]
        return list(runs.values())

    def metric_histories(self, run_ids: Sequence[str], keys: Sequence[str]) -> dict[str, dict[str, list[tuple[int, int, float]]]]:
        """``{key: {run_id: [(step, timestamp, value), ...]}}``: every logged point of ``keys`` for ``run_ids``, from
        the table ``metrics(key, value, timestamp, run_uuid, step, is_nan)`` (NaN where ``is_nan``), in table order.

        What ``MlflowClient.get_metric_history`` gives per run and key; runs without a point of a key are absent.
        """
        histories: dict[str, dict[str, list[tuple[int, int, float]]]] = {key: {} for key in keys}
        ids = list(run_ids)
        for start in range(0, len(ids), _CHUNK - len(keys)):
            chunk = ids[start:start + _CHUNK - len(keys)]
            query = (f"SELECT key, run_uuid, step, timestamp, value, is_nan FROM metrics WHERE key IN ({','.join('?' * len(keys))}) "
                     f"AND run_uuid IN ({','.join('?' * len(chunk))})")
            for key, run_uuid, step, timestamp, value, is_nan in self._connection.execute(query, [*keys, *chunk]):
                histories[key].setdefault(run_uuid, []).append((int(step), int(timestamp), float("nan") if is_nan else float(value)))
        return histories
