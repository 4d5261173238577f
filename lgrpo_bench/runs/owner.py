"""One run, one owner at a time: the run's lock, and which MLflow run its folder belongs to.

The lock
--------
Whoever executes a run — a grid's or a sweep's worker, ``lgrpo-bench train``, ``lgrpo-bench eval --config`` — holds
``<runs_dir>/<experiment>/.<run_id>.lock`` (an ``flock``, :func:`claim_run`) for the run's whole life: finding or
creating its MLflow run, training, evaluating, the final state. A second claimant (another grid file sharing the
point, a second terminal) says ``running elsewhere (pid …, host …, since …)``, waits for the lock, and then finds the
run as its holder left it: done (it reports the result), or interrupted (it resumes it). The kernel releases the
lock when its holder dies, however it dies, and every process a run starts dies with it
(``PR_SET_PDEATHSIG``), so a dead owner never blocks a run and never leaves a process behind. A process that the
run starts and that must hold the lock too (the vLLM evaluation process) inherits its file descriptor
(:attr:`Claim.fd`).

The owner record
----------------
A run folder holds the checkpoints and final model of exactly one MLflow run; ``owner.json`` says which (store URI,
experiment, MLflow run id; :func:`read_owner`/:func:`write_owner`). Folders are per experiment
(:func:`lgrpo_bench.tracking.record.experiment_folder`), so the same config in two experiments never shares one; a
folder whose MLflow run the store no longer holds (the store was deleted or replaced) is moved aside
(``<run_id>.orphaned-<time>``) before the run starts again, so no history is ever a mix of two runs
(:func:`settle_folder`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgrpo_bench.tracking.record import CONFIG_FILE, RunLayout

__all__ = ["Claim", "FolderConflict", "Owner", "adopt_legacy_folder", "claim_run", "lock_holder", "read_owner",
           "settle_folder", "write_owner"]


class FolderConflict(RuntimeError):
    """The run folder belongs to an MLflow run of another store: this run cannot use it (the message says what to do)."""


@dataclass(frozen=True)
class Claim:
    """A held run lock. ``fd``: its file descriptor, for a child process that must hold the lock too."""

    layout: RunLayout
    fd: int
    waited_s: float


def lock_holder(layout: RunLayout) -> str | None:
    """Who holds (or last held) the run's lock, as written in the lock file: ``pid 123 on host h since 12:01:02``."""
    try:
        record = json.loads(layout.lock_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("since", 0))))
    return f"pid {record.get('pid')} on host {record.get('host')} since {since}"


@contextlib.contextmanager
def claim_run(layout: RunLayout, *, say: Callable[[str], None] | None = None, wait: bool = True) -> Iterator[Claim | None]:
    """Hold run ``layout``'s lock inside the block (see the module docstring).

    When another process holds it: with ``wait``, ``say`` one line naming the holder and block until it is free;
    without ``wait``, yield None at once. The lock file's content is replaced by this process's record (pid, host,
    since) once held."""
    layout.experiment_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(layout.lock_file, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield None
                return
            if say is not None:
                say(f"run {layout.run_id}: running elsewhere ({lock_holder(layout) or 'another process'}); waiting for "
                    "it to finish")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        handle.flush()
        try:
            yield Claim(layout, handle.fileno(), time.monotonic() - started)
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def is_claimed(layout: RunLayout) -> bool:
    """Whether a process holds the run's lock now (tested without taking it)."""
    try:
        with open(layout.lock_file) as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False
    except OSError:
        return False


@dataclass(frozen=True)
class Owner:
    """The MLflow run a run folder belongs to."""

    store: str
    experiment: str
    mlflow_run_id: str


def read_owner(layout: RunLayout) -> Owner | None:
    try:
        record = json.loads(layout.owner_file.read_text())
        return Owner(str(record["store"]), str(record["experiment"]), str(record["mlflow_run_id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_owner(layout: RunLayout, owner: Owner) -> None:
    """Write ``owner.json`` atomically (creating the folder)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    tmp = layout.owner_file.with_name(f".{layout.owner_file.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"store": owner.store, "experiment": owner.experiment,
                               "mlflow_run_id": owner.mlflow_run_id, "written": time.time()}))
    os.replace(tmp, layout.owner_file)


def settle_folder(layout: RunLayout, store: str, experiment: str, mlflow_run_id: str | None,
                  say: Callable[[str], None]) -> None:
    """Make the folder fit the run's MLflow run before anything trains into it (call holding the run's lock).

    ``mlflow_run_id``: the run's training run in the store (None: the store has none yet).

    * the folder's owner is this MLflow run, or the folder holds no result: nothing to do;
    * the owner is a run of another store: :class:`FolderConflict` (two stores must not share ``runs_dir``);
    * the owner is an MLflow run the store does not hold (deleted, or the store replaced), or the folder holds
      checkpoints or a final model without an owner record and the store has no run: those results are moved aside
      to ``<run_id>.orphaned-<time>/`` (saying so), and the run starts clean.
    A folder with results but no owner record while the store has a run (written before owner records existed) is
    adopted by that run."""
    owner = read_owner(layout)
    if owner is not None and owner.store != store:
        raise FolderConflict(
            f"run folder {layout.root} belongs to MLflow run {owner.mlflow_run_id} of another store ({owner.store}); "
            f"this run logs to {store}. Two stores must not share a runs_dir: set tracking.runs_dir to another folder")
    if owner is not None and owner.mlflow_run_id == mlflow_run_id:
        return
    if not layout.has_outputs():  # nothing to protect (the owner record is rewritten once the run is known)
        return
    if owner is None and mlflow_run_id is not None:  # results from before owner records: the store's run made them
        return
    moved = _move_results_aside(layout)
    if owner is None:
        whose = "no MLflow run the store knows"
    elif mlflow_run_id is None:
        whose = f"MLflow run {owner.mlflow_run_id}, which the store no longer holds (deleted, or the store replaced)"
    else:
        whose = f"MLflow run {owner.mlflow_run_id}, which is not this run's record in the store ({mlflow_run_id})"
    say(f"run {layout.run_id}: its folder held the results of {whose}; moved them to {moved} and starting clean "
        "(a run never mixes two histories)")


def _move_results_aside(layout: RunLayout) -> Path:
    """Move the folder's results (checkpoints, final model, owner record, training log) to
    ``<run_id>.orphaned-<time>/`` beside it; ``config.yaml`` and ``run.log`` (which the running job appends to) stay."""
    target = layout.root.with_name(f"{layout.run_id}.orphaned-{time.strftime('%Y%m%d-%H%M%S')}")
    target.mkdir(parents=True, exist_ok=True)
    for path in layout.result_paths():
        os.rename(path, target / path.name)
    return target


def adopt_legacy_folder(layout: RunLayout, experiment: str) -> Path | None:
    """Move ``<runs_dir>/<run_id>/`` (the layout before per-experiment folders) to ``layout.root`` when the new folder
    does not exist yet and the old one's ``config.yaml`` names ``experiment``; returns the old path when moved."""
    legacy = layout.legacy_root
    if layout.root.exists() or not (legacy / CONFIG_FILE).is_file():
        return None
    try:
        import yaml

        recorded: Any = yaml.safe_load((legacy / CONFIG_FILE).read_text(encoding="utf-8"))
        if (recorded or {}).get("tracking", {}).get("experiment") != experiment:
            return None
        layout.root.parent.mkdir(parents=True, exist_ok=True)
        os.rename(legacy, layout.root)
    except (OSError, ValueError, AttributeError):
        return None
    return Path(legacy)
