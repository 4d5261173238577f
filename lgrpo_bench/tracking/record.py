"""A run's record: its folder layout and its lifecycle state. The one owner of both.

Folder
------
Every run of lgrpo-bench has a folder ``<runs_dir>/<run_id>/`` whose layout is :class:`RunLayout`:

====================  ==============================================================================================
``config.yaml``       the resolved run config, written once by whoever resolved it (the grid orchestrator, a
                      sweep or ``lgrpo-bench train``); the worker processes only read it
``run.log``           stdout and stderr of every process of every attempt (appended)
``train.log``         the training process's own log lines (Python logging)
``worker.json``       liveness record while a worker executes the run (see :mod:`lgrpo_bench.dispatch.state`)
``submitted.json``    the scheduler job a run was submitted as (SLURM), while it is queued or running
``checkpoint-N/``     trainer checkpoints after optimizer step N; complete once ``lgrpo-manifest.json`` is in it
``final/``            the final model, its tokenizer and ``lambda_state.json``
====================  ==============================================================================================

State
-----
A training run's MLflow run carries ``lgrpo.state``; this module holds the only code that writes it::

    new ──► running ──► trained ──► done
             ▲  │  │        │
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
    "PARENT_RUN_ENV",
    "RUN_LOG",
    "RunLayout",
    "TRAIN_LOG",
    "TRANSITIONS",
    "WORKER_FILE",
    "check_transition",
    "create_run",
    "mark_failed",
    "mark_stopped",
    "set_parent_state",
    "set_state",
]

CONFIG_FILE = "config.yaml"
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
"""Written last into a checkpoint folder, atomically: the names and sizes of every file of the checkpoint."""

PARENT_RUN_ENV = "LGRPO_PARENT_RUN_ID"
"""MLflow id of a parent run (a grid's or a study's), handed by the orchestrator to the run's processes; the
train run is created with ``mlflow.parentRunId`` set to it."""

TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({STATE_RUNNING}),
    STATE_RUNNING: frozenset({STATE_RUNNING, STATE_TRAINED, STATE_DONE, STATE_FAILED, STATE_PRUNED, STATE_STOPPED}),
    STATE_FAILED: frozenset({STATE_RUNNING, STATE_FAILED}),
    STATE_STOPPED: frozenset({STATE_RUNNING, STATE_STOPPED}),
    STATE_TRAINED: frozenset({STATE_DONE}),
    STATE_DONE: frozenset({STATE_DONE}),
    STATE_PRUNED: frozenset({STATE_PRUNED}),
}
"""Allowed ``lgrpo.state`` moves (``None``: the run is being created). A train run whose evaluation fails keeps
``trained`` (see :func:`mark_failed`), so only its evaluation is redone."""


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


@dataclass(frozen=True)
class RunLayout:
    """The folder of one run (see the module docstring); paths only, nothing is created on construction."""

    root: Path

    @classmethod
    def of(cls, runs_dir: str | os.PathLike[str], run_id: str) -> RunLayout:
        return cls(Path(runs_dir).expanduser().resolve() / run_id)

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
        """The newest checkpoint that is complete (:func:`checkpoint_problem` finds nothing wrong), else None."""
        for _, folder in self.checkpoints():
            if checkpoint_problem(folder) is None:
                return folder
        return None

    def resume_point(self) -> tuple[Path | None, list[str]]:
        """The checkpoint to resume from, and why newer ones were passed over (empty when none was).

        Incomplete checkpoints newer than the one chosen (a write that a kill or a full disk cut short) are moved
        aside to ``checkpoint-N.incomplete-<time>`` so that training writes that step again into a clean folder."""
        problems: list[str] = []
        for _, folder in self.checkpoints():
            problem = checkpoint_problem(folder)
            if problem is None:
                return folder, problems
            problems.append(problem)
            folder.rename(folder.with_name(f"{folder.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}"))
        return None, problems

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
def write_checkpoint_manifest(folder: str | os.PathLike[str]) -> Path:
    """Write ``lgrpo-manifest.json`` (every file's relative path and size) into ``folder``, atomically and last.

    Called after everything else of the checkpoint is on disk; its presence means the checkpoint is complete.
    """
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != CHECKPOINT_MANIFEST and not path.name.startswith(f".{CHECKPOINT_MANIFEST}"):
            files[str(path.relative_to(folder))] = path.stat().st_size
    manifest = folder / CHECKPOINT_MANIFEST
    tmp = folder / f".{CHECKPOINT_MANIFEST}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"files": files, "written": time.time()}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, manifest)
    return manifest


def checkpoint_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why the checkpoint in ``folder`` cannot be resumed from (None when it can).

    Complete means: the manifest is there and parses, every file it lists exists with the listed size, and
    every ``*.safetensors`` file has a readable header (the first 8 bytes give the header length, which must
    fit in the file). A checkpoint written before manifests existed is not trusted.
    """
    folder = Path(folder)
    manifest = folder / CHECKPOINT_MANIFEST
    try:
        listed: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return f"{folder.name} has no {CHECKPOINT_MANIFEST} (the write did not finish)"
    except (ValueError, KeyError, TypeError, OSError) as error:
        return f"{folder.name}/{CHECKPOINT_MANIFEST} is unreadable ({error})"
    for name, size in listed.items():
        path = folder / name
        try:
            actual = path.stat().st_size
        except OSError:
            return f"{folder.name}/{name} is missing"
        if actual != size:
            return f"{folder.name}/{name} has {actual} bytes, {size} expected (truncated or changed)"
        if name.endswith(".safetensors"):
            problem = _safetensors_problem(path, actual)
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
