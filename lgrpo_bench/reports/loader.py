"""Read what a report needs from the MLflow store, in bulk; the only module of ``reports`` that does I/O.

* :func:`open_store` — a SQLite store (``sqlite:///…``) opens as a :class:`SqliteStore`, read with the standard
  library through :class:`~lgrpo_bench.tracking.sqlstore.StoreReader`: no ``import mlflow`` (2–5 s on a small
  CPU), no MLflow ORM. Any other store (a tracking server, PostgreSQL) opens as an ``MlflowClient``.
* :func:`load_runs` — every train run of the selected experiments with its tags, params, latest eval metrics and
  eval identity tags (eval metrics logged into a separate ``lgrpo.kind = eval`` run are merged into the train run
  their ``mlflow.parentRunId`` names), plus the grid parent runs: a few plain queries on SQLite, one paginated
  ``search_runs`` elsewhere.
* :func:`load_histories` — step histories of a few training metrics for many runs: one query per chunk of runs on
  SQLite (table ``metrics``), MLflow's bulk read on other SQL stores, one call per run otherwise.
* :func:`load_problem_records` — the per-problem records artifact ``eval/<benchmark>/problems.jsonl``
  of the runs and benchmarks given: read in place from a local artifact folder, downloaded with MLflow (in
  parallel threads) from a remote one.

A grid's versions: with ``run_ids`` (the run ids of a grid file's current points), train runs of the selection
whose ``lgrpo.run_id`` is not among them are runs of an earlier version of the grid (a value of the file was
edited since they ran): they are left out and counted (:attr:`ReportData.earlier_versions`), or kept with
``all_versions=True``, where the row keys tell them apart by the config values that differ.

Which runs count: ``lgrpo.kind`` = ``train`` (eval runs are merged into them) with ``lgrpo.state`` in
:data:`REPORTED_STATES` (``done``, or ``trained`` with whatever evaluation is logged so far); running and
failed runs are left out and counted in :attr:`ReportData.skipped`. Two MLflow runs with the same
``lgrpo.run_id`` (the run's config hash) keep the newest. When a train run has several evaluations of a
benchmark (itself and eval children), the newest run's values win.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from lgrpo_bench.tracking import schema as t

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from lgrpo_bench.tracking.sqlstore import StoreReader

__all__ = [
    "HOST_TAG_PREFIX",
    "REPORTED_STATES",
    "ReportData",
    "ReportInputError",
    "RunRecord",
    "SqliteStore",
    "Store",
    "load_histories",
    "load_problem_records",
    "load_runs",
    "open_store",
    "resolve_experiment_ids",
]

REPORTED_STATES: tuple[str, ...] = (t.STATE_DONE, t.STATE_TRAINED)
_logger = logging.getLogger(__name__)
_PAGE_SIZE = 1000
_BULK_CHUNK = 500  # run ids per bulk history query (SQLite caps bound variables)
_DOWNLOAD_THREADS = 8
_PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
HOST_TAG_PREFIX = t.TAG_HOST_CPU.rsplit(".", 1)[0] + "."
"""``lgrpo.host.``: every tag of :mod:`~lgrpo_bench.tracking.schema` named ``TAG_HOST_*`` starts with it."""


class ReportInputError(ValueError):
    """The selection is empty, unknown or cannot be reported honestly; the message says what to do."""


@dataclass
class RunRecord:
    """One training run as a report sees it (values are fractions as logged; tags are strings)."""

    mlflow_run_id: str
    run_id: str
    algorithm: str
    model: str
    model_size: str
    seed: str
    state: str
    grid: str | None
    experiment_id: str
    start_time: int
    eval_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{benchmark: {metric: latest value}}`` from ``eval/<benchmark>/<metric>``."""
    eval_identity: dict[str, dict[str, str]] = field(default_factory=dict)
    """``{benchmark: {field: value}}`` from the tags ``lgrpo.eval.<benchmark>.<field>``."""
    eval_source: dict[str, str] = field(default_factory=dict)
    """``{benchmark: MLflow run id}`` of the run that holds the benchmark's metrics and records artifact."""
    artifact_uris: dict[str, str] = field(default_factory=dict)
    """``{MLflow run id: artifact root URI}`` of the run and of the eval runs merged into it."""
    train_metrics: dict[str, float] = field(default_factory=dict)
    """Latest value of every ``train/*`` metric."""
    params: dict[str, str] = field(default_factory=dict)
    """Every param the run logged: its flattened config (:func:`~lgrpo_bench.tracking.schema.flatten_params`) and
    ``run_id``. The row keys of a report come from here (:mod:`.keys`)."""
    tags: dict[str, str] = field(default_factory=dict)
    """Every tag of the train run (provenance, warm start, λ rate limit, ...)."""

    @property
    def label(self) -> str:
        """How messages name the run: ``<lgrpo run id> (<algorithm>, seed <seed>, MLflow <id>)``."""
        return f"{self.run_id} ({self.algorithm}, seed {self.seed}, MLflow {self.mlflow_run_id})"

    @property
    def hardware(self) -> str | None:
        """The tag ``lgrpo.hardware`` (``cpu:AMD EPYC 7B13:AVX2``); ``None`` for runs logged before it existed."""
        return self.tags.get(t.TAG_HARDWARE)

    @property
    def host(self) -> dict[str, str]:
        """``{name: value}`` of the ``lgrpo.host.*`` tags, named by their last part (``cpu``, ``torch_threads``)."""
        return {key[len(HOST_TAG_PREFIX):]: value for key, value in self.tags.items() if key.startswith(HOST_TAG_PREFIX)}

    @property
    def warm_start_out_of_band(self) -> bool:
        """The run rests on a warm start outside its preset's accuracy band (``lgrpo.warm_start.in_band = false``)."""
        return self.tags.get(t.TAG_WARM_START_IN_BAND, "").strip().lower() == "false"

    @property
    def lambda_rate_limited_frac(self) -> float | None:
        """The tag ``lgrpo.lambda.rate_limited_frac`` (share of steps λ moved at its optimizer's rate limit)."""
        try:
            return float(self.tags[t.TAG_LAMBDA_RATE_LIMITED_FRAC])
        except (KeyError, ValueError):
            return None


