"""Where MLflow data goes, and safe ways to open it from many processes at once.

Contracts:

* :func:`resolve_tracking_uri` — the configured URI, else ``$MLFLOW_TRACKING_URI``, else
  ``sqlite:///<cwd>/mlflow.db``. Relative SQLite paths are made absolute against the current directory, so
  processes started elsewhere (sweep workers, notebooks) write to the same file.
* :func:`open_client` — an ``MlflowClient`` whose store is initialized. Creating a fresh SQLite store runs
  MLflow's schema migrations, and two processes doing that on the same new file at once fail with errors
  like ``duplicate column name: step`` (observed with MLflow 3.17); ``open_client`` serializes that first
  initialization with a file lock. Remote stores are checked with :func:`check_reachable` first.
* :func:`get_or_create_experiment` — safe when several processes create the same experiment at once.
* :func:`check_reachable` — raises :class:`TrackingUnavailable` within ``timeout_s`` when an ``http(s)://``
  store does not answer (or a SQLite file cannot be created), naming the URI and what to do.
* :func:`ui_command` / :func:`start_ui` — the ``mlflow ui`` command, bound to 127.0.0.1 by default (the UI
  has no authentication; binding to a public interface exposes every run to the network), started under a
  supervisor so that stopping it stops uvicorn and its workers too (:mod:`lgrpo_bench.tracking.serve`).
* :func:`set_grid_view` — experiment tags that make the MLflow UI open a grid's training runs, grouped by
  configuration with their eval metrics, instead of its GenAI overview; :func:`grid_views` lists them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mlflow is imported lazily: importing it costs about a second
    from mlflow import MlflowClient

__all__ = [
    "DEFAULT_DB_FILENAME",
    "TrackingUnavailable",
    "check_reachable",
    "get_or_create_experiment",
    "open_client",
    "resolve_tracking_uri",
    "sqlite_path",
    "workspaces_enabled",
    "experiment_runs_route",
    "grid_view_key",
    "grid_view_state",
    "grid_views",
    "set_grid_view",
    "start_ui",
    "ui_base_url",
    "ui_command",
    "ui_links",
]

DEFAULT_DB_FILENAME = "mlflow.db"
_SQLITE_PREFIX = "sqlite:///"


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be used (not answering, not writable, or not MLflow)."""


