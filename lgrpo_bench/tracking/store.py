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
* :func:`set_grid_view` — experiment tags that make the MLflow UI open a grid's training runs, grouped by
  configuration with their eval metrics, instead of its GenAI overview (written at every grid start by the
  orchestrator). Starting, serving and linking the UI is :mod:`lgrpo_bench.ui`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lgrpo_bench.tracking.location import (
    DEFAULT_DB_FILENAME,
    StoreProblem,
    TrackingUnavailable,
    check_store_scheme,
    quote_filter_value,
    resolve_tracking_uri,
    sqlite_path,
    store_problem,
    workspaces_enabled,
)

if TYPE_CHECKING:  # mlflow is imported lazily: importing it costs about a second
    from mlflow import MlflowClient

__all__ = [
    "DEFAULT_DB_FILENAME",
    "TrackingUnavailable",
    "check_reachable",
    "get_or_create_experiment",
    "open_client",
    "quote_filter_value",
    "resolve_tracking_uri",
    "sqlite_path",
    "workspaces_enabled",
    "grid_view_key",
    "grid_view_state",
    "set_grid_view",
]

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


def _place_empty_schema(db_file: Path) -> None:
    """Where no store exists at ``db_file`` yet, put a copy of an empty store with MLflow's current schema there.

    Creating a store runs MLflow's ~60 schema migrations one by one: 0.7–1.0 CPU-s on a 2-core EPYC, paid by the first
    ``lgrpo-bench`` command on every new store (78 times in the test suite). The copy is the file those migrations
    produce, made once per MLflow version (:func:`_empty_schema_file`); MlflowClient then opens it as it opens any
    store of the current schema: it checks the schema's revision (a stale copy is refused as loudly as a stale store)
    and creates the Default experiment, under this store's own artifact root. The copy never replaces a file
    (``os.link`` fails where one appeared meanwhile); on any error nothing is placed and MLflow creates the store.
    ``tests/test_tracking.py`` checks that a store begun from the copy equals one MLflow creates from nothing.
    """
    if db_file.exists():
        return
    try:
        template = _empty_schema_file()
        partial = db_file.with_name(f".{db_file.name}.{os.getpid()}.partial")
        try:
            shutil.copyfile(template, partial)
            os.link(partial, db_file)
        finally:
            partial.unlink(missing_ok=True)
    except Exception:  # noqa: BLE001 - a cache, not a requirement: MLflow creates the store itself
        return


def _empty_schema_file() -> Path:
    """An empty SQLite store with MLflow's current schema and no rows but its revision, built on first use under
    ``$LGRPO_CACHE_DIR`` (else ``~/.cache/lgrpo-bench``) as ``mlflow-schema/empty-<mlflow version>.db``.

    The one use of a private MLflow function (``mlflow.store.db.utils._initialize_tables``: create the initial tables,
    then run every migration, as MLflow does on a new store); ``tests/test_tracking.py`` fails when it changes."""
    import mlflow
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    from lgrpo_bench.config.schema import default_cache_dir

    folder = default_cache_dir() / "mlflow-schema"
    template = folder / f"empty-{mlflow.__version__}.db"
    if template.is_file():
        return template
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{template.name}.", suffix=".building", dir=folder)
    os.close(handle)
    building = Path(name)
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{building}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        os.replace(building, template)  # concurrent builders write the same file; the last rename wins
    finally:
        building.unlink(missing_ok=True)
    return template


def open_client(uri: str | None = None, *, timeout_s: float = 5.0) -> MlflowClient:
    """An ``MlflowClient`` for ``resolve_tracking_uri(uri)`` with its store ready to use.

    Checks the store with :func:`check_reachable` first (raising :class:`TrackingUnavailable`). For SQLite,
    the store's first initialization (creating tables, running migrations) happens under an inter-process
    lock, so many workers may open a brand-new database at once.
    """
    from mlflow import MlflowClient

    resolved = resolve_tracking_uri(uri)
    check_store_scheme(resolved)
    check_reachable(resolved, timeout_s=timeout_s)
    db_file = sqlite_path(resolved)
    if db_file is None:
        return MlflowClient(tracking_uri=resolved)
    with _sqlite_init_lock(db_file):
        # MlflowClient() builds the store, and with it creates/migrates the database: one process at a time
        _place_empty_schema(db_file)
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