@dataclass
class ReportData:
    """The runs of a report and where they came from."""

    runs: list[RunRecord]
    grid_runs: dict[str, str]
    """``{MLflow run id: grid name}`` of the ``lgrpo.kind = grid`` parent runs in the selection."""
    skipped: dict[str, int]
    """``{state: count}`` of train runs left out (running, failed)."""
    selection: str
    """Human description of the selection (experiment names, filter)."""
    title: str = ""
    """What the selection is, for a page title: ``grid quickstart`` or ``experiment(s) paper``."""
    earlier_versions: list[RunRecord] = field(default_factory=list)
    """Finished train runs of the selection whose run id is not among the ``run_ids`` asked for (runs of earlier
    versions of the grid file); also in :attr:`runs` when loaded with ``all_versions``."""
    all_versions: bool = False

    @property
    def grid_parents(self) -> list[str]:
        """The grid runs of the one grid every reported run belongs to (none when runs span grids or none)."""
        grids = {run.grid for run in self.runs}
        if len(grids) != 1 or None in grids:
            return []
        name = grids.pop()
        return [run_id for run_id, grid in self.grid_runs.items() if grid == name]


class SqliteStore:
    """A SQLite MLflow store, read without MLflow (:class:`~lgrpo_bench.tracking.sqlstore.StoreReader`).

    What a report reads and writes: runs, metric histories and local artifacts through the reader; the one write
    (plots logged to the grid run) through :meth:`client`, which imports MLflow on first use.
    """

    def __init__(self, tracking_uri: str, path: Path):
        self.tracking_uri = tracking_uri
        self.path = path
        self._reader: StoreReader | None = None
        self._client: MlflowClient | None = None

    @property
    def reader(self) -> StoreReader:
        if self._reader is None:
            from lgrpo_bench.tracking.sqlstore import StoreReader

            self._reader = StoreReader(self.path)
        return self._reader

    def client(self) -> MlflowClient:
        """An ``MlflowClient`` of the same store (imports MLflow)."""
        if self._client is None:
            from lgrpo_bench.tracking import open_client

            self._client = open_client(self.tracking_uri)
        return self._client

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def readable(self) -> bool:
        """The file holds MLflow's tables (a store MLflow created, not an empty or foreign file)."""
        try:
            self.reader.experiments()
        except sqlite3.DatabaseError:
            return False
        return True


