"""The state of every run of a grid, read from the MLflow store in bulk (one search per experiment).

States shown by ``plan`` / ``status``:

=========  ==================================================================================================
new        no MLflow run carries the run id (and no process works on it)
queued     submitted to a scheduler that has not started it yet: SLURM lists its job as pending (see *Queued*
           below); the detail names the SLURM job id and SLURM's reason. ``run`` leaves it alone
running    a live process works on it (see *Liveness* below), or SLURM has started its job and the process is
           coming up
done       ``lgrpo.state = done``: trained and, when configured, evaluated
partial    unfinished and resumable: trained but not evaluated (``trained``), or interrupted — Ctrl-C (MLflow
           status ``KILLED``) or a process that died without a word (``running`` with no live process)
failed     ``lgrpo.state = failed`` (an exception, a crash, a kill), or an evaluation that failed after training,
           or a run that failed before it could create its MLflow run (recorded on the grid's parent run)
=========  ==================================================================================================

``run`` launches new, partial and failed runs; training resumes from the last checkpoint into the same
MLflow run, so no run is ever logged twice.

Liveness
--------
MLflow cannot tell a live run from one whose process was SIGKILLed: both say ``running``. Whatever executes
a run (:func:`lgrpo_bench.dispatch.job.execute_job`) therefore keeps ``<runs_dir>/<run_id>/worker.json``
(host, pid, the pid's start time, a heartbeat refreshed every :data:`HEARTBEAT_S` seconds) while it works,
and removes it when it ends. A record is live when its host is this host and that pid (with that start time)
still exists, or, for another host, when its heartbeat is younger than :data:`STALE_AFTER_S` seconds.
Runs on other nodes (Ray, SLURM) need ``runs_dir`` on a shared file system — they need it anyway to resume
from checkpoints anywhere.

Queued
------
A run waiting in a SLURM queue has no process yet. When the SLURM executor submits a run it writes
``<runs_dir>/<run_id>/submitted.json`` (scheduler, job id such as ``812_3``, time) and removes it when the job
has ended. A run without a live worker whose record names a job that ``squeue`` lists as pending is ``queued``
(one ``squeue`` call for the whole grid: :func:`slurm_job_states`); a job that has started is ``running``; a
job SLURM no longer lists, or one that has ended, leaves the record without effect (the store decides). Where
``squeue`` cannot be run, the record is only mentioned in the detail: a stale record must never hide a run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lgrpo_bench.tracking.schema import (
    KIND_EVAL,
    KIND_GRID,
    KIND_TRAIN,
    KIND_WARM_START,
    STATE_DONE,
    STATE_FAILED,
    STATE_TRAINED,
    TAG_GRID,
    TAG_KIND,
    TAG_RUN_ID,
    TAG_STATE,
)

__all__ = [
    "DONE", "FAILED", "GRID_STATES", "HEARTBEAT_S", "NEW", "PARTIAL", "QUEUED", "RUNNING", "STALE_AFTER_S", "RunStatus",
    "TAG_ERROR", "TAG_FAILED_STEP", "classify", "clear_submitted", "failure_tag", "grid_status", "latest_checkpoint_name",
    "pid_alive", "process_start_ticks", "read_submitted", "read_worker", "search_experiment_runs", "slurm_job_states",
    "store_exists", "worker_alive", "write_submitted",
]

NEW, QUEUED, RUNNING, DONE, PARTIAL, FAILED = "new", "queued", "running", "done", "partial", "failed"
GRID_STATES: tuple[str, ...] = (NEW, QUEUED, RUNNING, DONE, PARTIAL, FAILED)

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
WORKER_FILE = "worker.json"
SUBMITTED_FILE = "submitted.json"
SLURM_PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"})
SLURM_ACTIVE_STATES = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"})
"""SLURM job states (``squeue %T``) of a job that waits for, or holds, its allocation; any other state has ended."""
TAG_ERROR = "lgrpo.error"
"""Short error of a failed run (set by training, or by the job runner when the process died)."""
TAG_FAILED_STEP = "lgrpo.failed_step"
"""``train`` or ``eval``: the step of the run that failed last."""
FAILURE_TAG_PREFIX = "lgrpo.failed."
"""On a grid's parent run: ``lgrpo.failed.<run_id>`` = error of a run that failed before creating its MLflow run."""


