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
* :func:`find_runs_by_tag` — all runs with one tag value, one ``search_runs`` call per page.
* :func:`ui_command` / :func:`start_ui` — the ``mlflow ui`` command, bound to 127.0.0.1 by default (the UI
  has no authentication; binding to a public interface exposes every run to the network).
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
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mlflow is imported lazily: importing it costs about a second
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = [
    "DEFAULT_DB_FILENAME",
    "TrackingUnavailable",
    "check_reachable",
    "find_runs_by_tag",
    "get_or_create_experiment",
    "open_client",
    "resolve_tracking_uri",
    "sqlite_path",
    "start_ui",
    "ui_command",
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

    health_url = uri.rstrip("/") + "/health"
    remaining = max(deadline - time.monotonic(), 0.05)
    try:
        with urllib.request.urlopen(health_url, timeout=remaining) as response:  # noqa: S310 (http(s) only)
            response.read(64)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise TrackingUnavailable(
                f"{uri} answered but has no MLflow /health endpoint (HTTP 404): it does not look like an MLflow "
                f"tracking server. Check the host, port and path in tracking.uri / $MLFLOW_TRACKING_URI."
            ) from error
        if error.code >= 500:
            raise TrackingUnavailable(
                f"MLflow tracking server {uri} answered /health with HTTP {error.code}; check the server's logs. {advice}"
            ) from error
    except (urllib.error.URLError, OSError) as error:
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
        raise TrackingUnavailable(
            f"the SQLite tracking store {uri} is not writable; fix the permissions of {path} or choose another "
            f"path in tracking.uri / $MLFLOW_TRACKING_URI"
        )


# ---------------------------------------------------------------------------------------------------------
# Clients and experiments
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _sqlite_init_lock() -> Iterator[None]:
    """Exclusive inter-process lock held while a process opens (and maybe creates/migrates) a SQLite store.

    One lock file per user in the temp folder, shared by all databases: opening an existing store takes
    milliseconds, so serializing all of them costs nothing, and the file leaves nothing in the project.
    A no-op where ``fcntl`` is missing (Windows), where concurrent first use stays unsafe.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    user = os.getuid() if hasattr(os, "getuid") else "user"
    lock_path = Path(tempfile.gettempdir()) / f"lgrpo-mlflow-init-{user}.lock"
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

    resolved = resolve_tracking_uri(uri)
    check_reachable(resolved, timeout_s=timeout_s)
    db_file = sqlite_path(resolved)
    if db_file is None:
        return MlflowClient(tracking_uri=resolved)
    with _sqlite_init_lock():
        # MlflowClient() builds the store, and with it creates/migrates the database: one process at a time
        client = MlflowClient(tracking_uri=resolved)
        client.search_experiments(max_results=1)
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


def find_runs_by_tag(
    client: MlflowClient,
    experiment_ids: Sequence[str] | str,
    tag: str,
    value: str,
    *,
    extra_filter: str | None = None,
    include_deleted: bool = False,
    page_size: int = 1000,
) -> list[Run]:
    """Every run in ``experiment_ids`` whose tag ``tag`` equals ``value``, newest first.

    One ``client.search_runs`` call per page of ``page_size`` runs (the filter runs in the store, not in
    Python). ``extra_filter`` is AND-ed in (e.g. ``"tags.`lgrpo.state` = 'done'"``).
    """
    from mlflow.entities import ViewType

    ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
    if not ids:
        return []
    filter_string = f"tags.`{tag}` = {quote_filter_value(str(value))}"
    if extra_filter:
        filter_string = f"{filter_string} AND {extra_filter}"
    view = ViewType.ALL if include_deleted else ViewType.ACTIVE_ONLY
    runs: list[Run] = []
    page_token = None
    while True:
        page = client.search_runs(
            ids,
            filter_string=filter_string,
            run_view_type=view,
            max_results=page_size,
            order_by=["attributes.start_time DESC"],
            page_token=page_token,
        )
        runs.extend(page)
        page_token = page.token
        if not page_token:
            return runs


# ---------------------------------------------------------------------------------------------------------
# UI
# ---------------------------------------------------------------------------------------------------------
def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The argv of ``mlflow ui`` for the store at ``uri``, run with this interpreter's MLflow.

    ``host`` defaults to 127.0.0.1: the UI has no authentication, so only bind a public interface
    (``0.0.0.0``) on a trusted network.
    """
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be in 1..65535, got {port}")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(int(port))]


def start_ui(uri: str, host: str = "127.0.0.1", port: int = 5000) -> subprocess.Popen:
    """Start ``mlflow ui`` (see :func:`ui_command`) in the background and return its process.

    The caller owns the process: stop it with ``process.terminate()``. Browse to ``http://<host>:<port>``.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        import logging

        logging.getLogger(__name__).warning(
            "starting the MLflow UI on %s: it has no authentication, anyone who can reach this host can read "
            "(and delete) runs. Use host=127.0.0.1 and an SSH tunnel unless the network is trusted.",
            host,
        )
    return subprocess.Popen(ui_command(uri, host=host, port=port))
