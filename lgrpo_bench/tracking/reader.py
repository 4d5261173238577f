"""The one reader of the MLflow store: experiments, runs with their tags, params and latest metrics, metric histories.

Every part of lgrpo-bench that reads the store (``plan``, ``status``, ``run``'s state and closing table, reports,
sweeps, the run lifecycle's lookup of a run by its run id) goes through :class:`StoreReader`; writes go through
MLflow's client. Callers never know which implementation they hold:

* :class:`SqliteReader` — the default store (``sqlite:///…/mlflow.db``) read with the standard library's
  ``sqlite3`` (``import mlflow`` costs 2–5 s on a small CPU; ``plan`` reads a few tags). It reads MLflow's tables
  ``experiments``, ``experiment_tags``, ``runs``, ``tags``, ``params``, ``latest_metrics`` and ``metrics`` only when
  the database's Alembic revision is one this module was checked against (:data:`KNOWN_SCHEMA_REVISIONS`;
  ``tests/test_store_reader.py`` compares every read with ``MlflowClient.search_runs`` on a store MLflow wrote, and
  fails when an installed MLflow writes a revision not listed) and MLflow's workspaces are off (it reads the
  ``default`` workspace, as MLflow does then); otherwise, and for MLflow search filters, it hands the read to a
  :class:`ClientReader` of the same store.
* :class:`ClientReader` — any store through ``MlflowClient`` (a tracking server, PostgreSQL), paginated.

Store trouble is one exception, :class:`StoreProblem`, whose message says what is wrong, with which file, and
what to do; the command line prints it as one line and exits 1 (never a traceback):

==================  ===================================================================================
missing             a SQLite store that does not exist (``open_reader(..., must_exist=False)`` gives None)
corrupt / foreign   not a SQLite database, or one without MLflow's tables
locked              another process holds a write lock: reads wait, saying so once, up to
                    ``$LGRPO_STORE_WAIT_S`` seconds (default 60), then fail
hot journal         a writer was killed mid-transaction (``mlflow.db-journal`` left); SQLite rolls it back
                    on the next read when it may write the folder, else the message says who can
read-only           readable; writers (:func:`lgrpo_bench.tracking.store.open_client`) refuse it
``file:`` store     MLflow 3.17's file store refuses to open (maintenance mode); use a database
==================  ===================================================================================

:func:`store_problem` translates an exception raised by ``sqlite3``, SQLAlchemy or MLflow while using the store
into a :class:`StoreProblem` (used where the store may change under a long command, e.g. a grid).
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lgrpo_bench.tracking.location import (
    StoreProblem,
    check_store_scheme,
    describe_sqlite_error,
    quote_filter_value,
    resolve_tracking_uri,
    sqlite_path,
    store_problem,
    workspaces_enabled,
)

T = TypeVar("T")

__all__ = [
    "KNOWN_SCHEMA_REVISIONS", "STORE_WAIT_ENV", "ClientReader", "ExperimentInfo", "SqliteReader", "StoreProblem",
    "StoreReader", "StoredRun", "StoredRunData", "StoredRunInfo", "check_store_scheme", "describe_sqlite_error",
    "find_train_run", "find_train_runs_anywhere", "open_reader", "sqlite_tables", "store_problem", "train_runs_by_run_id",
    "wait_while_locked",
]

LOG = logging.getLogger("lgrpo_bench.store")

KNOWN_SCHEMA_REVISIONS: frozenset[str] = frozenset({"dc11669786a5", "f4a9b2c7d1e6"})
"""Alembic revisions of MLflow's SQL schema whose tables :class:`SqliteReader` reads directly (``dc11669786a5``:
MLflow 3.17, which added ``experiments.workspace``; ``f4a9b2c7d1e6``: MLflow 3.18, whose three migrations add the
skill registry's tables, extend the ``issues`` table and re-key the MCP tables: none of the tables read here changes).
Another revision (an MLflow upgrade migrated the file) is read through MLflow's client until the queries are checked
against it and the revision is added here; ``pyproject.toml`` keeps MLflow below the first release not checked."""
STORE_WAIT_ENV = "LGRPO_STORE_WAIT_S"
"""How long a read waits for a store locked by another process before it fails (seconds; default 60)."""
DEFAULT_STORE_WAIT_S = 60.0
_CHUNK = 900
"""SQLite allows 999 bound parameters per statement by default."""
_PAGE = 10000
DEFAULT_WORKSPACE = "default"


# ---------------------------------------------------------------------------------------------------------
# What a read returns (the attributes of MLflow's Run that readers use, so code may take either)
# ---------------------------------------------------------------------------------------------------------
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
    """One run: ``info`` (``run_id``, ``experiment_id``, ``status``, ``start_time``, ``artifact_uri``) and ``data``."""

    info: StoredRunInfo
    data: StoredRunData


@dataclass(frozen=True)
class ExperimentInfo:
    """An active experiment: id, name and tags."""

    experiment_id: str
    name: str
    tags: Mapping[str, str] = field(default_factory=dict)


Histories = dict[str, dict[str, list[tuple[int, int, float]]]]
"""``{metric key: {MLflow run id: [(step, timestamp ms, value), ...]}}``, NaN where MLflow stored NaN."""


# ---------------------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------------------
class StoreReader(ABC):
    """Read-only access to one MLflow store (see the module docstring). Use as a context manager or ``close()``."""

    uri: str

    @abstractmethod
    def experiments(self) -> list[ExperimentInfo]:
        """Every active experiment, by id."""

    def experiment_id(self, name: str) -> str | None:
        """The id of the active experiment called ``name``, else None."""
        return next((e.experiment_id for e in self.experiments() if e.name == name), None)

    @abstractmethod
    def runs(self, experiment_ids: Sequence[str], *, tag_equals: Mapping[str, str] | None = None,
             tag_not_in: Mapping[str, Iterable[str]] | None = None, filter_string: str | None = None,
             params: bool = False, metrics: bool = True) -> list[StoredRun]:
        """Active runs of ``experiment_ids``, newest first (start time, then run id, descending).

        ``tag_equals``: keep runs whose tag ``key`` equals ``value`` for every item; ``tag_not_in``: drop runs whose
        tag ``key`` has one of the values (runs without the tag stay); ``filter_string``: an MLflow search filter
        AND-ed in (an invalid one raises ``ValueError`` with MLflow's reason). ``params``/``metrics``: read them
        too (tags always)."""

    @abstractmethod
    def metric_histories(self, run_ids: Sequence[str], keys: Sequence[str]) -> Histories:
        """Every logged point of ``keys`` for the MLflow runs ``run_ids`` (see :data:`Histories`)."""

    @abstractmethod
    def mlflow_client(self):
        """An ``MlflowClient`` of the same store, for the few writes a reader's user makes (imports MLflow)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the connection."""

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def train_runs_by_run_id(reader: StoreReader, experiment_ids: Sequence[str], run_id: str) -> list[StoredRun]:
    """The training runs (``lgrpo.kind = train``) of ``experiment_ids`` whose ``lgrpo.run_id`` is ``run_id``, newest first."""
    from lgrpo_bench.tracking.schema import KIND_TRAIN, TAG_KIND, TAG_RUN_ID

    return reader.runs(experiment_ids, tag_equals={TAG_RUN_ID: run_id, TAG_KIND: KIND_TRAIN}, params=False)


def find_train_run(reader: StoreReader, experiment: str, run_id: str) -> StoredRun | None:
    """The training run of run id ``run_id`` in experiment ``experiment`` (None when there is none): the one lookup
    of a run by its run id. The run lifecycle creates at most one per (store, experiment) under the run's lock; should
    an older store hold two, the newest is the run's record."""
    experiment_id = reader.experiment_id(experiment)
    if experiment_id is None:
        return None
    found = train_runs_by_run_id(reader, [experiment_id], run_id)
    return found[0] if found else None


def find_train_runs_anywhere(reader: StoreReader, run_id: str) -> list[tuple[str, StoredRun]]:
    """(experiment name, training run) of every experiment holding a training run of ``run_id`` (or whose MLflow run
    id is ``run_id``), newest first."""
    from lgrpo_bench.tracking.schema import KIND_TRAIN, TAG_KIND

    experiments = reader.experiments()
    names = {e.experiment_id: e.name for e in experiments}
    found = train_runs_by_run_id(reader, list(names), run_id)
    if not found:
        found = [run for run in reader.runs(list(names)) if run.info.run_id == run_id
                 and run.data.tags.get(TAG_KIND) == KIND_TRAIN]
    return [(names[run.info.experiment_id], run) for run in found]


# ---------------------------------------------------------------------------------------------------------
# Opening
# ---------------------------------------------------------------------------------------------------------
def open_reader(uri: str | None = None, *, client: Any = None, must_exist: bool = True,
                on_wait: Callable[[str], None] | None = None) -> StoreReader | None:
    """A :class:`StoreReader` of the store at ``uri`` (resolved like every command: ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<cwd>/mlflow.db``), or of ``client``'s store.

    A SQLite store opens as a :class:`SqliteReader`; when its file does not exist, ``must_exist=False`` gives None
    (nothing has run yet) and otherwise :class:`StoreProblem`. ``on_wait(line)`` is told once when the store is
    locked and the read waits (default: a warning of the ``lgrpo_bench.store`` logger, shown on the terminal)."""
    if client is not None:
        uri = client.tracking_uri
    resolved = resolve_tracking_uri(uri)
    check_store_scheme(resolved)
    db_file = sqlite_path(resolved)
    if db_file is None:
        return ClientReader(resolved, client=client)
    if not db_file.exists():
        if not must_exist:
            return None
        raise StoreProblem(f"no MLflow store at {db_file}: nothing has run with this store yet; pass --tracking-uri "
                           "(or set $MLFLOW_TRACKING_URI) to read another one")
    return SqliteReader(db_file, resolved, client=client, on_wait=on_wait)


# ---------------------------------------------------------------------------------------------------------
# SQLite, read directly
# ---------------------------------------------------------------------------------------------------------
def _wait_s(env: str = STORE_WAIT_ENV, default: float = DEFAULT_STORE_WAIT_S) -> float:
    """Seconds from ``$env`` (finite, ≥ 0), else ``default``."""
    try:
        value = float(os.environ.get(env, default))
    except ValueError:
        return default
    return max(value, 0.0) if math.isfinite(value) else default


def wait_while_locked(action: Callable[[], T], path: Path, *, what: str = "MLflow store",
                      on_wait: Callable[[str], None] | None = None, wait_env: str = STORE_WAIT_ENV,
                      default_wait_s: float = DEFAULT_STORE_WAIT_S) -> T:
    """``action()``, retried while the SQLite database ``path`` is locked by another process: ``on_wait`` is told once
    (what, which file, how long), and after ``$wait_env`` seconds a :class:`StoreProblem` says who to look for. Other
    SQLite errors become a :class:`StoreProblem` at once (:func:`describe_sqlite_error`)."""
    say = on_wait or (lambda line: LOG.warning(line))
    deadline = None
    while True:
        try:
            return action()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise StoreProblem(describe_sqlite_error(path, error, what)) from None
            now = time.monotonic()
            wait_s = _wait_s(wait_env, default_wait_s)
            if deadline is None:
                deadline = now + wait_s
                say(f"waiting for the {what} {path}: another process holds a write lock (waiting up to {wait_s:g} s; "
                    f"${wait_env} sets how long)")
            if now >= deadline:
                raise StoreProblem(f"the {what} {path} stayed locked by another process for {wait_s:g} s; find it with "
                                   f"`fuser {path}` and let it finish (or stop it), then retry") from None
            time.sleep(0.2)
        except sqlite3.Error as error:
            raise StoreProblem(describe_sqlite_error(path, error, what)) from None


def sqlite_tables(path: Path, *, what: str, write_lock: bool = False, on_wait: Callable[[str], None] | None = None,
                  wait_env: str = STORE_WAIT_ENV, default_wait_s: float = DEFAULT_STORE_WAIT_S) -> set[str]:
    """The tables of the existing SQLite database ``path`` (a store of another program: the Optuna storage), read the
    way :class:`SqliteReader` reads (``mode=rw``: a hot journal is rolled back when the file may be written); with
    ``write_lock``, after taking and releasing the lock a writer takes. Waits for another process's lock as
    :func:`wait_while_locked` does; every trouble is a :class:`StoreProblem` naming ``what`` and the file."""

    def probe() -> set[str]:
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=0, isolation_level=None)
        try:
            if write_lock:
                connection.execute("BEGIN IMMEDIATE")
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if write_lock:
                connection.execute("ROLLBACK")
            return tables
        finally:
            connection.close()

    return wait_while_locked(probe, path, what=what, on_wait=on_wait, wait_env=wait_env, default_wait_s=default_wait_s)