# ---------------------------------------------------------------------------------------------------------
# URIs
# ---------------------------------------------------------------------------------------------------------
def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URI (absolute or relative as written), else ``None``.

    ``sqlite:///:memory:`` and ``sqlite://`` (in-memory) also give ``None``.
    """
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    raw = urllib.parse.unquote(uri[len(_SQLITE_PREFIX) :].split("?", 1)[0])
    if not raw or raw == ":memory:":
        return None
    return Path(raw)


def resolve_tracking_uri(configured: str | None) -> str:
    """The tracking URI to use: ``configured`` > ``$MLFLOW_TRACKING_URI`` > ``sqlite:///<cwd>/mlflow.db``.

    Empty or blank values count as unset. A relative SQLite path (``sqlite:///mlflow.db``) is made absolute
    against the current working directory; other URIs come back as given.
    """
    for candidate in (configured, os.environ.get("MLFLOW_TRACKING_URI")):
        if candidate is not None and candidate.strip():
            return _absolute_sqlite(candidate.strip())
    return _SQLITE_PREFIX + str(Path.cwd().resolve() / DEFAULT_DB_FILENAME)


def _absolute_sqlite(uri: str) -> str:
    path = sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else None
    absolute = _SQLITE_PREFIX + str((Path.cwd() / path).resolve())
    return f"{absolute}?{query}" if query else absolute


# ---------------------------------------------------------------------------------------------------------
# Reachability
# ---------------------------------------------------------------------------------------------------------
def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`TrackingUnavailable` unless the store at ``uri`` can be used; return ``None`` otherwise.

    * ``http(s)://``: connects to the host and requests ``<uri>/health`` (MLflow's server answers ``OK``);
      the whole check, name resolution included, ends within about ``timeout_s`` seconds. Refused
      connections, timeouts, 404 on ``/health`` and 5xx answers raise; other answers (401/403 from an
      authenticating proxy included) count as reachable.
    * ``sqlite:///``: the database's folder must exist or be creatable, and be writable.
    * anything else (``file:``, ``databricks``, ...): not checked.
    """
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        _check_http(uri, timeout_s)
    elif scheme == "sqlite":
        _check_sqlite(uri)


def _check_http(uri: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname
    if not host:
        raise TrackingUnavailable(f"tracking URI {uri!r} has no host; expected e.g. http://127.0.0.1:5000")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    advice = (
        f"Start the server (e.g. `mlflow server --host 127.0.0.1 --port {port}` with a --backend-store-uri), "
        f"fix tracking.uri / $MLFLOW_TRACKING_URI, or unset both to log to a local sqlite:///<cwd>/mlflow.db."
    )
    try:
        addresses = _resolve_with_timeout(host, port, timeout_s)
    except OSError as error:
        raise TrackingUnavailable(f"MLflow tracking server {uri} is unreachable: cannot resolve {host!r} ({error}). {advice}") from error
    connected = False
    last_error: OSError | None = None
    for family, socktype, proto, _, address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            last_error = TimeoutError(f"no answer within {timeout_s:g} s")
            break
        try:
            with socket.socket(family, socktype, proto) as probe:
                probe.settimeout(remaining)
                probe.connect(address)
            connected = True
            break
        except OSError as error:
            last_error = error
    if not connected:
        reason = last_error or OSError("no address to connect to")
        raise TrackingUnavailable(f"MLflow tracking server {uri} is unreachable ({reason}). {advice}") from last_error

    from urllib.error import HTTPError, URLError  # with urllib.request: 25 ms of imports only a server check needs
    from urllib.request import urlopen

    health_url = uri.rstrip("/") + "/health"
    remaining = max(deadline - time.monotonic(), 0.05)
    try:
        with urlopen(health_url, timeout=remaining) as response:  # noqa: S310 (http(s) only)
            response.read(64)
    except HTTPError as error:
        if error.code == 404:
            raise TrackingUnavailable(
                f"{uri} answered but has no MLflow /health endpoint (HTTP 404): it does not look like an MLflow "
                f"tracking server. Check the host, port and path in tracking.uri / $MLFLOW_TRACKING_URI."
            ) from error
        if error.code >= 500:
            raise TrackingUnavailable(
                f"MLflow tracking server {uri} answered /health with HTTP {error.code}; check the server's logs. {advice}"
            ) from error
    except (URLError, OSError) as error:
        raise TrackingUnavailable(f"MLflow tracking server {uri} did not answer /health within {timeout_s:g} s ({error}). {advice}") from error


def _resolve_with_timeout(host: str, port: int, timeout_s: float) -> list:
    """``getaddrinfo`` bounded in time (it has no timeout of its own); literal IPs skip resolution."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 0, "", (host, port))]
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError as error:
            raise OSError(f"name resolution took over {timeout_s:g} s") from error
    finally:
        pool.shutdown(wait=False)


def _check_sqlite(uri: str) -> None:
    path = sqlite_path(uri)
    if path is None:
        return
    from lgrpo_bench.tracking.reader import StoreProblem

    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrackingUnavailable(
            f"cannot create the folder {folder} of the SQLite tracking store {uri} ({error}); "
            f"choose a writable path in tracking.uri / $MLFLOW_TRACKING_URI"
        ) from error
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise StoreProblem(
            f"the MLflow store {path} is read-only (this user cannot write "
            f"{path if path.exists() and not os.access(path, os.W_OK) else folder}): give write access to the file "
            "and its folder, or choose another store with tracking.uri / $MLFLOW_TRACKING_URI; `report` and `status` "
            "only read and work on a read-only store"
        )


def workspaces_enabled() -> bool:
    """MLflow's workspaces (``$MLFLOW_ENABLE_WORKSPACES``, off by default); with them on, stores are read through MLflow."""
    return os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------------------
# Clients and experiments
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _sqlite_init_lock(db_file: Path) -> Iterator[None]:
    """Exclusive inter-process lock held while a process opens (and maybe creates/migrates) the SQLite store
    ``db_file``.

    One lock file per store (named by a hash of its path) in the temp folder: opening an existing store takes
    milliseconds, and the file leaves nothing in the project. Per store, not per user: a process that is slow to
    open one store (another writer holds it, a stopped process holds its lock) never delays the opening of another.
    A no-op where ``fcntl`` is missing (Windows), where concurrent first use stays unsafe.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    import hashlib

    user = os.getuid() if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(str(db_file.expanduser().absolute()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"lgrpo-mlflow-init-{user}-{digest}.lock"
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_client(uri: str | None = None, *, timeout_s: float = 5.0) -> MlflowClient:
    """An ``MlflowClient`` for ``resolve_tracking_uri(uri)`` with its store ready to use.

    Checks the store with :func:`check_reachable` first (raising :class:`TrackingUnavailable`). For SQLite,
    the store's first initialization (creating tables, running migrations) happens under an inter-process
    lock, so many workers may open a brand-new database at once.
    """
    from mlflow import MlflowClient

    from lgrpo_bench.tracking.reader import check_store_scheme, store_problem

    resolved = resolve_tracking_uri(uri)
    check_store_scheme(resolved)
    check_reachable(resolved, timeout_s=timeout_s)
    db_file = sqlite_path(resolved)
    if db_file is None:
        return MlflowClient(tracking_uri=resolved)
    with _sqlite_init_lock(db_file):
        # MlflowClient() builds the store, and with it creates/migrates the database: one process at a time
        try:
            client = MlflowClient(tracking_uri=resolved)
            client.search_experiments(max_results=1)
        except Exception as error:  # a corrupt, foreign or locked file: one line, not MLflow's traceback
            problem = store_problem(error, resolved)
            if problem is None:
                raise
            raise problem from None
    return client


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of the active experiment called ``name``, creating it if needed.

    Safe under races: when another process creates it between our lookup and our create, MLflow answers
    ``RESOURCE_ALREADY_EXISTS`` and we read the winner's id. Raises ``RuntimeError`` when the experiment
    exists but is deleted (MLflow keeps the name reserved) — restore it or choose another name.
    """
    from mlflow.exceptions import MlflowException

    existing = client.get_experiment_by_name(name)
    if existing is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS" and "already exists" not in str(error).lower():
                raise
        existing = client.get_experiment_by_name(name)
        if existing is None:
            raise RuntimeError(f"experiment {name!r} was reported as existing but cannot be read back from {client.tracking_uri}")
    if existing.lifecycle_stage != "active":
        raise RuntimeError(
            f"experiment {name!r} (id {existing.experiment_id}) in {client.tracking_uri} is deleted, and MLflow keeps "
            f"its name reserved. Restore it (`mlflow experiments restore --experiment-id {existing.experiment_id}`), "
            f"delete it for good (`mlflow gc --backend-store-uri {client.tracking_uri}`), or use another "
            f"tracking.experiment name."
        )
    return existing.experiment_id


def quote_filter_value(value: str) -> str:
    """A string value for an MLflow filter: in single quotes, or double quotes when it holds a single quote."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"MLflow filter strings cannot hold a value with both ' and \": {value!r}")


# ---------------------------------------------------------------------------------------------------------
# UI
# ---------------------------------------------------------------------------------------------------------
UI_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
"""Environment of ``mlflow ui`` unless the caller's sets these: no GenAI job runner (an extra process lgrpo-bench
never uses, started with the server; its jobs would leave the server's process group), no usage telemetry (its
exit hook waits seconds on a network call, which delays stopping the UI)."""


def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000, workers: int | None = None) -> list[str]:
    """The argv of ``mlflow ui`` for the store at ``uri``, run with this interpreter's MLflow.

    ``host`` defaults to 127.0.0.1: the UI has no authentication, so only bind a public interface
    (``0.0.0.0``) on a trusted network. ``workers``: uvicorn worker processes (None: MLflow's default, 4).
    """
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be in 1..65535, got {port}")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    if workers is not None:
        if int(workers) < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        command += ["--workers", str(int(workers))]
    return command + ["--host", host, "--port", str(int(port))]


def start_ui(uri: str, host: str = "127.0.0.1", port: int = 5000, *, workers: int | None = None,
             stdout=None, stderr=None) -> subprocess.Popen:
    """Start ``mlflow ui`` (see :func:`ui_command`) under a supervisor and return the supervisor's process.

    ``process.terminate()`` stops the UI and every process it started (uvicorn and its workers) within a few
    seconds, and so does the death of the calling process, even by SIGKILL (see
    :mod:`lgrpo_bench.tracking.serve`; :func:`lgrpo_bench.tracking.serve.serve_foreground` runs it in the
    foreground). ``stdout``/``stderr``: where the server's output goes (default: ours). Browse to
    ``http://<host>:<port>``.
    """
    from lgrpo_bench.tracking.serve import start_supervised

    if host not in ("127.0.0.1", "localhost", "::1"):
        import logging

        logging.getLogger(__name__).warning(
            "starting the MLflow UI on %s: it has no authentication, anyone who can reach this host can read "
            "(and delete) runs. Use host=127.0.0.1 and an SSH tunnel unless the network is trusted.",
            host,
        )
    env = {**UI_SERVER_ENV, **os.environ}
    return start_supervised(ui_command(uri, host=host, port=port, workers=workers), env=env, stdout=stdout, stderr=stderr)


def ui_base_url(host: str, port: int) -> str:
    """``http://<host>:<port>`` (IPv6 literals in brackets); ``0.0.0.0``/``::`` are shown as this machine's loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def experiment_runs_route(experiment_id: str, share_key: str | None = None) -> str:
    """The UI route (after the base URL) of an experiment's runs table in the "Model training" view.

    ``workflowType=machine_learning`` overrides the UI's remembered GenAI/Model-training switch for this page;
    ``viewStateShareKey`` opens a saved view (see :func:`set_grid_view`).
    """
    query = {"workflowType": "machine_learning"}
    if share_key:
        query["viewStateShareKey"] = share_key
    return f"#/experiments/{urllib.parse.quote(str(experiment_id))}/runs?{urllib.parse.urlencode(query)}"


def grid_view_key(grid: str) -> str:
    """The share key of grid ``grid``'s saved view: ``lgrpo-grid-<grid>``."""
    from lgrpo_bench.tracking.schema import GRID_VIEW_KEY_PREFIX

    return f"{GRID_VIEW_KEY_PREFIX}{grid}"


def grid_view_state(grid: str, *, metrics: Sequence[str] = (), group_by: Sequence[str] = ()) -> dict:
    """The saved view of a grid (the JSON the UI reads from ``mlflow.sharedViewState.<key>``).

    Filter: the grid's training runs (``lgrpo.in_grid.<grid>`` = true, ``lgrpo.kind`` = train: every current point,
    also runs another grid made first), so they are listed themselves and not collapsed under the grid's parent run. Rows: grouped by the params ``group_by``
    (the config keys that tell the grid's configurations apart; default: the algorithm tag), each group
    expanded with its runs (seeds) and a group row holding the average. Columns: the group keys, seed, state,
    then ``metrics`` (e.g. ``eval/math500/acc``). Newest runs first within a group.
    """
    from lgrpo_bench.tracking import schema as t

    def column(kind: str, key: str) -> str:
        return f"{kind}.`{key}`"

    if group_by:
        keys = [{"mode": "param", "groupByData": key} for key in group_by]
        group_columns = [column("params", key) for key in group_by]
    else:
        keys = [{"mode": "tag", "groupByData": t.TAG_ALGORITHM}]
        group_columns = [column("tags", t.TAG_ALGORITHM)]
    return {
        "searchFilter": f"tags.`{t.grid_member_tag(grid)}` = 'true' AND tags.`{t.TAG_KIND}` = '{t.KIND_TRAIN}'",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "selectedColumns": [*group_columns, column("tags", t.TAG_SEED), column("tags", t.TAG_STATE),
                            *(column("metrics", name) for name in metrics)],
        "groupBy": {"aggregateFunction": "average", "groupByKeys": keys},
        "runListHidden": False,
        "viewMaximized": False,
    }


def set_grid_view(client: MlflowClient, experiment_id: str, grid: str, *, metrics: Sequence[str] = (),
                  group_by: Sequence[str] = ()) -> str:
    """Make the MLflow UI open experiment ``experiment_id`` on grid ``grid``'s runs; return the view's route.

    Writes two experiment tags (idempotent; safe to call at every grid start, from several processes):

    * ``mlflow.experimentKind`` = ``custom_model_development``, unless a user chose a kind: the experiment then
      opens on its runs table, not on the GenAI overview;
    * ``mlflow.sharedViewState.lgrpo-grid-<grid>`` = :func:`grid_view_state` (``metrics``: MLflow metric keys to
      show as columns, e.g. ``eval/arith/acc``; ``group_by``: param keys, e.g. ``algorithm.name``).

    Returns the route to append to the UI's base URL (``#/experiments/<id>/runs?...&viewStateShareKey=...``,
    see :func:`experiment_runs_route`). MLflow 3.x UI; older UIs ignore both tags.
    """
    import json

    from lgrpo_bench.tracking import schema as t

    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(t.TAG_EXPERIMENT_KIND, "") in t.EXPERIMENT_KINDS_INFERRED:
        client.set_experiment_tag(experiment_id, t.TAG_EXPERIMENT_KIND, t.EXPERIMENT_KIND_TRAINING)
    key = grid_view_key(grid)
    state = json.dumps(grid_view_state(grid, metrics=metrics, group_by=group_by), separators=(",", ":"))
    if experiment.tags.get(t.SHARED_VIEW_TAG_PREFIX + key) != state:
        client.set_experiment_tag(experiment_id, t.SHARED_VIEW_TAG_PREFIX + key, state)
    return experiment_runs_route(experiment_id, key)


def _views_of(experiments: Sequence[tuple[str, str]], tags: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    from lgrpo_bench.tracking import schema as t

    prefix = t.SHARED_VIEW_TAG_PREFIX + t.GRID_VIEW_KEY_PREFIX
    return [(key[len(prefix):], name, experiment_runs_route(experiment_id, key[len(t.SHARED_VIEW_TAG_PREFIX):]))
            for experiment_id, name in experiments for key in sorted(tags.get(experiment_id, {})) if key.startswith(prefix)]


def grid_views(client: MlflowClient) -> list[tuple[str, str, str]]:
    """(grid name, experiment name, route) of every saved grid view in the store's active experiments."""
    found = client.search_experiments()
    return _views_of([(e.experiment_id, e.name) for e in found], {e.experiment_id: dict(e.tags) for e in found})


def ui_links(uri: str, grid: str | None = None, experiment: str | None = None, *,
             is_config_key: Callable[[str], bool] = lambda key: True) -> list[tuple[str, str]]:
    """(label, route) of the UI pages worth printing for the store at ``uri``; routes go after the UI's base URL.

    * ``grid``: the grid's view in each experiment holding its parent run (in ``experiment`` only, when given). A
      grid logged before views existed gets one now (:func:`set_grid_view`, columns from its training runs: the
      ``eval/*/acc`` metrics they logged, grouped by the params that vary among them and pass ``is_config_key``);
    * else ``experiment``: its runs table;
    * else every saved grid view.

    The store is read through its reader (:func:`lgrpo_bench.tracking.reader.open_reader`: a SQLite store without
    importing MLflow); MLflow is used to write a missing view or membership tags. Raises ``ValueError`` naming what the store has when
    ``grid`` or ``experiment`` is not there (or the SQLite file does not exist).
    """

    from lgrpo_bench.tracking.reader import open_reader

    reader = open_reader(uri, must_exist=False)
    if reader is None:
        if grid or experiment:
            raise ValueError(f"no store at {uri}: nothing has run yet (choose the store with --tracking-uri)")
        return []
    with reader:
        return _ui_links(reader, uri, grid, experiment, is_config_key)


def _ui_links(reader, uri: str, grid: str | None, experiment: str | None, is_config_key: Callable[[str], bool]):
    from lgrpo_bench.tracking import schema as t

    found = reader.experiments()
    experiments = [(e.experiment_id, e.name) for e in found]
    names = {name: experiment_id for experiment_id, name in experiments}
    if experiment is not None and experiment not in names:
        raise ValueError(f"--experiment {experiment!r}: no such experiment in {uri} "
                         f"(experiments: {', '.join(sorted(names)) or 'none'})")
    views = _views_of(experiments, {e.experiment_id: dict(e.tags) for e in found})
    if grid is None:
        if experiment is not None:
            return [(f"experiment {experiment}", experiment_runs_route(names[experiment]))]
        return [(f"grid {name} ({where})", route) for name, where, route in views]
    searched = [names[experiment]] if experiment is not None else [experiment_id for experiment_id, _ in experiments]
    parents = reader.runs(searched, tag_equals={t.TAG_GRID: grid, t.TAG_KIND: t.KIND_GRID}, metrics=False) if searched else []
    holding = list(dict.fromkeys(run.info.experiment_id for run in parents))
    if not holding:
        raise ValueError(f"--grid {grid!r}: no grid of that name in {uri}" + (f" (experiment {experiment!r})" if experiment else "")
                         + f"; grids with a view there: {', '.join(sorted({v[0] for v in views})) or 'none'} "
                         "(`lgrpo-bench status` lists every grid)")
    saved = {(name, where): route for name, where, route in views}
    by_id = dict(experiments)
    links = []
    member = t.grid_member_tag(grid)
    for experiment_id in holding:
        route = saved.get((grid, by_id[experiment_id]))
        runs = reader.runs([experiment_id], tag_equals={t.TAG_KIND: t.KIND_TRAIN}, params=route is None)
        untagged = [run for run in runs if run.data.tags.get(t.TAG_GRID) == grid and run.data.tags.get(member) != "true"]
        if untagged:  # runs of a grid that ran before membership tags: tag them, or the view would miss them
            client = open_client(uri)
            for run in untagged:
                client.set_tag(run.info.run_id, member, "true")
        if route is None:
            ours = [run for run in runs if run.data.tags.get(member) == "true" or run.data.tags.get(t.TAG_GRID) == grid]
            metrics = sorted({key for run in ours for key in run.data.metrics
                              if key.startswith(t.EVAL_PREFIX) and key.endswith("/acc")})
            keys = sorted({key for run in ours for key in run.data.params if is_config_key(key)})
            varying = [key for key in keys if len({run.data.params.get(key) for run in ours}) > 1]
            route = set_grid_view(open_client(uri), experiment_id, grid, metrics=metrics, group_by=varying)
        links.append((f"grid {grid} ({by_id[experiment_id]})", route))
    return links