# ---------------------------------------------------------------------------------------------------------
# Saved grid views: the experiment tags the MLflow UI reads (the UI itself is lgrpo_bench.ui)
# ---------------------------------------------------------------------------------------------------------
def grid_view_key(grid: str) -> str:
    """The share key of grid ``grid``'s saved view: ``lgrpo-grid-<grid>``."""
    from lgrpo_bench.tracking.schema import GRID_VIEW_KEY_PREFIX

    return f"{GRID_VIEW_KEY_PREFIX}{grid}"


VIEW_CHAR_PX = 7.5
"""Width the saved grid view allows per character of a cell or header. Measured in MLflow 3.17's runs table in
Chromium (DejaVu Sans, a wide fallback font): 7.5 px per digit, about 5.3 px per letter of a group name."""
VIEW_CELL_PADDING_PX = 40
"""Horizontal room of a table cell besides its text: padding and the header's sort icon."""
VIEW_GROUP_CELL_PX = 100
"""Room of a group row's name cell besides "Group: <name>": the expander, the colour dot and the run-count badge
(about 85 px measured)."""
VIEW_AVERAGE_CHARS = len("0.41933333333333334 (average)")
"""A group row's metric cell: the UI prints the average with JavaScript's full float precision (it has no number
format for the runs table: MLflow 3.17's metric columns take a formatter only from a built-in table, empty for
user metrics) followed by " (average)"; the column is made wide enough for all of it."""
VIEW_RUN_ROW_PX = 60
"""Room of a run row's name cell besides the run name: its indent under the group row and the padding."""
VIEW_RUN_NAME_MIN_PX = 190
"""The UI's own width of the run-name column (a run row shows a 12-hex-digit run name or a run id)."""


def view_group_label(group_by: Sequence[str], values: Sequence[str]) -> str:
    """The name the MLflow UI gives a group row: ``Group: <value>`` for one key, ``Group: k1: v1, k2: v2`` for several
    (an empty value shows as ``(none)``), as MLflow 3.17's runs table writes it."""
    shown = [value or "(none)" for value in values]
    if len(shown) == 1:
        return f"Group: {shown[0]}"
    return "Group: " + ", ".join(f"{key}: {value}" for key, value in zip(group_by, shown))


