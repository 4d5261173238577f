"""Optuna studies as a store: opening a storage, building a pruner, and the link from a trial to its run.

A sweep (:mod:`lgrpo_bench.sweeps`) starts each trial's run with the environment variable :data:`TRIAL_ENV` holding
a JSON :class:`TrialLink`; the run's training (:mod:`lgrpo_bench.training.pruning`) reports its values to that trial.
Both sides open the storage and build the pruner here, so neither imports the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lgrpo_bench.tracking.reader import StoreProblem

__all__ = [
    "STORAGE_WAIT_ENV", "StudyStorageProblem", "TRIAL_ENV", "TrialLink", "make_pruner", "open_storage", "retry_callback",
]

TRIAL_ENV = "LGRPO_TRIAL"
STORAGE_WAIT_ENV = "LGRPO_STUDY_WAIT_S"
"""Seconds :func:`open_storage` waits for a SQLite storage locked by another process before it gives up."""
DEFAULT_STORAGE_WAIT_S = 60.0
SQLITE_HEADER = b"SQLite format 3\x00"


class StudyStorageProblem(StoreProblem):
    """Optuna storage trouble found when opening it (:func:`open_storage`): the message says what is wrong, with which
    file, and what to do. The command line prints ``error: <message>`` and exits 1, never a traceback."""


@dataclass(frozen=True)
class TrialLink:
    """Which trial a training process is: storage URL, study name, trial id/number, what to report, the pruner."""

    storage: str
    study: str
    trial_id: int
    number: int
    metric: str
    every: int
    pruner: dict[str, Any] = field(default_factory=dict)

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrialLink | None:
        raw = (os.environ if environ is None else environ).get(TRIAL_ENV)
        if not raw:
            return None
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError) as error:
            raise ValueError(f"${TRIAL_ENV} is not a trial link: {error}") from None


def make_pruner(config: Mapping[str, Any]):
    """``{kind: median | successive_halving | none, ...}`` (a :class:`~lgrpo_bench.config.sweep.PrunerConfig`
    dump) → the Optuna pruner; steps are optimizer steps."""
    import optuna

    kind = config.get("kind", "none")
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=config.get("n_startup_trials", 2),
                                           n_warmup_steps=config.get("n_warmup_steps", 0))
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=config.get("min_resource", 1),
                                                      reduction_factor=config.get("reduction_factor", 3))
    return optuna.pruners.NopPruner()


def _say_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _init_lock(path: Path) -> Iterator[None]:
    """Exclusive lock held while a process checks and opens a SQLite storage (after any wait for SQLite's own lock):
    a second lgrpo-bench process never sees the 0-byte file SQLite creates before the first has written the tables,
    and two processes never create the tables at once. One file per storage (a hash of its path) in the temp folder,
    so nothing is left next to the store and a slow opening of one storage never delays another. A no-op without
    ``fcntl``."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    import hashlib

    user = os.getuid() if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(str(path.expanduser().absolute()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"lgrpo-optuna-open-{user}-{digest}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error  # SQLAlchemy wraps the DB-API error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def _sqlite_problem(path: Path, error: BaseException) -> StudyStorageProblem:
    """One line for a SQLite error on the storage file ``path`` (:func:`lgrpo_bench.tracking.reader.describe_sqlite_error`)."""
    from lgrpo_bench.tracking.reader import describe_sqlite_error

    return StudyStorageProblem(describe_sqlite_error(path, error, "Optuna storage"))


def _check_folder(path: Path, what: str) -> None:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StudyStorageProblem(f"cannot create the folder {folder} of the {what} {path} ({error.strerror or error}): "
                                  "choose a path this user may write") from None


def _check_writable(path: Path, what: str, needs_folder: bool) -> None:
    """Refuse a file (or, for ``needs_folder``, its folder) that this user cannot write."""
    if path.exists() and not os.access(path, os.W_OK):
        raise StudyStorageProblem(f"the {what} {path} is read-only (this user cannot write it) and a sweep writes its "
                                  "trials there: give this user write access to it, or give the sweep another storage; "
                                  "`sweep show`/`export`/`dashboard` only read and work on it as it is")
    if needs_folder and not os.access(path.parent, os.W_OK):
        raise StudyStorageProblem(f"the folder {path.parent} of the {what} {path} is read-only (this user cannot write "
                                  "it) and a sweep needs to write next to the file (lock and journal files): give this "
                                  "user write access to the folder, or give the sweep another storage")


def _check_sqlite_file(path: Path, writable: bool, on_wait: Callable[[str], None]) -> None:
    """Checks of an existing SQLite storage file before Optuna opens it (see :func:`open_storage`)."""
    if path.is_dir():
        raise StudyStorageProblem(f"the Optuna storage {path} is a folder, not a SQLite file: point the storage at a file, "
                                  f"e.g. sqlite:///{path / 'optuna.db'}")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise StudyStorageProblem(f"cannot read the Optuna storage {path} ({error.strerror or error}): give this user "
                                  "read access to it") from None
    if not header:
        return  # 0 bytes: judged under the open lock (open_storage)
    if header != SQLITE_HEADER:
        raise StudyStorageProblem(f"the Optuna storage {path} is not a SQLite database (it does not start with SQLite's "
                                  f"header): the file is corrupt or another file; restore it from a backup, or move it "
                                  f"aside (mv {path} {path}.bad) to start a new store")
    if writable:
        _check_writable(path, "Optuna storage", needs_folder=True)
    from lgrpo_bench.tracking.reader import StoreProblem, sqlite_tables

    try:  # a writer takes (and releases) the lock a writer needs: waits while another process writes
        tables = sqlite_tables(path, what="Optuna storage", write_lock=writable, on_wait=on_wait,
                               wait_env=STORAGE_WAIT_ENV, default_wait_s=DEFAULT_STORAGE_WAIT_S)
    except StoreProblem as problem:
        raise StudyStorageProblem(str(problem)) from None
    if tables and "studies" not in tables:
        raise StudyStorageProblem(f"{path} is a SQLite database without Optuna's tables ({', '.join(sorted(tables)[:5])}"
                                  f"{', …' if len(tables) > 5 else ''}): not an Optuna storage (an MLflow store?); give "
                                  "the sweep's storage its own file, e.g. sqlite:///./optuna.db")


def _open_journal(path: Path, writable: bool):
    import optuna

    _check_folder(path, "Optuna journal")
    if path.is_dir():
        raise StudyStorageProblem(f"the Optuna journal {path} is a folder, not a file: point journal: at a file, "
                                  f"e.g. journal:{path / 'optuna.journal'}")
    if path.exists():
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as error:
            raise StudyStorageProblem(f"cannot read the Optuna journal {path} ({error.strerror or error}): give this user "
                                      "read access to it") from None
    elif not os.access(path.parent, os.W_OK):
        raise StudyStorageProblem(f"cannot create the Optuna journal {path}: its folder {path.parent} is read-only; "
                                  "choose a path this user may write")
    if writable:
        _check_writable(path, "Optuna journal", needs_folder=True)
    try:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        # ValueError: JSON/UTF-8 decoding, Optuna's "Invalid log format."; KeyError/TypeError/IndexError: JSON lines
        # that are not Optuna's operations (replayed here, as the journal is read when opened)
        raise StudyStorageProblem(f"the Optuna journal {path} is not a readable Optuna journal ({type(error).__name__}: "
                                  f"{_first_line(error)}): it is corrupt or another file; restore it from a backup, or "
                                  f"move it aside (mv {path} {path}.bad) to start a new one") from None


def open_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 stale_trial_callback: Callable | None = None, writable: bool = False,
                 on_wait: Callable[[str], None] | None = None):
    """An Optuna RDB storage (heartbeats when ``heartbeat_interval``) or a journal file (``journal:PATH``).

    Storage trouble raises :class:`StudyStorageProblem` here, before Optuna touches the file:

    ==================  ===============================================================================================
    not a database      a SQLite file without SQLite's header, a malformed one, or a SQLite database without Optuna's
                        tables (e.g. an MLflow store); a journal that does not decode, or is a folder / unreadable
    0 bytes             an existing empty SQLite file is a truncated store (SQLite would silently make it a new,
                        empty one): refused, saying to restore it or delete it to start over. The check runs under a
                        per-file lock that lgrpo-bench holds while creating a store, so a store another lgrpo-bench
                        process is creating right now is never mistaken for a truncated one
    read-only           ``writable`` (a sweep): the file or its folder cannot be written by this user. Readers
                        (``sweep show``/``export``/``dashboard``) open a read-only store as it is
    locked              another process holds SQLite's lock (a write lock for ``writable``, else an exclusive one):
                        ``on_wait`` (default: stderr) gets one "waiting for the Optuna storage … locked by another
                        process" line; after ``$LGRPO_STUDY_WAIT_S`` seconds (default 60) it fails
    server              an RDB server URL that Optuna cannot open, or whose driver is missing (password hidden)
    ==================  ===============================================================================================
    """
    import optuna
    import sqlalchemy

    say = on_wait or _say_on_stderr
    if url.startswith("journal:"):
        return _open_journal(Path(url.removeprefix("journal:")).expanduser(), writable)
    path = None
    if url.startswith("sqlite:///"):
        file = url.removeprefix("sqlite:///").split("?", 1)[0]
        if file and file != ":memory:":
            path = Path(file).expanduser()
            _check_folder(path, "Optuna storage")
            if path.exists():
                _check_sqlite_file(path, writable, say)
            elif not os.access(path.parent, os.W_OK):
                raise StudyStorageProblem(f"cannot create the Optuna storage {path}: its folder {path.parent} is read-only "
                                          "(this user cannot write it); choose a path this user may write")
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                  "heartbeat_stale_trial_callback": stale_trial_callback}
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    with _init_lock(path) if path is not None else contextlib.nullcontext():
        if path is not None and path.is_file() and path.stat().st_size == 0:
            raise StudyStorageProblem(
                f"the Optuna storage {path} is empty (0 bytes): a truncated or never-finished store, not a new one "
                f"(SQLite would silently start an empty study store in it); restore it from a backup if it held "
                f"studies, or delete it (rm {path}) to start over")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except sqlalchemy.exc.SQLAlchemyError as error:
            if path is not None:
                raise _sqlite_problem(path, error) from None
            raise StudyStorageProblem(f"cannot open the Optuna storage {_hide_password(url)} ({type(error).__name__}: "
                                      f"{_first_line(error)}): check the URL, that the server runs and that it accepts "
                                      "this user") from None
        except ImportError as error:  # Optuna: no DB-API driver for the URL's dialect
            cause = error.__cause__ or error
            raise StudyStorageProblem(f"cannot open the Optuna storage {_hide_password(url)}: its database driver is not "
                                      f"installed ({_first_line(cause)}); install it (e.g. pip install psycopg2-binary "
                                      "for postgresql://, pymysql for mysql+pymysql://)") from None
        except RuntimeError as error:  # Optuna: the tables' schema is older/newer than this Optuna (says what to run)
            raise StudyStorageProblem(f"the Optuna storage {path or _hide_password(url)}: {_first_line(error)}") from None


def _hide_password(url: str) -> str:
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL: say nothing of it beyond its scheme
        return url.split("://", 1)[0] + "://…"


def retry_callback(max_retries: int | None):
    """Optuna's callback that re-queues a failed trial with the same parameters (up to ``max_retries`` times)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries)
