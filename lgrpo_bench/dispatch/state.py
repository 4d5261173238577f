"""The state of every run of a grid, read from the MLflow store in bulk (one search per experiment).

States shown by ``plan``, ``status`` and the closing lines of ``run``: the run record's words
(:mod:`lgrpo_bench.tracking.record`), plus ``new``:

=========  ==================================================================================================
new        no MLflow run carries the run id (and no process works on it)
queued     submitted to a scheduler that has not started it yet: SLURM lists its job as pending (see *Queued*
           below); the detail names the SLURM job id and SLURM's reason. ``run`` leaves it alone
running    a live process works on it (see *Liveness* below), or SLURM has started its job and the process is
           coming up (``status`` without a grid file counts it too: its ``worker.json`` names its grid)
trained    training finished; the configured evaluation is not logged yet (the next ``run`` only evaluates)
stopped    interrupted on request (Ctrl-C, SIGINT/SIGTERM of the orchestrator; ``lgrpo.state = stopped``), or
           ``lgrpo.state = running`` with no live process (its process died without a word: SIGKILL, a crash)
failed     ``lgrpo.state = failed`` (an exception, a kill), or a ``trained`` run whose evaluation failed
           (``lgrpo.failed_step = eval``), or a run that failed before it could create its MLflow run
           (recorded on the grid's parent run)
pruned     a sweep trial stopped by its pruner (final)
done       ``lgrpo.state = done``: trained and, when configured, evaluated
=========  ==================================================================================================

``run`` launches new, trained, stopped and failed runs; training resumes from the newest complete checkpoint
into the same MLflow run, so no run is ever logged twice.

Liveness
--------
MLflow cannot tell a live run from one whose process was SIGKILLed: both say ``running``. Whatever executes
a run (:func:`lgrpo_bench.dispatch.job.execute_job`) therefore keeps ``<run folder>/worker.json``
(host, pid, the pid's start time, a heartbeat refreshed every :data:`HEARTBEAT_S` seconds, and the MLflow run id of
the grid whose orchestrator started it) while it works,
and removes it when it ends. A record is live when its host is this host and that pid (with that start time)
still exists, or, for another host, when its heartbeat is younger than :data:`STALE_AFTER_S` seconds.
Runs on other nodes (Ray, SLURM) need ``runs_dir`` on a shared file system — they need it anyway to resume
from checkpoints anywhere.

Queued
------
A run waiting in a SLURM queue has no process yet. When the SLURM executor submits a run it writes
``<run folder>/submitted.json`` (scheduler, job id such as ``812_3``, time) and removes it when the job
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
from typing import TYPE_CHECKING, Any

from lgrpo_bench.tracking.record import RunLayout

if TYPE_CHECKING:
    from lgrpo_bench.config.grid import ExpandedGrid
from lgrpo_bench.tracking.schema import (
    FAILURE_TAG_PREFIX,
    KIND_EVAL,
    KIND_GRID,
    KIND_TRAIN,
    KIND_WARM_START,
    STATE_DONE,
    STATE_FAILED,
    STATE_PRUNED,
    STATE_RUNNING,
    STATE_STOPPED,
    STATE_TRAINED,
    TAG_ERROR,
    TAG_FAILED_STEP,
    TAG_GRID,
    TAG_KIND,
    TAG_RUN_ID,
    TAG_STATE,
)

__all__ = [
    "DONE", "FAILED", "FINISHED", "GRID_STATES", "HEARTBEAT_S", "NEW", "PRUNED", "QUEUED", "RESUMABLE", "RUNNING",
    "STALE_AFTER_S", "STOPPED", "TRAINED", "RunStatus", "StoreGrid", "classify", "finished_runs", "grid_status", "pid_alive", "plan_grid", "state_warnings",
    "process_start_ticks", "read_train_and_grid_runs", "read_worker", "slurm_job_states", "store_exists", "store_grids",
    "worker_alive",
]

NEW, QUEUED = "new", "queued"
RUNNING, TRAINED, DONE, FAILED, PRUNED, STOPPED = (
    STATE_RUNNING, STATE_TRAINED, STATE_DONE, STATE_FAILED, STATE_PRUNED, STATE_STOPPED)
GRID_STATES: tuple[str, ...] = (NEW, QUEUED, RUNNING, TRAINED, STOPPED, FAILED, PRUNED, DONE)
"""The states a grid's run can be shown in, in the order tables list them."""
RESUMABLE: tuple[str, ...] = (NEW, TRAINED, STOPPED, FAILED)
"""States ``run`` launches (new runs start; the others resume where they stopped)."""

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
SLURM_PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"})
SLURM_ACTIVE_STATES = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"})
"""SLURM job states (``squeue %T``) of a job that waits for, or holds, its allocation; any other state has ended."""


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
        record = json.loads(RunLayout(Path(run_dir)).worker_file.read_text())
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