def grid_view_state(grid: str, *, metrics: Sequence[str] = (), group_by: Sequence[str] = (),
                    groups: Sequence[Sequence[str]] = (), run_names: Sequence[str] = ()) -> dict:
    """The saved view of a grid (the JSON the UI reads from ``mlflow.sharedViewState.<key>``).

    Filter: the grid's training runs (``lgrpo.in_grid.<grid>`` = true, ``lgrpo.kind`` = train: every current point,
    also runs another grid made first). Rows: grouped by the params ``group_by`` (the config keys that tell the
    grid's configurations apart; default: the algorithm tag), each group expanded with its runs (seeds) and a group
    row holding the average. Columns, after the UI's fixed run name, creation time and duration: ``metrics`` (e.g.
    ``eval/math500/acc``; first, so they stay in sight when the UI's assistant panel narrows the table), seed, the
    group keys, state. Within a group, seeds in ascending order (``tags.lgrpo.seed``, compared as text).

    The sort key is not the start time on purpose: sorted by start time (or unsorted and unfiltered), the UI also
    fetches the parent run of every listed run and shows it, which put the grid's parent run in the table as an
    extra group and counted it among the "matching runs".

    Column widths (``columnOrder``/``columnWidths``, in pixels) fit each column's header and longest value at
    :data:`VIEW_CHAR_PX` per character: the run-name column the longest group name of ``groups`` (the values of
    ``group_by`` of each configuration, as :func:`view_group_label` names it) and the longest of ``run_names`` (the
    MLflow run names: a run row indents its name by :data:`VIEW_RUN_ROW_PX`), each metric column a group average
    printed in full (:data:`VIEW_AVERAGE_CHARS`; the UI cannot round it).
    """
    from lgrpo_bench.tracking import schema as t

    def column(kind: str, key: str) -> str:
        return f"{kind}.`{key}`"

    def fit(*texts: str) -> int:
        return round(VIEW_CHAR_PX * max(len(text) for text in texts)) + VIEW_CELL_PADDING_PX

    if group_by:
        keys = [{"mode": "param", "groupByData": key} for key in group_by]
        group_columns = [column("params", key) for key in group_by]
        group_keys = list(group_by)
    else:
        keys = [{"mode": "tag", "groupByData": t.TAG_ALGORITHM}]
        group_columns = [column("tags", t.TAG_ALGORITHM)]
        group_keys = [t.TAG_ALGORITHM]
    labels = [view_group_label(group_keys, values) for values in groups]
    widths = {
        column("attributes", "Run Name"): max([VIEW_RUN_NAME_MIN_PX]
                                              + [VIEW_GROUP_CELL_PX + round(VIEW_CHAR_PX * len(label)) for label in labels]
                                              + [VIEW_RUN_ROW_PX + round(VIEW_CHAR_PX * len(name)) for name in run_names]),
        **{name: fit(key, *(str(values[index]) for values in groups if index < len(values)))
           for index, (name, key) in enumerate(zip(group_columns, group_keys))},
        column("tags", t.TAG_SEED): fit(t.TAG_SEED),
        **{column("metrics", name): fit(name, "x" * VIEW_AVERAGE_CHARS) for name in metrics},
        column("tags", t.TAG_STATE): fit(t.TAG_STATE, *t.STATES),
    }
    selected = [*(column("metrics", name) for name in metrics), column("tags", t.TAG_SEED), *group_columns,
                column("tags", t.TAG_STATE)]
    return {
        "searchFilter": f"tags.`{t.grid_member_tag(grid)}` = 'true' AND tags.`{t.TAG_KIND}` = '{t.KIND_TRAIN}'",
        "orderByKey": column("tags", t.TAG_SEED),
        "orderByAsc": True,
        "selectedColumns": selected,
        "columnOrder": [column("attributes", "Run Name"), "runDateAndNestInfo", "duration", *selected],
        "columnWidths": widths,
        "groupBy": {"aggregateFunction": "average", "groupByKeys": keys},
        "runListHidden": False,
        "viewMaximized": False,
    }


def set_grid_view(client: MlflowClient, experiment_id: str, grid: str, *, metrics: Sequence[str] = (),
                  group_by: Sequence[str] = (), groups: Sequence[Sequence[str]] = (), run_names: Sequence[str] = ()) -> str:
    """Make the MLflow UI open experiment ``experiment_id`` on grid ``grid``'s runs; return the view's share key.

    Writes two experiment tags (idempotent; safe to call at every grid start, from several processes):

    * ``mlflow.experimentKind`` = ``custom_model_development``, unless a user chose a kind: the experiment then
      opens on its runs table, not on the GenAI overview;
    * ``mlflow.sharedViewState.lgrpo-grid-<grid>`` = :func:`grid_view_state` (``metrics``: MLflow metric keys to
      show as columns, e.g. ``eval/arith/acc``; ``group_by``: param keys, e.g. ``algorithm.name``; ``groups``: the
      values of ``group_by`` of each configuration, e.g. ``[("grpo",), ("lambda_grpo",)]``, and ``run_names``, the
      names of its runs, size the columns).

    Returns the view's share key (:func:`grid_view_key`); :func:`lgrpo_bench.ui.views.experiment_runs_route` makes it
    the route to append to the UI's base URL. MLflow 3.x UI; older UIs ignore both tags.
    """
    import json

    from lgrpo_bench.tracking import schema as t

    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(t.TAG_EXPERIMENT_KIND, "") in t.EXPERIMENT_KINDS_INFERRED:
        client.set_experiment_tag(experiment_id, t.TAG_EXPERIMENT_KIND, t.EXPERIMENT_KIND_TRAINING)
    key = grid_view_key(grid)
    state = json.dumps(grid_view_state(grid, metrics=metrics, group_by=group_by, groups=groups, run_names=run_names),
                       separators=(",", ":"))
    if experiment.tags.get(t.SHARED_VIEW_TAG_PREFIX + key) != state:
        client.set_experiment_tag(experiment_id, t.SHARED_VIEW_TAG_PREFIX + key, state)
    return key