TRAIN_AND_GRID_FILTER = (f"tags.`{TAG_KIND}` != '{KIND_EVAL}' AND tags.`{TAG_KIND}` != '{KIND_WARM_START}'")
"""Train and grid runs (MLflow filters have no IN for tags): the one search per experiment."""


def failure_tag(rid: str) -> str:
    return f"{FAILURE_TAG_PREFIX}{rid}"


@dataclass
class RunStatus:
    """What the store (and the liveness record) say about one run id."""

    run_id: str
    state: str
    detail: str = ""
    needs_train: bool = True
    mlflow_run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    worker: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------------------
# Liveness
# ---------------------------------------------------------------------------------------------------------
def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether process ``pid`` exists (and, when ``start_ticks`` is given and knowable, is the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start_ticks is not None:
        now_ticks = process_start_ticks(pid)
        if now_ticks is not None and now_ticks != start_ticks:
            return False  # the pid was reused by another process
    state = _proc_state(pid)
    return state not in ("Z", "X")


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def read_worker(run_dir: str | Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(run_dir) / WORKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "pid" in record and "host" in record else None


def worker_alive(record: dict[str, Any] | None, *, now: float | None = None, host: str | None = None) -> bool:
    """See *Liveness* in the module docstring."""
    if not record:
        return False
    host = host or socket.gethostname()
    if record.get("host") == host:
        return pid_alive(int(record["pid"]), record.get("pid_start"))
    now = time.time() if now is None else now
    return now - float(record.get("heartbeat", 0.0)) < STALE_AFTER_S


# ---------------------------------------------------------------------------------------------------------
# Queued (SLURM)
# ---------------------------------------------------------------------------------------------------------
def write_submitted(run_dir: str | Path, scheduler: str, job_id: str) -> None:
    """Record that the run was submitted as ``job_id`` (see *Queued* in the module docstring). Never raises:
    the job is submitted already, and a run folder that refuses the record only loses the ``queued`` state."""
    path = Path(run_dir) / SUBMITTED_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"scheduler": scheduler, "job_id": str(job_id), "submitted": time.time(),
                                   "host": socket.gethostname()}))
        os.replace(tmp, path)
    except OSError:
        pass