# ---------------------------------------------------------------------------------------------------------
# Classification (pure)
# ---------------------------------------------------------------------------------------------------------
def classify(tags: dict[str, str] | None, mlflow_status: str | None, alive: bool,
             parent_failure: str | None = None) -> tuple[str, str, bool]:
    """(state, detail, needs_train) of a run from its train run's tags and MLflow status (None: no run yet),
    whether a live process works on it, and a failure recorded on the grid's parent run (see the module docstring)."""
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
    if state == STATE_PRUNED:
        return PRUNED, "stopped by its sweep's pruner", False
    if state == STATE_TRAINED:
        if alive:
            return RUNNING, "evaluating", False
        if tags.get(TAG_FAILED_STEP) == "eval":
            return FAILED, f"evaluation failed: {error}" if error else "evaluation failed", False
        return TRAINED, "evaluation pending", False
    if alive:
        return RUNNING, "retrying" if state in (STATE_FAILED, STATE_STOPPED) else "", True
    if state == STATE_FAILED:
        return FAILED, error, True
    if state == STATE_STOPPED:
        return STOPPED, "interrupted (Ctrl-C or SIGTERM)", True
    return STOPPED, "its process is gone (killed, or its machine went away)", True


# ---------------------------------------------------------------------------------------------------------
# Bulk reading
# ---------------------------------------------------------------------------------------------------------
def store_exists(uri: str) -> bool:
    """False for a SQLite store whose file does not exist yet (reading must not create it)."""
    from lgrpo_bench.tracking.store import sqlite_path

    path = sqlite_path(uri)
    return path is None or path.exists()


def read_train_and_grid_runs(uri: str, experiment: str, clients: dict[str, Any] | None = None) -> list:
    """Train and grid runs of ``experiment`` in the store at ``uri``, newest first; [] when neither exists
    (:func:`lgrpo_bench.tracking.reader.open_reader`: a SQLite store is read without importing MLflow)."""
    from lgrpo_bench.tracking.reader import open_reader

    client = (clients or {}).get(uri)
    reader = open_reader(uri, client=client, must_exist=False) if client is not None else open_reader(uri, must_exist=False)
    if reader is None:
        return []
    with reader:
        experiment_id = reader.experiment_id(experiment)
        if experiment_id is None:
            return []
        return reader.runs([experiment_id], tag_not_in={TAG_KIND: (KIND_EVAL, KIND_WARM_START)})


