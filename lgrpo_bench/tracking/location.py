"""Where the MLflow store is, and what is wrong with it: the ground floor of ``tracking/`` (standard library only).

The store's address (:func:`resolve_tracking_uri`, :func:`sqlite_path`), MLflow's workspaces switch and filter
quoting, and store trouble as one exception (:class:`StoreProblem`, with :func:`store_problem` translating what
``sqlite3``, SQLAlchemy or MLflow raise). Both the store's one reader (:mod:`lgrpo_bench.tracking.reader`) and the
client opener (:mod:`lgrpo_bench.tracking.store`) import these from here, so neither imports the other to use them
(``tests/test_architecture.py``: no import circle). ``sqlite3`` itself stays the reader's: its errors are told by the
module of their class.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

__all__ = [
    "DEFAULT_DB_FILENAME", "StoreProblem", "TrackingUnavailable", "check_store_scheme", "describe_sqlite_error",
    "quote_filter_value", "resolve_tracking_uri", "sqlite_path", "store_problem", "workspaces_enabled",
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


def workspaces_enabled() -> bool:
    """MLflow's workspaces (``$MLFLOW_ENABLE_WORKSPACES``, off by default); with them on, stores are read through MLflow."""
    return os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("1", "true", "yes", "on")


def quote_filter_value(value: str) -> str:
    """A string value for an MLflow filter: in single quotes, or double quotes when it holds a single quote."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"MLflow filter strings cannot hold a value with both ' and \": {value!r}")


# ---------------------------------------------------------------------------------------------------------
# Store trouble
# ---------------------------------------------------------------------------------------------------------
class StoreProblem(RuntimeError):
    """The MLflow store cannot be used: the message says what, which file (or URI), and what to do."""


def check_store_scheme(uri: str) -> None:
    """Raise :class:`StoreProblem` for URIs MLflow 3.17 cannot use as a tracking store here: ``file:`` and bare
    folders (its file store is in maintenance mode and refuses to open)."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme in ("", "file"):
        raise StoreProblem(
            f"tracking URI {uri!r} is an MLflow file store, which MLflow 3.17 no longer opens (maintenance mode); "
            "lgrpo-bench needs a database store: use sqlite:///<path>/mlflow.db (the default) or a tracking server, "
            "and convert an existing folder with `mlflow migrate-filestore`")


def _is_sqlite_error(error: BaseException | None) -> bool:
    """True for an instance of ``sqlite3.Error`` (or a subclass), known by its class's module."""
    return error is not None and any(cls.__module__ == "sqlite3" and cls.__name__ == "Error" for cls in type(error).__mro__)


def describe_sqlite_error(path: Path, error: BaseException, what: str = "MLflow store") -> str:
    """One line for a SQLite error (or SQLAlchemy's wrapper of one) on the database ``path`` of ``what``: what, which
    file, what to do."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    text = lines[0] if lines else type(original).__name__
    journal = path.with_name(path.name + "-journal")
    if "readonly" in text.lower() and journal.exists():
        return (f"the {what} {path} has a hot journal ({journal.name}) left by a writer that was killed; SQLite must "
                f"roll it back before anyone can read, which needs write access to {path} and its folder: run any "
                "lgrpo-bench command once as a user who may write there")
    if "not a database" in text or "malformed" in text or "file is encrypted" in text:
        return (f"{path} is not a readable SQLite database ({text}): the {what} is corrupt or this is another file; "
                f"restore it from a backup, or move it aside (mv {path} {path}.bad) to start a new store")
    if "unable to open" in text:
        return f"cannot open the {what} {path} ({text}): check that the file and its folder exist and are readable"
    if "readonly" in text.lower():
        return (f"the {what} {path} is read-only ({text}): give this user write access to it and its folder, or only "
                "read it (`report`, `status`, `sweep show` read and work on it as it is)")
    if "locked" in text or "busy" in text:
        return (f"the {what} {path} is locked by another process ({text}); find it with `fuser {path}` and let it "
                "finish (or stop it), then retry")
    if "no such table" in text or "no such column" in text:
        return (f"{path} does not hold the tables this lgrpo-bench reads ({text}): was the {what} deleted or replaced "
                "while a command ran, or written by another version? Re-run the command; if it persists, open the "
                "store once with the version that wrote it")
    if "disk" in text and ("full" in text or "I/O" in text):
        return f"the {what} {path} cannot be written ({text}): free space on its disk, then retry"
    return f"the {what} {path} cannot be used ({type(original).__name__}: {text})"


def store_problem(error: BaseException, uri: str) -> StoreProblem | None:
    """A :class:`StoreProblem` for an exception raised while using the store at ``uri`` (from ``sqlite3``,
    SQLAlchemy or MLflow), or None when ``error`` is not about the store."""
    if isinstance(error, StoreProblem):
        return error
    if isinstance(error, TrackingUnavailable):
        return StoreProblem(str(error))
    module = type(error).__module__ or ""
    original = getattr(error, "orig", None)  # SQLAlchemy wraps the DB-API error
    db_file = sqlite_path(uri)
    if db_file is not None and (_is_sqlite_error(error) or _is_sqlite_error(original)):
        return StoreProblem(describe_sqlite_error(db_file, original if _is_sqlite_error(original) else error))
    if module.startswith("sqlalchemy") or module.startswith("mlflow"):
        text = str(getattr(error, "message", None) or error).splitlines()[0][:500]
        if db_file is not None:
            if not db_file.exists():
                return StoreProblem(f"the MLflow store {db_file} is gone (deleted while a command used it?): {text}")
            return StoreProblem(describe_sqlite_error(db_file, RuntimeError(text)))
        return StoreProblem(f"the MLflow store {uri} failed: {text}")
    return None