class SqliteReader(StoreReader):
    """The store in the SQLite file ``path`` (see the module docstring)."""

    def __init__(self, path: str | Path, uri: str | None = None, *, client: Any = None,
                 on_wait: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.uri = uri or f"sqlite:///{self.path}"
        self._client = client
        self._fallback: ClientReader | None = None
        self._on_wait = on_wait or (lambda line: LOG.warning(line))
        self._connection: sqlite3.Connection | None = None
        self._direct = False
        try:
            # mode=rw: SQLite opens read-only by itself when the file is write-protected, and may roll back a hot
            # journal left by a killed writer when it is not (mode=ro cannot, and fails every read instead)
            self._connection = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=0.5,
                                               check_same_thread=False)
            self._direct = self._schema_is_known()
        except sqlite3.Error as error:
            self.close()
            raise self._problem(error) from None

    # -- schema ---------------------------------------------------------------------------------------
    def _schema_is_known(self) -> bool:
        """Whether the tables are read directly (a known Alembic revision, workspaces off); raises for a file that
        is not an MLflow store. An empty file (0 bytes: SQLite reads it as a database without tables) is an empty
        store."""
        tables = {row[0] for row in self._execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return True
        required = {"experiments", "experiment_tags", "runs", "tags", "params", "latest_metrics", "metrics",
                    "alembic_version"}
        if not required <= tables:
            raise StoreProblem(f"{self.path} is a SQLite database without MLflow's tables ({', '.join(sorted(required - tables))} "
                               "missing): not an MLflow store; pass --tracking-uri with the right file")
        rows = self._execute("SELECT version_num FROM alembic_version")
        revision = rows[0] if rows else None
        if revision is None or revision[0] not in KNOWN_SCHEMA_REVISIONS:
            LOG.debug("store %s has schema revision %s: read through MLflow", self.path, revision)
            return False
        return not workspaces_enabled()

    @property
    def direct(self) -> bool:
        """True when the tables are read directly; False when MLflow's client reads (see the module docstring)."""
        return self._direct

    def _client_reader(self) -> ClientReader:
        if self._fallback is None:
            self._fallback = ClientReader(self.uri, client=self._client)
        return self._fallback

    # -- reading with waits and translated errors -----------------------------------------------------
    def _execute(self, query: str, arguments: Sequence[Any] = ()) -> list[tuple]:
        """Run one read; wait for a locked store (saying so once), translate SQLite errors to :class:`StoreProblem`."""
        if self._connection is None:
            raise StoreProblem(f"the store reader of {self.path} is closed")
        connection = self._connection
        return wait_while_locked(lambda: connection.execute(query, arguments).fetchall(), self.path, on_wait=self._on_wait)

    def _problem(self, error: Exception) -> StoreProblem:
        return StoreProblem(describe_sqlite_error(self.path, error))

    # -- the interface --------------------------------------------------------------------------------
    def experiments(self) -> list[ExperimentInfo]:
        if not self._direct:
            return self._client_reader().experiments()
        if not self._has_tables():
            return []
        workspace = " AND workspace = ?" if self._has_workspaces() else ""
        rows = self._execute("SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'"
                             f"{workspace} ORDER BY experiment_id", [DEFAULT_WORKSPACE] if workspace else [])
        tags: dict[str, dict[str, str]] = {str(experiment_id): {} for experiment_id, _ in rows}
        for experiment_id, key, value in self._execute("SELECT experiment_id, key, value FROM experiment_tags"):
            if str(experiment_id) in tags:
                tags[str(experiment_id)][key] = value
        return [ExperimentInfo(str(experiment_id), name, tags[str(experiment_id)]) for experiment_id, name in rows]

    def _has_tables(self) -> bool:
        if not hasattr(self, "_tables"):
            self._tables = bool(self._execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'runs'"))
        return self._tables

    def _has_workspaces(self) -> bool:
        if not hasattr(self, "_workspaces"):
            self._workspaces = any(row[1] == "workspace" for row in self._execute("PRAGMA table_info(experiments)"))
        return self._workspaces

    def runs(self, experiment_ids, *, tag_equals=None, tag_not_in=None, filter_string=None, params=False, metrics=True):
        if not self._direct or (filter_string and filter_string.strip()):
            return self._client_reader().runs(experiment_ids, tag_equals=tag_equals, tag_not_in=tag_not_in,
                                              filter_string=filter_string, params=params, metrics=metrics)
        if not experiment_ids or not self._has_tables():
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
            for run_uuid, experiment_id, status, start_time, artifact_uri in self._execute(query, arguments)
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
                for row in self._execute(select + where, chunk):
                    target = getattr(runs[row[0]].data, table)
                    target[row[1]] = (float("nan") if row[3] else float(row[2])) if table == "metrics" else row[2]
        return list(runs.values())

    def metric_histories(self, run_ids, keys):
        if not self._direct:
            return self._client_reader().metric_histories(run_ids, keys)
        histories: Histories = {key: {} for key in keys}
        ids = list(run_ids)
        if not ids or not keys or not self._has_tables():
            return histories
        step = _CHUNK - len(keys)
        for start in range(0, len(ids), step):
            chunk = ids[start:start + step]
            query = (f"SELECT key, run_uuid, step, timestamp, value, is_nan FROM metrics WHERE key IN ({','.join('?' * len(keys))}) "
                     f"AND run_uuid IN ({','.join('?' * len(chunk))})")
            for key, run_uuid, metric_step, timestamp, value, is_nan in self._execute(query, [*keys, *chunk]):
                histories[key].setdefault(run_uuid, []).append(
                    (int(metric_step), int(timestamp), float("nan") if is_nan else float(value)))
        return histories

    def mlflow_client(self):
        return self._client_reader().client

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None


# ---------------------------------------------------------------------------------------------------------
# Any store, through MLflow's client
# ---------------------------------------------------------------------------------------------------------
class ClientReader(StoreReader):
    """The store at ``uri`` read through ``MlflowClient`` (``client``, or one opened on first use), paginated by
    ``page_size`` runs."""

    def __init__(self, uri: str, *, client: Any = None, page_size: int = _PAGE):
        self.uri = uri
        self._client = client
        self.page_size = page_size

    @property
    def client(self):
        if self._client is None:
            from lgrpo_bench.tracking.store import open_client

            self._client = open_client(self.uri)
        return self._client

    def mlflow_client(self):
        return self.client

    def experiments(self) -> list[ExperimentInfo]:
        found, token = [], None
        while True:
            page = self.client.search_experiments(max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        active = [ExperimentInfo(e.experiment_id, e.name, dict(e.tags)) for e in found if e.lifecycle_stage == "active"]
        return sorted(active, key=lambda e: (0, int(e.experiment_id), "") if e.experiment_id.isdigit() else (1, 0, e.experiment_id))

    def experiment_id(self, name: str) -> str | None:
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found is not None and found.lifecycle_stage == "active" else None

    def runs(self, experiment_ids, *, tag_equals=None, tag_not_in=None, filter_string=None, params=False, metrics=True):
        from mlflow.entities import ViewType
        from mlflow.exceptions import MlflowException

        if not experiment_ids:
            return []
        clauses = [f"tags.`{key}` = {quote_filter_value(value)}" for key, value in (tag_equals or {}).items()]
        if filter_string and filter_string.strip():
            clauses.append(filter_string.strip())
        found, token = [], None
        while True:
            try:
                page = self.client.search_runs(list(experiment_ids), filter_string=" AND ".join(clauses),
                                               run_view_type=ViewType.ACTIVE_ONLY, max_results=self.page_size,
                                               order_by=["attributes.start_time DESC", "attributes.run_id DESC"],
                                               page_token=token)
            except MlflowException as error:
                if filter_string and error.error_code == "INVALID_PARAMETER_VALUE":
                    raise ValueError(f"MLflow rejected the filter {filter_string!r}: {error.message}") from None
                raise
            found.extend(page)
            token = page.token
            if not token:
                break
        excluded = {key: set(values) for key, values in (tag_not_in or {}).items()}
        return [StoredRun(StoredRunInfo(r.info.run_id, str(r.info.experiment_id), r.info.status, r.info.start_time,
                                        r.info.artifact_uri),
                          StoredRunData(dict(r.data.tags), dict(r.data.params) if params else {},
                                        dict(r.data.metrics) if metrics else {}))
                for r in found if not any(r.data.tags.get(key) in values for key, values in excluded.items())]

    def metric_histories(self, run_ids, keys):
        histories: Histories = {key: {} for key in keys}
        for key in keys:
            for run_id in run_ids:
                points = self.client.get_metric_history(run_id, key)
                if points:
                    histories[key][run_id] = [(m.step, m.timestamp, m.value) for m in points]
        return histories