def grid_status(points: Sequence, grid_name: str, *, clients: dict[str, Any] | None = None,
                finished_pid: int | None = None) -> dict[str, RunStatus]:
    """:class:`RunStatus` of every point (keyed by run id), with one read per (store, experiment).

    ``points`` are :class:`~lgrpo_bench.config.grid.GridPoint` (their ``config.tracking`` says where to look).
    Nothing is created: a store or experiment that does not exist yet means every run is new.
    ``finished_pid``: liveness records of this process on this host count as gone (an orchestrator whose jobs
    have all returned, reading a record that a read-only run folder kept it from removing).
    """
    from lgrpo_bench.tracking.store import resolve_tracking_uri

    clients = {} if clients is None else clients
    by_location: dict[tuple[str, str], list] = {}
    uris: dict[str | None, str] = {}
    for point in points:
        configured = point.config.tracking.uri
        uri = uris[configured] if configured in uris else uris.setdefault(configured, resolve_tracking_uri(configured))
        by_location.setdefault((uri, point.config.tracking.experiment), []).append(point)
    folders: dict[Path, set[str]] = {}  # per experiment folder: run ids with a folder (one directory scan)
    working: dict[Path, set[str]] = {}  # per experiment folder: run ids with a liveness record (same scan)
    submitted: dict[Path, set[str]] = {}  # per experiment folder: run ids with a submission record (same scan)
    awaiting: dict[str, dict[str, Any]] = {}  # run id -> submission record of runs no process works on yet
    layouts: dict[tuple[str, str], RunLayout] = {}

    statuses: dict[str, RunStatus] = {}
    host = socket.gethostname()
    now = time.time()
    for (uri, experiment), members in by_location.items():
        train_runs: dict[str, Any] = {}
        failures: dict[str, str] = {}
        for run in read_train_and_grid_runs(uri, experiment, clients):
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
            tracking = point.config.tracking
            key = (tracking.runs_dir, experiment)
            base = layouts.get(key) or layouts.setdefault(key, RunLayout.of(tracking.runs_dir, "_", experiment))
            folder_of = base.experiment_dir
            if folder_of not in working:
                folders[folder_of], working[folder_of], submitted[folder_of] = _run_folders(folder_of)
            layout = RunLayout(folder_of / rid)
            worker = read_worker(layout.root) if rid in working[folder_of] else None
            alive = worker_alive(worker, now=now, host=host) and not (
                finished_pid is not None and worker.get("host") == host and worker.get("pid") == finished_pid)
            run = train_runs.get(rid)
            tags = dict(run.data.tags) if run is not None else None
            state, detail, needs_train = classify(tags, run.info.status if run else None, alive, failures.get(rid))
            has_folder = rid in folders[folder_of]
            if state in (STOPPED, FAILED) and needs_train and has_folder:
                checkpoint = layout.latest_checkpoint()
                if checkpoint is not None and run is not None:
                    detail = f"{detail}; resumes from {checkpoint.name}" if detail else f"resumes from {checkpoint.name}"
            if state == NEW and has_folder and layout.has_outputs():
                detail = ("no MLflow record (the store was deleted or changed?), but its folder holds checkpoints or a "
                          "final model: run moves them aside and starts over")
            elif state == DONE and run is not None and not layout.final_dir.exists():
                detail = f"its final model is gone ({layout.final_dir} was deleted); results stay in the store"
            elif state in (TRAINED, FAILED) and not needs_train and run is not None:
                from lgrpo_bench.runs.lifecycle import final_model_plan

                plan = final_model_plan(layout, point.config.train.max_steps) if has_folder else "train again from step 0"
                if plan is not None:
                    detail = f"final model gone: run will {plan}" + (f"; {detail}" if detail else "")
            if state in RESUMABLE and rid in submitted[folder_of]:
                submission = layout.read_submitted()
                if submission:
                    awaiting[rid] = submission
            statuses[rid] = RunStatus(rid, state, detail, needs_train, run.info.run_id if run else None,
                                      dict(run.data.metrics) if run else {}, tags or {}, worker if alive else None)
    if awaiting:
        _apply_scheduler_states(statuses, awaiting)
    return statuses


def plan_grid(expanded: ExpandedGrid, clients: dict[str, Any] | None = None) -> dict[str, RunStatus]:
    """State of every point, read from the store (nothing written)."""
    return grid_status(expanded.points, expanded.grid.name, clients=clients)


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


def _run_folders(runs_dir: Path) -> tuple[set[str], set[str], set[str]]:
    """Run ids under ``runs_dir`` with a folder, those with a liveness record, and those with a submission record
    (one scan)."""
    try:
        entries = [entry for entry in os.scandir(runs_dir) if entry.is_dir()]
    except OSError:
        return set(), set(), set()
    layouts = [RunLayout(Path(entry.path)) for entry in entries]
    return ({layout.run_id for layout in layouts},
            {layout.run_id for layout in layouts if layout.worker_file.exists()},
            {layout.run_id for layout in layouts if layout.submitted_file.exists()})


FINISHED: tuple[str, ...] = (TRAINED, DONE)
"""States of runs with results to tabulate (a trained run's training metrics; a done run's evaluation too)."""


def finished_runs(statuses: dict[str, RunStatus]) -> list[str]:
    """Run ids whose state is in :data:`FINISHED`, in the order given."""
    return [rid for rid, status in statuses.items() if status.state in FINISHED]


def count_states(statuses: Iterable[RunStatus]) -> dict[str, int]:
    counts = dict.fromkeys(GRID_STATES, 0)
    for status in statuses:
        counts[status.state] = counts.get(status.state, 0) + 1
    return counts