Store = Union[SqliteStore, "MlflowClient"]
"""What :func:`open_store` returns and the ``load_*`` functions take."""


def open_store(tracking: Store | str | None) -> Store:
    """The store of ``tracking`` (a :class:`SqliteStore`, an ``MlflowClient``, a URI, or ``None`` for the default
    store). A SQLite URI must name an existing store (a report never creates one), else :class:`ReportInputError`;
    it opens as a :class:`SqliteStore` (no MLflow import) unless its file lacks MLflow's tables (then MLflow opens
    and migrates it, as before). Other URIs open an ``MlflowClient``."""
    if tracking is not None and not isinstance(tracking, str):
        return tracking
    from lgrpo_bench.tracking import open_client, resolve_tracking_uri, sqlite_path

    resolved = resolve_tracking_uri(tracking)
    db_file = sqlite_path(resolved)
    if db_file is not None:
        if not db_file.is_file():
            raise ReportInputError(f"no MLflow store at {db_file} ({resolved}); pass --tracking-uri or set $MLFLOW_TRACKING_URI")
        store = SqliteStore(resolved, db_file)
        if store.readable():
            return store
        store.close()
    return open_client(resolved)


def _sqlite_reader(store: Store) -> StoreReader | None:
    """The MLflow-free reader of ``store`` when it is a SQLite store (also an ``MlflowClient`` of one), else ``None``."""
    if isinstance(store, SqliteStore):
        return store.reader
    from lgrpo_bench.tracking import sqlite_path

    db_file = sqlite_path(getattr(store, "tracking_uri", "") or "")
    if db_file is None or not db_file.is_file():
        return None
    sqlite_store = SqliteStore(store.tracking_uri, db_file)
    return sqlite_store.reader if sqlite_store.readable() else None


