"""A run's record: its folder layout and its lifecycle state. The one owner of both.

Folder
------
Every run of lgrpo-bench has a folder ``<runs_dir>/<experiment>/<run_id>/`` whose layout is :class:`RunLayout`
(``<experiment>``: the MLflow experiment's name as a folder name, :func:`experiment_folder`). The run id is the hash
of the config without its tracking section, so the same config logged to two experiments has one run id and two
folders: a folder belongs to exactly one MLflow run, named in its ``owner.json``.

====================  ==============================================================================================
``config.yaml``       the resolved run config, written once by whoever resolved it (the grid orchestrator, a
                      sweep or ``lgrpo-bench train``); the worker processes only read it
``owner.json``        the MLflow run the folder belongs to (store URI, experiment, MLflow run id), written by
                      the run's lifecycle when it finds or creates that run (:mod:`lgrpo_bench.runs.owner`)
``run.log``           stdout and stderr of every process of every attempt (appended)
``train.log``         the training process's own log lines (Python logging)
``worker.json``       liveness record while a worker executes the run (see :mod:`lgrpo_bench.dispatch.state`)
``submitted.json``    the scheduler job a run was submitted as (SLURM), while it is queued or running
``checkpoint-N/``     trainer checkpoints after optimizer step N; complete once ``lgrpo-manifest.json`` is in it
``final/``            the final model, its tokenizer and ``lambda_state.json``
====================  ==============================================================================================

Beside the folder, ``<runs_dir>/<experiment>/.<run_id>.lock`` is the run's lock: whoever executes the run holds it
for the run's whole life (:mod:`lgrpo_bench.runs.owner`); its content names the holder (pid, host, since).

State
-----
A training run's MLflow run carries ``lgrpo.state``; this module holds the only code that writes it::

    new ──► running ──► trained ──► done
             ▲  │  │        │  │
             │  │  │        │  └──(final model lost, no last-step checkpoint: ──► running, trains again)
             │  │  │        └──(evaluation fails: stays trained, lgrpo.failed_step = eval)
             │  │  └──► failed ──► running          (an error; resumed by the next run)
             │  └─────► stopped ──► running         (Ctrl-C / SIGTERM: interrupted on request)
             └── running ──► pruned                 (a sweep trial stopped by its pruner)

``new`` is not a tag: it is a run id with no MLflow run yet. ``running → running`` is a resume after a process
died without a word; ``failed → running`` and ``stopped → running`` resumes; ``done`` and ``pruned`` are final.
``plan``, ``status`` and the closing line of ``run`` use these words too (:mod:`lgrpo_bench.dispatch.state`).
Grid and study parent runs move between ``running``, ``done`` and ``failed``; evaluation-only runs
(``lgrpo.kind = eval``) between ``running`` and ``done``. Writing any other transition raises
:class:`IllegalTransition`: a bug, never a user error.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgrpo_bench.tracking.schema import (
    STATE_DONE,
    STATE_FAILED,
    STATE_PRUNED,
    STATE_RUNNING,
    STATE_STOPPED,
    STATE_TRAINED,
    STATES,
    TAG_ERROR,
    TAG_FAILED_STEP,
    TAG_STATE,
)

__all__ = [
    "CHECKPOINT_MANIFEST",
    "CONFIG_FILE",
    "FINAL_DIR",
    "IllegalTransition",
    "LAMBDA_STATE_FILE",
    "OWNER_FILE",
    "PARENT_RUN_ENV",
    "RUN_LOG",
    "RunLayout",
    "TRAIN_LOG",
    "TRANSITIONS",
    "WORKER_FILE",
    "DiskFullError",
    "check_transition",
    "checkpoint_problem",
    "create_run",
    "disk_full_as_error",
    "disk_full_error",
    "experiment_folder",
    "mark_failed",
    "mark_stopped",
    "set_parent_state",
    "set_state",
]

CONFIG_FILE = "config.yaml"
OWNER_FILE = "owner.json"
RUN_LOG = "run.log"
TRAIN_LOG = "train.log"
WORKER_FILE = "worker.json"
SUBMITTED_FILE = "submitted.json"
FINAL_DIR = "final"
LAMBDA_STATE_FILE = "lambda_state.json"
"""λ and whether it is learnable: in every checkpoint folder and in ``final/``."""
CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
CHECKPOINT_MANIFEST = "lgrpo-manifest.json"
"""Written last into a checkpoint folder, atomically: the size of every file of the checkpoint and the SHA-256 of the
small ones (state files, configs; see :func:`write_checkpoint_manifest`)."""

PARENT_RUN_ENV = "LGRPO_PARENT_RUN_ID"
"""MLflow id of a parent run (a grid's or a study's), handed by the orchestrator to the run's processes; the
train run is created with ``mlflow.parentRunId`` set to it."""

TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({STATE_RUNNING}),
    STATE_RUNNING: frozenset({STATE_RUNNING, STATE_TRAINED, STATE_DONE, STATE_FAILED, STATE_PRUNED, STATE_STOPPED}),
    STATE_FAILED: frozenset({STATE_RUNNING, STATE_FAILED}),
    STATE_STOPPED: frozenset({STATE_RUNNING, STATE_STOPPED}),
    STATE_TRAINED: frozenset({STATE_DONE, STATE_RUNNING}),
    STATE_DONE: frozenset({STATE_DONE}),
    STATE_PRUNED: frozenset({STATE_PRUNED}),
}
"""Allowed ``lgrpo.state`` moves (``None``: the run is being created). A train run whose evaluation fails keeps
``trained`` (see :func:`mark_failed`), so only its evaluation is redone; ``trained → running`` trains again a run
whose final model was lost and that has no last-step checkpoint to rebuild it from."""


class IllegalTransition(RuntimeError):
    """A state move the lifecycle does not allow (a bug in the caller)."""


def check_transition(current: str | None, new: str) -> None:
    """Raise :class:`IllegalTransition` unless ``current → new`` is in :data:`TRANSITIONS`."""
    if new not in STATES:
        raise IllegalTransition(f"{new!r} is not a run state; states are {', '.join(STATES)}")
    if new not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"a run cannot go from {current or 'new'!r} to {new!r}")


def set_state(client, mlflow_run_id: str, new: str, *, current: str | None | object = ...) -> None:
    """Move run ``mlflow_run_id`` to state ``new`` (the only writer of ``lgrpo.state``).

    ``current`` is the state the caller read; when omitted it is read from the store. The move must be allowed
    by :data:`TRANSITIONS`.
    """
    if current is ...:
        current = client.get_run(mlflow_run_id).data.tags.get(TAG_STATE)
    check_transition(current, new)  # type: ignore[arg-type]
    client.set_tag(mlflow_run_id, TAG_STATE, new)


PARENT_STATES: tuple[str, ...] = (STATE_RUNNING, STATE_DONE, STATE_FAILED)
"""States of a grid's or study's parent run: ``running`` while an orchestrator works on it (or work remains),
``done`` when every member is done, ``failed`` when a member failed. A re-run may move it anywhere among them."""


def set_parent_state(client, mlflow_run_id: str, new: str) -> None:
    """Set the state of a grid or study parent run (any of :data:`PARENT_STATES`)."""
    if new not in PARENT_STATES:
        raise IllegalTransition(f"a grid or study run cannot be {new!r}; its states are {', '.join(PARENT_STATES)}")
    client.set_tag(mlflow_run_id, TAG_STATE, new)


def create_run(client, experiment_id: str, tags: Mapping[str, str], run_name: str | None = None) -> str:
    """Create an MLflow run in state ``running`` with ``tags``; returns its MLflow run id."""
    if TAG_STATE in tags:
        raise IllegalTransition("create_run sets the state itself; do not pass lgrpo.state")
    run = client.create_run(experiment_id, run_name=run_name, tags={**tags, TAG_STATE: STATE_RUNNING})
    return run.info.run_id


def mark_stopped(client, mlflow_run_id: str, *, current: str | None | object = ...) -> None:
    """Record an interruption on request (Ctrl-C, SIGINT/SIGTERM): state ``stopped``, except for a run whose training
    is finished, which keeps its state (only its evaluation was interrupted)."""
    if current is ...:
        current = client.get_run(mlflow_run_id).data.tags.get(TAG_STATE)
    if current not in (STATE_TRAINED, STATE_DONE):
        set_state(client, mlflow_run_id, STATE_STOPPED, current=current)


def mark_failed(client, mlflow_run_id: str, error: str, *, step: str | None = None,
                current: str | None | object = ...) -> None:
    """Record a failure: ``lgrpo.error`` (at most 5,000 characters), ``lgrpo.failed_step`` when ``step`` is
    given, and state ``failed`` — except for a run whose training is finished (``trained``/``done``): its
    evaluation failed, it keeps its state so that only the evaluation is redone."""
    if current is ...:
        current = client.get_run(mlflow_run_id).data.tags.get(TAG_STATE)
    if current not in (STATE_TRAINED, STATE_DONE):
        set_state(client, mlflow_run_id, STATE_FAILED, current=current)
    client.set_tag(mlflow_run_id, TAG_ERROR, error[:5000])
    if step:
        client.set_tag(mlflow_run_id, TAG_FAILED_STEP, step)


_FOLDER_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def experiment_folder(experiment: str) -> str:
    """The folder name of MLflow experiment ``experiment`` under ``runs_dir``: the name itself when it is a plain
    file name (letters, digits, ``._-``), else a slug of it plus 8 hex characters of its SHA-256 (distinct names
    never share a folder)."""
    if _FOLDER_SAFE.match(experiment) and len(experiment) <= 100:
        return experiment
    import hashlib

    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._-")[:80] or "experiment"
    return f"{slug}-{hashlib.sha256(experiment.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class RunLayout:
    """The folder of one run (see the module docstring); paths only, nothing is created on construction."""

    root: Path

    @classmethod
    def of(cls, runs_dir: str | os.PathLike[str], run_id: str, experiment: str) -> RunLayout:
        """The folder of run ``run_id`` logged to MLflow experiment ``experiment`` under ``runs_dir``."""
        return cls(Path(runs_dir).expanduser().resolve() / experiment_folder(experiment) / run_id)

    @classmethod
    def for_config(cls, config, run_id: str) -> RunLayout:
        """The folder of run ``run_id`` of ``config`` (a ``RunConfig``: its ``tracking.runs_dir`` and ``experiment``)."""
        return cls.of(config.tracking.runs_dir, run_id, config.tracking.experiment)

    @property
    def experiment_dir(self) -> Path:
        """``<runs_dir>/<experiment>/``: the folders of one experiment's runs (and their lock files)."""
        return self.root.parent

    @property
    def legacy_root(self) -> Path:
        """``<runs_dir>/<run_id>/``: where lgrpo-bench before 0.2 kept the run's folder (one per run id)."""
        return self.root.parent.parent / self.run_id

    @property
    def lock_file(self) -> Path:
        return self.root.parent / f".{self.run_id}.lock"

    @property
    def owner_file(self) -> Path:
        return self.root / OWNER_FILE

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def run_log(self) -> Path:
        return self.root / RUN_LOG

    @property
    def train_log(self) -> Path:
        return self.root / TRAIN_LOG

    @property
    def worker_file(self) -> Path:
        return self.root / WORKER_FILE

    @property
    def submitted_file(self) -> Path:
        return self.root / SUBMITTED_FILE

    def write_submitted(self, scheduler: str, job_id: str) -> None:
        """Record that the run was submitted as scheduler job ``job_id``. Never raises: the job is submitted
        already, and a run folder that refuses the record only loses the ``queued`` state."""
        import socket

        tmp = self.submitted_file.with_suffix(f".tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"scheduler": scheduler, "job_id": str(job_id), "submitted": time.time(),
                                       "host": socket.gethostname()}))
            os.replace(tmp, self.submitted_file)
        except OSError:
            pass

    def read_submitted(self) -> dict[str, Any] | None:
        """The submission record (``scheduler``, ``job_id``, ``submitted``, ``host``), or None."""
        try:
            submission = json.loads(self.submitted_file.read_text())
        except (OSError, ValueError):
            return None
        return submission if isinstance(submission, dict) and submission.get("job_id") else None

    def clear_submitted(self) -> None:
        try:
            self.submitted_file.unlink()
        except OSError:
            pass

    @property
    def final_dir(self) -> Path:
        return self.root / FINAL_DIR

    def checkpoint_dir(self, step: int) -> Path:
        return self.root / f"{CHECKPOINT_PREFIX}{step}"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Every ``checkpoint-N`` folder, newest (largest N) first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = CHECKPOINT_RE.match(child.name)
            if match and child.is_dir():
                found.append((int(match[1]), child))
        return sorted(found, reverse=True)

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint that is complete and intact (:func:`checkpoint_problem` finds nothing wrong: no file
        missing, truncated or with other content than its manifest records), else None. Changes nothing on disk."""
        for _, folder in self.checkpoints():
            if checkpoint_problem(folder) is None:
                return folder
        return None

    def resume_point(self) -> tuple[Path | None, list[str]]:
        """The checkpoint to resume from, and why newer ones were passed over (empty when none was).

        Checkpoints newer than the one chosen that :func:`checkpoint_problem` refuses (a write that a kill or a full
        disk cut short, a file corrupted or changed since: the reason names the file) are moved aside to
        ``checkpoint-N.incomplete-<time>`` so that training writes that step again into a clean folder."""
        problems: list[str] = []
        for _, folder in self.checkpoints():
            problem = checkpoint_problem(folder)
            if problem is None:
                return folder, problems
            problems.append(problem)
            _set_aside(folder)
        return None, problems

    def result_paths(self) -> list[Path]:
        """What the folder holds as results of its MLflow run: checkpoints (complete, or moved aside as incomplete),
        the final model, the owner record and the training log."""
        if not self.root.is_dir():
            return []
        found = sorted(child for child in self.root.iterdir() if child.name.startswith(CHECKPOINT_PREFIX))
        return found + [path for path in (self.final_dir, self.owner_file, self.train_log) if path.exists()]

    def has_outputs(self) -> bool:
        """Whether the folder holds results of an earlier attempt (a checkpoint or a final model)."""
        return bool(self.checkpoints()) or self.final_dir.exists()

    def write_config(self, text: str) -> None:
        """Write ``config.yaml`` atomically when its content differs (creating the folder)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.config_file.is_file() and self.config_file.read_text(encoding="utf-8") == text:
            return
        tmp = self.config_file.with_name(f".{CONFIG_FILE}.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.config_file)

    def move_aside(self) -> Path:
        """Rename the folder to ``<run_id>.orphaned-<time>`` (results of a run whose MLflow record is gone)."""
        target = self.root.with_name(f"{self.root.name}.orphaned-{time.strftime('%Y%m%d-%H%M%S')}")
        self.root.rename(target)
        return target


# ---------------------------------------------------------------------------------------------------------
# Checkpoint completeness
# ---------------------------------------------------------------------------------------------------------
HASHED_MAX_BYTES = 1 << 20
"""Files of a checkpoint up to this size (config, tokenizer and trainer JSONs, RNG and scheduler state,
``training_args.bin``, a tiny model's weights) have their SHA-256 in the manifest; larger ones (weights, optimizer
state) their size only, plus the safetensors header check."""
ALWAYS_HASHED = frozenset({LAMBDA_STATE_FILE, "trainer_state.json"})
"""State files hashed whatever their size: they grow with the number of steps and are read whole on resume."""
_HASH_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_hashed(name: str, size: int) -> bool:
    return size <= HASHED_MAX_BYTES or Path(name).name in ALWAYS_HASHED


def write_checkpoint_manifest(folder: str | os.PathLike[str]) -> Path:
    """Write ``lgrpo-manifest.json`` into ``folder``, atomically and last: every file's relative path and size
    (``files``) and the SHA-256 of every small state file (``sha256``: files up to :data:`HASHED_MAX_BYTES`, and
    those of :data:`ALWAYS_HASHED` whatever their size).

    Called after everything else of the checkpoint is on disk; its presence means the checkpoint is complete. A
    write that fails (a full disk) leaves no manifest, so the checkpoint is never resumed from.
    """
    folder = Path(folder)
    files: dict[str, int] = {}
    hashes: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != CHECKPOINT_MANIFEST and not path.name.startswith(f".{CHECKPOINT_MANIFEST}"):
            name = path.relative_to(folder).as_posix()
            files[name] = path.stat().st_size
            if _is_hashed(name, files[name]):
                hashes[name] = _sha256(path)
    manifest = folder / CHECKPOINT_MANIFEST
    tmp = folder / f".{CHECKPOINT_MANIFEST}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"files": files, "sha256": hashes, "written": time.time()}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, manifest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def _read_manifest(folder: Path) -> tuple[dict[str, int], dict[str, str]] | str:
    """(sizes, hashes) of the manifest in ``folder``, or why it cannot be used."""
    manifest = folder / CHECKPOINT_MANIFEST
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{folder.name} has no {CHECKPOINT_MANIFEST} (the write did not finish)"
    except (ValueError, OSError) as error:
        return f"{folder.name}/{CHECKPOINT_MANIFEST} is unreadable ({error})"
    sizes = content.get("files") if isinstance(content, dict) else None
    hashes = content.get("sha256", {}) if isinstance(content, dict) else None
    if not (isinstance(sizes, dict) and isinstance(hashes, dict)
            and all(isinstance(size, int) and not isinstance(size, bool) for size in sizes.values())
            and all(isinstance(value, str) and name in sizes for name, value in hashes.items())):
        return f"{folder.name}/{CHECKPOINT_MANIFEST} is unreadable (not a manifest of file sizes and hashes)"
    outside = next((name for name in sizes if Path(name).is_absolute() or ".." in Path(name).parts), None)
    if outside is not None:
        return f"{folder.name}/{CHECKPOINT_MANIFEST} is unreadable (it lists {outside!r}, outside the checkpoint)"
    return sizes, hashes


def checkpoint_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why the checkpoint in ``folder`` cannot be resumed from (None when it can); the reason names the file.

    Complete means: the manifest is there and parses, every file it lists exists with the listed size, every file
    it has a SHA-256 for has that content (a same-size corruption of a state file is found), and every
    ``*.safetensors`` file has a readable header (the first 8 bytes give the header length, which must fit in the
    file). Manifests written before hashes were recorded (no ``sha256``) are checked on sizes and headers only, as
    they were then. A checkpoint written before manifests existed is not trusted.

    Cheap enough for ``plan`` on every run of a grid: one ``stat`` per file, the hash of the small files, 8 bytes
    and the header of each safetensors file. A tiny-s checkpoint (2.5 MB, of which 0.85 MB hashed, mostly its
    weights) takes 1-4 ms (0.5 ms on sizes alone); larger models hash no more (their weights are over the limit).
    """
    folder = Path(folder)
    listed = _read_manifest(folder)
    if isinstance(listed, str):
        return listed
    sizes, hashes = listed
    for name, size in sizes.items():
        try:
            actual = (folder / name).stat().st_size
        except OSError:
            return f"{folder.name}/{name} is missing"
        if actual != size:
            return f"{folder.name}/{name} has {actual} bytes, {size} expected (truncated or changed)"
    for name, expected in hashes.items():
        try:
            actual_hash = _sha256(folder / name)
        except OSError as error:
            return f"{folder.name}/{name} is unreadable ({error})"
        if actual_hash != expected:
            return (f"{folder.name}/{name}: content differs from its manifest (sha256 {actual_hash[:16]}…, "
                    f"{expected[:16]}… expected; corrupted or changed after the checkpoint was written)")
    for name, size in sizes.items():
        if name.endswith(".safetensors"):
            problem = _safetensors_problem(folder / name, size)
            if problem:
                return f"{folder.name}/{name}: {problem}"
    return None


def _safetensors_problem(path: Path, size: int) -> str | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return "shorter than a safetensors header"
            header_length = int.from_bytes(head, "little")
            if header_length <= 0 or 8 + header_length > size:
                return f"header length {header_length} does not fit the file ({size} bytes)"
            json.loads(handle.read(header_length))
    except (OSError, ValueError) as error:
        return f"unreadable safetensors header ({error})"
    return None


def _set_aside(folder: Path) -> Path:
    """Rename a checkpoint that cannot be resumed to ``checkpoint-N.incomplete-<time>`` (kept for inspection)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = folder.with_name(f"{folder.name}.incomplete-{stamp}")
    count = 1
    while target.exists():
        count += 1
        target = folder.with_name(f"{folder.name}.incomplete-{stamp}-{count}")
    folder.rename(target)
    return target


# ---------------------------------------------------------------------------------------------------------
# A full disk while saving
# ---------------------------------------------------------------------------------------------------------
DISK_FULL_FREE_BYTES = 16 << 20
"""An error that hides its errno (torch's zip writer) is taken for a full disk when less than this is free after
it: a write that ran out of space fills the file system to (almost) its last block."""
_ENOSPC_WORDS = ("no space left on device", "os error 28", "[errno 28]")
"""ENOSPC as other libraries report it (safetensors' Rust writer: ``I/O error: No space left on device (os error 28)``)."""
_HIDDEN_WRITE_FAILURE_WORDS = ("unexpected pos", "pytorchstreamwriter failed writing file", "file write failed")
"""torch.save's failed writes, which carry no errno (``[enforce fail at inline_container.cc:…] . unexpected pos 576
vs 534``)."""


class DiskFullError(OSError):
    """Saving failed because the file system is full: ``disk full: could not write <path> (<free> free on <mount>)``.

    An ``OSError`` with ``errno`` ENOSPC (EDQUOT for an exceeded quota); ``path``, ``free`` and ``mount`` are
    attributes."""

    def __init__(self, message: str, path: Path | None = None, free: int | None = None, mount: Path | None = None,
                 *, quota: bool = False):
        import errno

        super().__init__(message)  # one argument: str() is the message, and the error pickles (OSError.__reduce__)
        self.errno = errno.EDQUOT if quota else errno.ENOSPC
        self.path, self.free, self.mount = path, free, mount

    @classmethod
    def on(cls, path: Path, *, quota: bool = False) -> DiskFullError:
        """The error for a failed write of ``path``, with the free space of its file system now."""
        free, mount = _free_space(path)
        room = "unknown space" if free is None else f"{free:,} bytes"
        what = "disk quota exceeded" if quota else "disk full"
        return cls(f"{what}: could not write {path} ({room} free on {mount})", path, free, mount, quota=quota)


def _free_space(path: Path) -> tuple[int | None, Path]:
    """Bytes free to this user on the file system of ``path`` (its nearest existing ancestor), and its mount point."""
    import shutil

    existing = Path(os.path.abspath(path))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    mount = existing
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        return shutil.disk_usage(existing).free, mount
    except OSError:
        return None, mount


def _error_chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and error not in chain and len(chain) < 16:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def disk_full_error(error: BaseException, path: str | os.PathLike[str]) -> DiskFullError | None:
    """The :class:`DiskFullError` that ``error``, raised while writing ``path``, stands for; None for other errors.

    A full disk is: an ``OSError`` with errno ENOSPC or EDQUOT anywhere in the chain of causes; a library's message
    saying ENOSPC (safetensors); or torch's write failures that hide the errno (``unexpected pos``,
    ``PytorchStreamWriter failed writing file``) when :func:`shutil.disk_usage` finds less than
    :data:`DISK_FULL_FREE_BYTES` free on ``path``'s file system afterwards.
    """
    import errno

    if isinstance(error, DiskFullError):
        return error
    path = Path(path)
    chain = _error_chain(error)
    for link in chain:
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT):
            written = Path(link.filename) if isinstance(link.filename, (str, os.PathLike)) else path
            return DiskFullError.on(written, quota=link.errno == errno.EDQUOT)
    messages = " | ".join(str(link).lower() for link in chain)
    if any(words in messages for words in _ENOSPC_WORDS):
        return DiskFullError.on(path)
    if any(words in messages for words in _HIDDEN_WRITE_FAILURE_WORDS):
        full = DiskFullError.on(path)
        if full.free is not None and full.free < DISK_FULL_FREE_BYTES:
            return full
    return None


class disk_full_as_error:
    """``with disk_full_as_error(path): <save>``: a save into ``path`` that fails for a full disk raises
    :class:`DiskFullError` (from the original error); any other error passes unchanged."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, DiskFullError) or not isinstance(error, Exception):
            return False
        full = disk_full_error(error, self.path)
        if full is None:
            return False
        raise full from error