def read_submitted(run_dir: str | Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(run_dir) / SUBMITTED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("job_id") else None


def clear_submitted(run_dir: str | Path) -> None:
    try:
        (Path(run_dir) / SUBMITTED_FILE).unlink()
    except OSError:
        pass


def slurm_job_states(job_ids: Iterable[str], *, timeout_s: float = 30.0) -> dict[str, tuple[str, str]] | None:
    """``{job id: (state, reason)}`` of the jobs SLURM still lists (pending, running, or ended less than
    ``MinJobAge`` ago), array tasks as ``<array id>_<index>``, from one ``squeue`` call; jobs SLURM no longer
    knows are absent. None when ``squeue`` cannot be run or fails (no SLURM client here, controller down)."""
    base_ids = sorted({str(job_id).split("_", 1)[0] for job_id in job_ids})
    if not base_ids:
        return {}
    argv = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r", f"--jobs={','.join(base_ids)}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return {} if "Invalid job id" in done.stderr else None  # every job ended long enough ago to be forgotten
    states: dict[str, tuple[str, str]] = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def latest_checkpoint_name(run_dir: str | Path) -> str | None:
    from lgrpo_bench.training.run import latest_checkpoint

    checkpoint = latest_checkpoint(Path(run_dir))
    return checkpoint.name if checkpoint else None


# ---------------------------------------------------------------------------------------------------------
# Classification (pure)
# ---------------------------------------------------------------------------------------------------------
def classify(tags: dict[str, str] | None, mlflow_status: str | None, alive: bool,
             parent_failure: str | None = None) -> tuple[str, str, bool]:
    """(state, detail, needs_train) of a run from its train run's tags and MLflow status (None: no run yet),
    whether a live process works on it, and a failure recorded on the grid's parent run."""
    if tags is None:
        if alive:
            return RUNNING, "starting", True
        if parent_failure:
            return FAILED, parent_failure, True
        return NEW, "", True
    state = tags.get(TAG_STATE)
    error = tags.get(TAG_ERROR, "")
    if state == STATE_DONE:
        return DONE, "", False
    if state == STATE_TRAINED:
        if alive:
            return RUNNING, "evaluating", False
        if tags.get(TAG_FAILED_STEP) == "eval":
            return FAILED, f"evaluation failed: {error}" if error else "evaluation failed", False
        return PARTIAL, "trained, evaluation pending", False
    if alive:
        return RUNNING, "retrying" if state == STATE_FAILED else "", True
    if state == STATE_FAILED:
        if mlflow_status == "KILLED":
            return PARTIAL, "interrupted (Ctrl-C)", True
        return FAILED, error, True
    return PARTIAL, "interrupted (its process is gone)", True


# ---------------------------------------------------------------------------------------------------------
# Bulk reading
# ---------------------------------------------------------------------------------------------------------
def search_experiment_runs(client, experiment_id: str, filter_string: str = "") -> list:
    """Every active run of one experiment matching ``filter_string``: one search, paged by 10,000."""
    from mlflow.entities import ViewType

    runs: list = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=10000, order_by=["attributes.start_time DESC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def store_exists(uri: str) -> bool:
    """False for a SQLite store whose file does not exist yet (reading must not create it)."""
    from lgrpo_bench.tracking.store import sqlite_path

    path = sqlite_path(uri)
    return path is None or path.exists()


def grid_status(points: Sequence, grid_name: str, *, clients: dict[str, Any] | None = None,
                finished_pid: int | None = None) -> dict[str, RunStatus]:
    """:class:`RunStatus` of every point (keyed by run id), with one ``search_runs`` per (store, experiment).

    ``points`` are :class:`~lgrpo_bench.config.grid.GridPoint` (their ``config.tracking`` says where to look).
    Nothing is created: a store or experiment that does not exist yet means every run is new.
    ``finished_pid``: liveness records of this process on this host count as gone (an orchestrator whose jobs
    have all returned, reading a record that a read-only run folder kept it from removing).
    """
    from lgrpo_bench.tracking.store import open_client, resolve_tracking_uri

    clients = {} if clients is None else clients
    by_location: dict[tuple[str, str], list] = {}
    uris: dict[str | None, str] = {}
    for point in points:
        configured = point.config.tracking.uri
        uri = uris[configured] if configured in uris else uris.setdefault(configured, resolve_tracking_uri(configured))
        by_location.setdefault((uri, point.config.tracking.experiment), []).append(point)
    runs_dirs: dict[str, Path] = {}
    working: dict[Path, set[str]] = {}  # per runs_dir: run ids with a liveness record (one directory scan)
    submitted: dict[Path, set[str]] = {}  # per runs_dir: run ids with a submission record (same scan)
    awaiting: dict[str, dict[str, Any]] = {}  # run id -> submission record of runs no process works on yet

    statuses: dict[str, RunStatus] = {}
    host = socket.gethostname()
    now = time.time()
    for (uri, experiment), members in by_location.items():
        train_runs: dict[str, Any] = {}
        failures: dict[str, str] = {}
        if store_exists(uri):
            client = clients.get(uri) or clients.setdefault(uri, open_client(uri))
            found = client.get_experiment_by_name(experiment)
            if found is not None and found.lifecycle_stage == "active":
                for run in search_experiment_runs(client, found.experiment_id, TRAIN_AND_GRID_FILTER):
                    tags = run.data.tags
                    kind = tags.get(TAG_KIND)
                    if kind == KIND_TRAIN and TAG_RUN_ID in tags:
                        train_runs.setdefault(tags[TAG_RUN_ID], run)  # newest first
                    elif kind == KIND_GRID and tags.get(TAG_GRID) == grid_name:
                        for key, value in tags.items():
                            if key.startswith(FAILURE_TAG_PREFIX):
                                failures.setdefault(key[len(FAILURE_TAG_PREFIX):], value)
        for point in members:
            rid = point.run_id
            configured_dir = point.config.tracking.runs_dir
            runs_dir = runs_dirs.get(configured_dir) or runs_dirs.setdefault(
                configured_dir, Path(configured_dir).expanduser().resolve())
            if runs_dir not in working:
                working[runs_dir], submitted[runs_dir] = _runs_with_worker_records(runs_dir)
            run_dir = runs_dir / rid
            worker = read_worker(run_dir) if rid in working[runs_dir] else None
            alive = worker_alive(worker, now=now, host=host) and not (
                finished_pid is not None and worker.get("host") == host and worker.get("pid") == finished_pid)
            run = train_runs.get(rid)
            tags = dict(run.data.tags) if run is not None else None
            state, detail, needs_train = classify(tags, run.info.status if run else None, alive, failures.get(rid))
            if state in (PARTIAL, FAILED) and needs_train:
                checkpoint = latest_checkpoint_name(run_dir)
                if checkpoint and run is not None:
                    detail = f"{detail}; resumes from {checkpoint}" if detail else f"resumes from {checkpoint}"
            if state in (NEW, PARTIAL, FAILED) and rid in submitted[runs_dir]:
                record = read_submitted(run_dir)
                if record:
                    awaiting[rid] = record
            statuses[rid] = RunStatus(rid, state, detail, needs_train, run.info.run_id if run else None,
                                      dict(run.data.metrics) if run else {}, tags or {}, worker if alive else None)
    if awaiting:
        _apply_scheduler_states(statuses, awaiting)
    return statuses


def _apply_scheduler_states(statuses: dict[str, RunStatus], records: dict[str, dict[str, Any]]) -> None:
    """``queued`` / ``running`` for runs whose SLURM job waits or has started (see *Queued*)."""
    scheduler = slurm_job_states(record["job_id"] for record in records.values())
    for rid, record in records.items():
        status = statuses[rid]
        job_id = record["job_id"]
        if scheduler is None:
            note = f"submitted as SLURM job {job_id} (squeue unavailable here: not checked)"
            status.detail = f"{status.detail}; {note}" if status.detail else note
            continue
        job_state, reason = scheduler.get(job_id, ("", ""))
        if job_state in SLURM_PENDING_STATES:
            waiting = f", {reason}" if reason and reason != "None" else ""
            status.state, status.detail = QUEUED, f"SLURM job {job_id} {job_state.lower()}{waiting}"
        elif job_state in SLURM_ACTIVE_STATES:
            status.state, status.detail = RUNNING, f"SLURM job {job_id} started"


def _runs_with_worker_records(runs_dir: Path) -> tuple[set[str], set[str]]:
    """Run ids under ``runs_dir`` with a liveness record, and those with a submission record (one scan)."""
    try:
        entries = [entry for entry in os.scandir(runs_dir) if entry.is_dir()]
    except OSError:
        return set(), set()
    return ({entry.name for entry in entries if os.path.exists(os.path.join(entry.path, WORKER_FILE))},
            {entry.name for entry in entries if os.path.exists(os.path.join(entry.path, SUBMITTED_FILE))})


def count_states(statuses: Iterable[RunStatus]) -> dict[str, int]:
    counts = dict.fromkeys(GRID_STATES, 0)
    for status in statuses:
        counts[status.state] = counts.get(status.state, 0) + 1
    return counts