def resolve_experiment_ids(client: Store, names: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(ids, names) of the named active experiments, or of every active experiment when ``names`` is empty.

    Raises :class:`ReportInputError` naming each experiment that does not exist or is deleted.
    """
    if isinstance(client, SqliteStore):
        experiments = client.reader.experiments()
        active = {name: experiment_id for experiment_id, name in experiments}
    else:
        experiments = [(e.experiment_id, e.name) for e in _all_experiments(client)]
        active = None
    if names:
        ids, missing = [], []
        for name in names:
            if active is not None:
                experiment_id = active.get(name)
            else:
                experiment = client.get_experiment_by_name(name)
                experiment_id = experiment.experiment_id if experiment is not None and experiment.lifecycle_stage == "active" else None
            if experiment_id is None:
                missing.append(name)
            else:
                ids.append(experiment_id)
        if missing:
            known = sorted(name for _, name in experiments)
            raise ReportInputError(
                f"no experiment named {', '.join(repr(m) for m in missing)} in {client.tracking_uri}; "
                f"experiments there: {', '.join(known) or '(none)'}"
            )
        return ids, list(names)
    return [experiment_id for experiment_id, _ in experiments], [name for _, name in experiments]


def _all_experiments(client: MlflowClient) -> list:
    experiments, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            return experiments


def _search_all(client: MlflowClient, experiment_ids: Sequence[str], filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            list(experiment_ids), filter_string=filter_string, max_results=_PAGE_SIZE,
            order_by=["attributes.start_time ASC"], page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


@dataclass
class _StoredRun:
    """The parts of an MLflow ``Run`` that :func:`load_runs` reads (``info`` and ``data`` look alike)."""

    info: object
    data: object


_SQL_RUNS = (
    "SELECT run_uuid, experiment_id, start_time, artifact_uri FROM runs "
    "WHERE experiment_id IN :experiments AND lifecycle_stage = 'active'"
)
_SQL_TAG = " AND run_uuid IN (SELECT run_uuid FROM tags WHERE key = :tag_key_{i} AND value = :tag_value_{i})"
_SQL_CHILDREN = {
    "tags": "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN :runs",
    "params": "SELECT run_uuid, key, value FROM params WHERE run_uuid IN :runs",
    "metrics": "SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN :runs",
}


def _search_sql(client: MlflowClient, experiment_ids: Sequence[str], tags: Mapping[str, str]) -> list[_StoredRun] | None:
    """The runs :func:`_search_all` would return without a filter (or with tag equalities), read from a SQL store
    in four queries (runs, tags, params, latest metrics) instead of MLflow's ORM, which builds one Python
    object per tag, param and metric (about 8 s for 1,000 runs × 9 benchmarks here, against 0.2 s).

    Reads MLflow's tables ``runs``, ``tags``, ``params`` and ``latest_metrics`` (stable since MLflow 1.x);
    ``None`` for stores that are not SQL databases, so the caller falls back to ``search_runs``.
    """
    from types import SimpleNamespace

    engine = getattr(getattr(getattr(client, "_tracking_client", None), "store", None), "engine", None)
    if engine is None:
        return None
    from sqlalchemy import bindparam, text

    runs_query = _SQL_RUNS + "".join(_SQL_TAG.format(i=i) for i in range(len(tags))) + " ORDER BY start_time ASC, run_uuid ASC"
    parameters: dict = {"experiments": [int(i) if str(i).isdigit() else i for i in experiment_ids]}
    for i, (key, value) in enumerate(tags.items()):
        parameters |= {f"tag_key_{i}": key, f"tag_value_{i}": value}
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(runs_query).bindparams(bindparam("experiments", expanding=True)), parameters).fetchall()
            runs = {
                run_uuid: _StoredRun(
                    SimpleNamespace(run_id=run_uuid, experiment_id=str(experiment_id), start_time=start_time, artifact_uri=artifact_uri),
                    SimpleNamespace(tags={}, params={}, metrics={}),
                )
                for run_uuid, experiment_id, start_time, artifact_uri in rows
            }
            ids = list(runs)
            for start in range(0, len(ids), _BULK_CHUNK):
                chunk = ids[start:start + _BULK_CHUNK]
                for table, query in _SQL_CHILDREN.items():
                    statement = text(query).bindparams(bindparam("runs", expanding=True))
                    for row in connection.execute(statement, {"runs": chunk}):
                        target = getattr(runs[row[0]].data, table)
                        target[row[1]] = (float("nan") if row[3] else float(row[2])) if table == "metrics" else row[2]
    except Exception as error:  # noqa: BLE001 - a schema this code does not know: use MLflow's own search
        _logger.debug("SQL fast path unavailable (%s); using search_runs", error)
        return None
    return list(runs.values())


def _eval_parts(run: Run) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, str]]]:
    metrics: dict[str, dict[str, float]] = {}
    for name, value in run.data.metrics.items():
        if name.startswith(t.EVAL_PREFIX):
            try:
                benchmark, metric = t.parse_eval_metric(name)
            except ValueError:
                continue
            if benchmark != t.TRAINER_EVAL_BENCHMARK:
                metrics.setdefault(benchmark, {})[metric] = float(value)
    identity: dict[str, dict[str, str]] = {}
    for key, value in run.data.tags.items():
        if key.startswith(t.EVAL_TAG_PREFIX):
            benchmark, _, field_name = key[len(t.EVAL_TAG_PREFIX):].rpartition(".")
            if benchmark and field_name in t.EVAL_IDENTITY_FIELDS:
                identity.setdefault(benchmark, {})[field_name] = value
    return metrics, identity


def load_runs(
    client: Store,
    experiment_names: Sequence[str] | None = None,
    *,
    grid: str | None = None,
    filter_string: str | None = None,
    fast: bool = True,
    tags: Mapping[str, str] | None = None,
    run_ids: Collection[str] | None = None,
    all_versions: bool = False,
) -> ReportData:
    """The reportable train runs of the selection, with eval runs merged in (see the module doc).

    Without ``filter_string``, SQLite stores are read with plain queries (:class:`~lgrpo_bench.tracking.sqlstore.StoreReader`,
    no MLflow import) and other SQL stores with four SQL queries (:func:`_search_sql`), both giving what
    ``search_runs`` gives; ``fast=False`` or a filter uses MLflow's ``search_runs`` (paginated).

    Args:
        experiment_names: experiments to read; ``None``/empty = every active experiment of the store.
        grid: keep runs whose ``lgrpo.grid`` tag is this name.
        tags: keep runs with each of these tag values (``{"lgrpo.model": "tiny-s"}``); like ``grid``, eval runs
            merged into a train run must carry them too.
        filter_string: an MLflow search filter AND-ed in (``"tags.`lgrpo.model_size` = '0.5B'"``).
        run_ids: the current run ids of the grid file (``lgrpo.run_id`` values): other finished train runs of the
            selection are earlier versions, left out (:attr:`ReportData.earlier_versions`) unless ``all_versions``.
    Raises:
        ReportInputError: unknown experiment, a filter MLflow rejects, or no reportable run.
    """
    ids, names = resolve_experiment_ids(client, experiment_names)
    wanted_tags = dict(tags or {}) | ({t.TAG_GRID: grid} if grid is not None else {})
    clauses = [f"tags.`{key}` = {_quote(value)}" for key, value in wanted_tags.items()]
    if filter_string and filter_string.strip():
        clauses.append(filter_string.strip())
    where = " AND ".join(clauses)
    described = f"experiment(s) {', '.join(names) or '(none)'}" + (f" where {where}" if where else "")
    title = f"grid {grid}" if grid is not None else f"experiment{'s' if len(names) != 1 else ''} {', '.join(names) or '(none)'}"
    if not ids:
        raise ReportInputError(f"{client.tracking_uri} has no experiment to report")
    found = None
    if fast and not (filter_string and filter_string.strip()):
        reader = _sqlite_reader(client)
        if reader is not None:  # oldest first, like the search below
            found = list(reversed(reader.runs(ids, tag_equals=wanted_tags, params=True, metrics=True)))
        elif not isinstance(client, SqliteStore):
            found = _search_sql(client, ids, wanted_tags)
    if found is None:
        from mlflow.exceptions import MlflowException

        mlflow_client = client.client() if isinstance(client, SqliteStore) else client
        try:
            found = _search_all(mlflow_client, ids, where)
        except MlflowException as error:
            raise ReportInputError(f"MLflow rejected the filter {where!r}: {error.message}") from None

    trains: dict[str, RunRecord] = {}
    grid_runs: dict[str, str] = {}
    skipped: dict[str, int] = {}
    evals: list[Run] = []
    for run in found:  # oldest first: a newer run with the same lgrpo.run_id replaces an older one
        run_tags = run.data.tags
        kind = run_tags.get(t.TAG_KIND)
        if kind == t.KIND_GRID:
            grid_runs[run.info.run_id] = run_tags.get(t.TAG_GRID, "")
            continue
        if kind == t.KIND_EVAL:
            evals.append(run)
            continue
        if kind != t.KIND_TRAIN:
            continue
        state = run_tags.get(t.TAG_STATE, "")
        if state not in REPORTED_STATES:
            if run_ids is None or run_tags.get(t.TAG_RUN_ID, run.info.run_id) in run_ids:
                skipped[state or "unknown"] = skipped.get(state or "unknown", 0) + 1
            continue
        metrics, identity = _eval_parts(run)
        record = RunRecord(
            mlflow_run_id=run.info.run_id,
            run_id=run_tags.get(t.TAG_RUN_ID, run.info.run_id),
            algorithm=run_tags.get(t.TAG_ALGORITHM, "?"),
            model=run_tags.get(t.TAG_MODEL, "?"),
            model_size=run_tags.get(t.TAG_MODEL_SIZE) or run_tags.get(t.TAG_MODEL, "?"),
            seed=run_tags.get(t.TAG_SEED, "?"),
            state=state,
            grid=run_tags.get(t.TAG_GRID),
            experiment_id=run.info.experiment_id,
            start_time=int(run.info.start_time or 0),
            eval_metrics=metrics,
            eval_identity=identity,
            eval_source={benchmark: run.info.run_id for benchmark in metrics},
            artifact_uris={run.info.run_id: run.info.artifact_uri},
            train_metrics={k: float(v) for k, v in run.data.metrics.items() if k.startswith(t.TRAIN_PREFIX)},
            params=dict(run.data.params),
            tags=dict(run_tags),
        )
        trains[record.run_id] = record
    by_mlflow_train = {record.mlflow_run_id: record for record in trains.values()}
    for run in evals:  # oldest first, so the newest evaluation of a benchmark wins
        parent = by_mlflow_train.get(run.data.tags.get(t.TAG_PARENT_RUN_ID, ""))
        if parent is None:
            continue
        metrics, identity = _eval_parts(run)
        for benchmark, values in metrics.items():
            parent.eval_metrics[benchmark] = values
            parent.eval_identity[benchmark] = identity.get(benchmark, {})
            parent.eval_source[benchmark] = run.info.run_id
        parent.artifact_uris[run.info.run_id] = run.info.artifact_uri
    order = lambda r: (r.model_size, r.algorithm, _seed_key(r.seed), r.start_time)  # noqa: E731
    earlier = sorted((r for r in trains.values() if run_ids is not None and r.run_id not in run_ids), key=order)
    runs = sorted((r for r in trains.values() if all_versions or run_ids is None or r.run_id in run_ids), key=order)
    if not runs:
        left_out = ", ".join(f"{count} {state}" for state, count in sorted(skipped.items()))
        which = "no finished train run" + (" of the grid file's current points" if run_ids is not None else "")
        raise ReportInputError(
            f"{which} in {described} ({client.tracking_uri})"
            + (f"; left out: {left_out}" if left_out else "")
            + (f"; {len(earlier)} runs of earlier versions of this grid (run ids no longer in the grid file): "
               "--all-versions includes them" if earlier else "; check the experiment name (--experiment), the grid name or the filter")
        )
    return ReportData(runs=runs, grid_runs=grid_runs, skipped=skipped, selection=described, title=title,
                      earlier_versions=earlier, all_versions=all_versions)


def _seed_key(seed: str) -> tuple[int, str]:
    return (int(seed), seed) if seed.lstrip("-").isdigit() else (1 << 62, seed)


def _quote(value: str) -> str:
    from lgrpo_bench.tracking.store import quote_filter_value

    try:
        return quote_filter_value(value)
    except ValueError as error:
        raise ReportInputError(str(error)) from None


def load_histories(
    client: Store, run_ids: Sequence[str], metric_keys: Iterable[str], *, fast: bool = True,
) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """``{metric: {mlflow run id: (steps, values)}}`` sorted by step, for runs that logged the metric.

    SQLite stores answer one query per chunk of run ids (:meth:`~lgrpo_bench.tracking.sqlstore.StoreReader.metric_histories`,
    no MLflow); other SQL stores one query per metric and chunk (``get_metric_history_bulk`` of MLflow's SQLAlchemy
    store, which ``MlflowClient`` does not expose); other stores, and ``fast=False``, one call per run and metric.
    A step logged twice (a resumed run) keeps its latest value.
    """
    keys = list(dict.fromkeys(metric_keys))
    reader = _sqlite_reader(client) if fast else None
    raw: dict[str, dict[str, list[tuple[int, int, float]]]] = {}
    if reader is not None:
        raw = reader.metric_histories(run_ids, keys)
    else:
        mlflow_client = client.client() if isinstance(client, SqliteStore) else client
        store = getattr(getattr(mlflow_client, "_tracking_client", None), "store", None)
        bulk = getattr(store, "get_metric_history_bulk", None) if fast else None
        for key in keys:
            points = raw.setdefault(key, {})
            if bulk is not None:
                for start in range(0, len(run_ids), _BULK_CHUNK):
                    for item in bulk(list(run_ids[start:start + _BULK_CHUNK]), key, None):
                        points.setdefault(item.run_id, []).append((item.step, item.timestamp, item.value))
            else:
                for run_id in run_ids:
                    for metric in mlflow_client.get_metric_history(run_id, key):
                        points.setdefault(run_id, []).append((metric.step, metric.timestamp, metric.value))
    histories: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for key in keys:
        per_run = {}
        for run_id, values in raw.get(key, {}).items():
            latest: dict[int, float] = {}
            for step, _, value in sorted(values, key=lambda point: (point[0], point[1])):
                latest[int(step)] = float(value)
            steps = sorted(latest)
            per_run[run_id] = (steps, [latest[s] for s in steps])
        histories[key] = per_run
    return histories


def load_problem_records(
    client: Store, requests: Iterable[tuple[str, str]], artifact_uris: Mapping[str, str] | None = None
) -> dict[tuple[str, str], list[dict] | None]:
    """``{(mlflow run id, benchmark): records or None}`` for each requested pair.

    Reads the artifact ``eval/<benchmark>/problems.jsonl`` (:func:`~lgrpo_bench.tracking.schema.eval_records_artifact_dir`);
    a run without it gives ``None`` (its statistics show as missing). With ``artifact_uris`` (``{run id:
    artifact root}``, as :attr:`RunRecord.artifact_uris` holds them) the files are read from the artifact
    store directly, without one tracking-store query per file; local artifact folders are read in place (no MLflow
    import), remote ones downloaded with MLflow.
    """
    wanted = list(dict.fromkeys(requests))
    if not wanted:
        return {}
    roots = artifact_uris or {}
    with tempfile.TemporaryDirectory(prefix="lgrpo-report-") as scratch:

        def fetch(item: tuple[str, str]) -> list[dict] | None:
            run_id, benchmark = item
            path = f"{t.eval_records_artifact_dir(benchmark)}/{t.EVAL_RECORDS_FILENAME}"
            local_root = _local_artifact_root(roots.get(run_id))
            if local_root is not None:  # a local artifact store: read in place, no copy
                return _read_jsonl(local_root / path) if (local_root / path).is_file() else None
            target = Path(scratch) / f"{run_id}-{abs(hash(benchmark))}"
            target.mkdir()
            try:
                if run_id in roots:
                    from mlflow.artifacts import download_artifacts

                    local = download_artifacts(artifact_uri=f"{roots[run_id].rstrip('/')}/{path}", dst_path=str(target))
                else:
                    mlflow_client = client.client() if isinstance(client, SqliteStore) else client
                    local = mlflow_client.download_artifacts(run_id, path, str(target))
            except Exception:  # noqa: BLE001 - a missing artifact is reported as missing data
                return None
            return _read_jsonl(Path(local)) if os.path.isfile(local) else None

        quiet = os.environ.get(_PROGRESS_BAR_VARIABLE)
        os.environ[_PROGRESS_BAR_VARIABLE] = "false"  # one progress bar per artifact would flood the terminal
        try:
            with ThreadPoolExecutor(max_workers=_DOWNLOAD_THREADS) as pool:
                return dict(zip(wanted, pool.map(fetch, wanted)))
        finally:
            if quiet is None:
                os.environ.pop(_PROGRESS_BAR_VARIABLE, None)
            else:
                os.environ[_PROGRESS_BAR_VARIABLE] = quiet


def _local_artifact_root(uri: str | None) -> Path | None:
    """The folder of a ``file://`` (or scheme-less) artifact root; ``None`` for remote stores."""
    if not uri:
        return None
    parts = urllib.parse.urlparse(uri)
    if parts.scheme not in ("", "file") or (parts.scheme == "file" and parts.netloc not in ("", "localhost")):
        return None
    return Path(urllib.parse.unquote(parts.path))


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