@dataclass
class StoreGrid:
    """One grid parent run of a store and how many of its points are in each state."""

    name: str
    experiment: str
    points: int
    counts: dict[str, int]
    parent_run_id: str


def store_grids(uri: str, experiment: str | None = None) -> list[StoreGrid] | None:
    """Every grid that ran in the store at ``uri`` (only ``experiment`` when given), with its points' states read
    from the store and the liveness records; None when the store does not exist."""
    from lgrpo_bench.tracking.reader import open_reader
    from lgrpo_bench.tracking.schema import TAG_GRID_POINTS, TAG_GRID_RUNS_DIR, grid_member_tag

    reader = open_reader(uri, must_exist=False)
    if reader is None:
        return None
    with reader:
        names = [e.name for e in reader.experiments()]
    if experiment is not None:
        names = [name for name in names if name == experiment]
    grids = []
    for name in names:
        runs = read_train_and_grid_runs(uri, name)
        for parent in (r for r in runs if r.data.tags.get(TAG_KIND) == KIND_GRID):
            grid = parent.data.tags.get(TAG_GRID, "")
            runs_dir = Path(parent.data.tags.get(TAG_GRID_RUNS_DIR, "runs"))
            member = grid_member_tag(grid)
            children: dict[str, Any] = {}
            for run in runs:
                tags = run.data.tags
                if tags.get(TAG_KIND) == KIND_TRAIN and (tags.get(member) == "true" or tags.get(TAG_GRID) == grid):
                    children.setdefault(tags.get(TAG_RUN_ID), run)
            counts = dict.fromkeys(GRID_STATES, 0)
            for rid, run in children.items():
                alive = worker_alive(read_worker(RunLayout.of(runs_dir, str(rid), name).root))
                counts[classify(dict(run.data.tags), run.info.status, alive)[0]] += 1
            for state in _states_without_a_run(parent, runs_dir, name, set(children)):  # as plan_grid: classify()
                counts[state] += 1
            points = int(parent.data.tags.get(TAG_GRID_POINTS, len(children)))
            counts[NEW] += max(points - sum(counts.values()), 0)
            grids.append(StoreGrid(grid, name, points, counts, parent.info.run_id))
    return grids


def _states_without_a_run(parent, runs_dir: Path, experiment: str, with_run: set[str]) -> list[str]:
    """States of a grid's runs that have no MLflow run yet, as :func:`grid_status` finds them: ``running`` for a live
    worker that the grid's orchestrator started (its ``worker.json`` names the grid's parent run: a warm start, the
    first seconds of a run), ``failed`` for a failure recorded on the parent run (:func:`classify`)."""
    parent_id = parent.info.run_id
    failures = {key[len(FAILURE_TAG_PREFIX):]: value for key, value in parent.data.tags.items()
                if key.startswith(FAILURE_TAG_PREFIX)}
    _, working, _ = _run_folders(RunLayout.of(runs_dir, "_", experiment).experiment_dir)
    states = []
    for rid in (working | set(failures)) - with_run:
        worker = read_worker(RunLayout.of(runs_dir, rid, experiment).root) if rid in working else None
        alive = worker is not None and worker.get("grid_parent_run_id") == parent_id and worker_alive(worker)
        if alive or rid in failures:
            states.append(classify(None, None, alive, failures.get(rid))[0])
    return states


def state_warnings(statuses: dict[str, RunStatus]) -> list[str]:
    """One line per kind of missing piece a plan should shout about (nothing when all is in place):
    run folders with results the store does not know, and done runs whose final model was deleted."""
    orphans = [rid for rid, status in statuses.items() if status.state == NEW and status.detail.startswith("no MLflow record")]
    gone = [rid for rid, status in statuses.items() if status.state == DONE and status.detail.startswith("its final model is gone")]
    lines = []
    if orphans:
        lines.append(f"warning: {len(orphans)} run(s) have checkpoints in their folders but no MLflow record "
                     f"({', '.join(orphans[:5])}{'…' if len(orphans) > 5 else ''}); `run` moves those folders aside to "
                     "<run_id>.orphaned-<time> and trains them again")
    if gone:
        lines.append(f"warning: {len(gone)} done run(s) lost their final model folder ({', '.join(gone[:5])}"
                     f"{'…' if len(gone) > 5 else ''}): their results stay in the store, but `eval --model run:<id>` "
                     "cannot evaluate them again")
    return lines
