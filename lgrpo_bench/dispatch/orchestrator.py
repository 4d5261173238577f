"""``lgrpo-bench run grid.yaml``: plan, launch what is not done, follow it, summarise.

Contract of :func:`run_grid`:

* what runs is decided from the store (:func:`~lgrpo_bench.dispatch.state.grid_status`): done runs are
  skipped, runs a live process works on are left alone, new / trained / stopped / failed runs are launched — training
  resumes unfinished ones from their checkpoint into their MLflow run, and a ``trained`` run only gets its
  evaluation. Each run claims itself (its lock, its MLflow run, its folder: :mod:`lgrpo_bench.runs.lifecycle`), so a
  point shared with another grid or terminal is trained once; the orchestrator tags every current point's training
  run as a member of the grid (``lgrpo.in_grid.<grid>``, :func:`mark_grid_members`), also runs another grid made;
* one grid parent run per (store, experiment) (``lgrpo.kind = grid``, found again by ``lgrpo.grid``) is
  passed to training (:data:`~lgrpo_bench.dispatch.job.PARENT_RUN_ENV`), which links each new child run with
  ``mlflow.parentRunId``;
* one orchestrator per grid at a time: an ``flock`` on ``<runs_dir>/.grid-<name>.lock`` (:class:`GridBusy`); two
  grids sharing points may run together (each run has its own lock);
* the store must stay the store: when its SQLite file is deleted or replaced while the grid runs, the grid ends with
  a :class:`~lgrpo_bench.tracking.reader.StoreProblem` saying so (one line, exit 1), never a traceback;
* a failed run does not stop the others; SIGINT / SIGTERM stop the grid: runs get SIGINT (training records
  them as interrupted, resumable) and SIGKILL 15 s later; SIGKILL of the orchestrator kills its local runs
  (``PR_SET_PDEATHSIG``) and leaves them ``running`` with no live process, which ``plan`` shows as stopped;
* the returned :class:`GridRunSummary` says what happened; its ``exit_code`` is 1 when a run failed or the
  grid was stopped, else 0.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import logging

from lgrpo_bench.config import ConfigError
from lgrpo_bench.config.grid import ExpandedGrid, GridPoint, LocalExecutorConfig, RayExecutorConfig, SlurmExecutorConfig
from lgrpo_bench.dispatch.executors import Executor, make_executor
from lgrpo_bench.dispatch.job import RunJob, record_failure
from lgrpo_bench.dispatch.state import DONE, FAILED, PRUNED, QUEUED, RESUMABLE, RUNNING, RunStatus, grid_status, plan_grid
from lgrpo_bench.procs import imports_kept_out_of_gc
from lgrpo_bench.runs.resolve import PreparedRun, prepare_run
from lgrpo_bench.tracking import record
from lgrpo_bench.tracking.reader import open_reader
from lgrpo_bench.tracking.schema import TAG_GRID_POINTS, TAG_GRID_RUNS_DIR, failure_tag

__all__ = ["GridBusy", "GridRunSummary", "PASSED_ENV_PREFIXES", "REDACTED", "SECRET_ENV_KEY", "build_jobs", "grid_lock", "make_job",
           "mark_grid_members", "plan_grid", "redact_executor_env", "run_grid"]

LOG = logging.getLogger("lgrpo_bench.dispatch")
PASSED_ENV_PREFIXES = ("HF_", "LGRPO_", "MLFLOW_", "TRANSFORMERS_", "TOKENIZERS_", "OMP_", "CUDA_HOME", "NCCL_")
"""Environment variables copied into every job (workers on other nodes see the orchestrator's settings)."""
SECRET_ENV_KEY = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
"""``executor.env`` keys whose values are access secrets: never logged to MLflow (see :func:`redact_executor_env`)."""
REDACTED = "<redacted>"


class GridBusy(RuntimeError):
    """Another orchestrator holds this grid's lock."""


@dataclass
class GridRunSummary:
    """What ``run`` did. Run ids in every list; ``failed`` maps run id → error."""

    name: str
    planned: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    running_elsewhere: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    seconds: float = 0.0
    run_seconds: dict[str, float] = field(default_factory=dict)
    """Run id → wall seconds of its job (from the job's start to its process's end) for every run this call ran."""
    dry_run: bool = False
    statuses: dict[str, RunStatus] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.cancelled else 0


def _location(point: GridPoint) -> tuple[str, str]:
    """(resolved tracking URI, experiment) a point logs to."""
    from lgrpo_bench.tracking.store import resolve_tracking_uri

    return resolve_tracking_uri(point.config.tracking.uri), point.config.tracking.experiment


@contextlib.contextmanager
def grid_lock(runs_dir: Path, name: str) -> Iterator[None]:
    """Exclusive, non-blocking lock of grid ``name`` under ``runs_dir``; :class:`GridBusy` when held."""
    import fcntl

    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / f".grid-{name}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise GridBusy(f"grid {name!r} is already running ({holder}; lock {path}); wait for it, or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def redact_executor_env(text: str, env: dict[str, str]) -> str:
    """The grid or sweep YAML ``text`` as logged to MLflow: when ``env`` (its ``executor.env``) holds a key
    matching :data:`SECRET_ENV_KEY`, the file re-written with those values replaced by :data:`REDACTED`
    (comments and layout are lost); otherwise ``text`` unchanged."""
    import yaml

    secret_keys = [key for key, value in env.items() if value and SECRET_ENV_KEY.search(key)]
    if not secret_keys:
        return text
    data = yaml.safe_load(text)
    data["executor"]["env"].update(dict.fromkeys(secret_keys, REDACTED))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _passed_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key.startswith(PASSED_ENV_PREFIXES)}


def build_jobs(expanded: ExpandedGrid, statuses: dict[str, RunStatus], parents: dict[tuple[str, str], str],
               *, write: bool = True) -> list[RunJob]:
    """A :class:`RunJob` for every point in a :data:`~lgrpo_bench.dispatch.state.RESUMABLE` state (resolved configs
    written when ``write``). The run's folder is settled by the run itself, under its lock
    (:func:`lgrpo_bench.runs.owner.settle_folder`)."""
    jobs = []
    for point in expanded.points:
        status = statuses[point.run_id]
        if status.state not in RESUMABLE:
            continue
        prepared = prepare_run(point.config, rid=point.run_id, write=False)
        tracking = prepared.config.tracking
        jobs.append(make_job(prepared, expanded.grid.executor, label=point.label(),
                             parent_run_id=parents.get((tracking.uri, tracking.experiment)), write=write))
    return jobs


def make_job(prepared: PreparedRun, executor: LocalExecutorConfig | RayExecutorConfig | SlurmExecutorConfig, *,
             label: str, parent_run_id: str | None, extra_env: dict[str, str] | None = None,
             write: bool = True) -> RunJob:
    """The job of one prepared run (:func:`~lgrpo_bench.runs.resolve.prepare_run`): its GPUs and interpreter from the
    executor section, the orchestrator's :data:`PASSED_ENV_PREFIXES` variables, then ``executor.env``, then
    ``extra_env``; the run's ``config.yaml`` written when ``write``."""
    if write:
        prepared.write()
    gpus = int(getattr(executor, "gpus_per_run", 0) or getattr(executor, "num_gpus_per_run", 0)
               or getattr(executor, "gpus_per_node", 0))
    tracking = prepared.config.tracking
    return RunJob(
        run_id=prepared.run_id, run_dir=str(prepared.layout.root), tracking_uri=tracking.uri,
        experiment=tracking.experiment, label=label, gpus=gpus, python=executor.python,
        accelerate_config=executor.accelerate_config, env={**_passed_env(), **executor.env, **(extra_env or {})},
        parent_run_id=parent_run_id, cwd=os.getcwd(), warm=bool(getattr(executor, "warm_workers", False)),
    )


def _parent_runs(expanded: ExpandedGrid, points: Sequence[GridPoint], clients: dict[str, Any]) -> dict[tuple[str, str], str]:
    """The grid's parent run in every (store, experiment) its points log to, created when missing."""
    from lgrpo_bench import tracking as t

    parents: dict[tuple[str, str], str] = {}
    grid_text = expanded.path.read_text() if expanded.path.is_file() else ""
    grid_text = redact_executor_env(grid_text, expanded.grid.executor.env)
    for point in points:
        location = _location(point)
        if location in parents:
            continue
        runs_dir = prepare_run(point.config, rid=point.run_id, write=False).config.tracking.runs_dir
        client = clients.get(location[0]) or clients.setdefault(location[0], t.open_client(location[0]))
        experiment_id = t.get_or_create_experiment(client, location[1])
        with open_reader(client=client) as reader:
            found = reader.runs([experiment_id], tag_equals={t.TAG_GRID: expanded.grid.name, t.TAG_KIND: t.KIND_GRID},
                                metrics=False)
        if found:
            parent_id = found[0].info.run_id
            client.update_run(parent_id, status="RUNNING")
            record.set_parent_state(client, parent_id, t.STATE_RUNNING)
        else:
            parent_id = record.create_run(client, experiment_id, run_name=f"grid-{expanded.grid.name}", tags={
                t.TAG_KIND: t.KIND_GRID, t.TAG_GRID: expanded.grid.name, t.TAG_VERSIONS: t.versions_tag_value()})
        t.set_grid_view(client, experiment_id, expanded.grid.name, **grid_view_columns(expanded))
        client.set_tag(parent_id, TAG_GRID_POINTS, str(len(expanded.points)))
        client.set_tag(parent_id, TAG_GRID_RUNS_DIR, runs_dir)
        if grid_text:
            client.log_text(parent_id, grid_text, t.ARTIFACT_GRID)
        parents[location] = parent_id
    return parents


def mark_grid_members(expanded: ExpandedGrid, statuses: dict[str, RunStatus], clients: dict[str, Any]) -> int:
    """Tag every current point's training run as a member of the grid (``lgrpo.in_grid.<grid>``), also runs first
    made by another grid or outside one, so the grid's MLflow UI view lists them; returns how many were tagged now."""
    from lgrpo_bench import tracking as t

    tag = t.grid_member_tag(expanded.grid.name)
    tagged = 0
    for point in expanded.points:
        status = statuses.get(point.run_id)
        if status is None or status.mlflow_run_id is None or status.tags.get(tag) == "true":
            continue
        uri = _location(point)[0]
        client = clients.get(uri) or clients.setdefault(uri, t.open_client(uri))
        client.set_tag(status.mlflow_run_id, tag, "true")
        tagged += 1
    return tagged


def grid_view_columns(expanded: ExpandedGrid) -> dict[str, list]:
    """What the grid's saved MLflow UI view shows (:func:`lgrpo_bench.tracking.store.set_grid_view`): the
    ``eval/<benchmark>/acc`` metric of every benchmark its runs evaluate, grouped by the axes that vary, seeds apart;
    ``groups``: the values of those axes of each configuration (its algorithm when none varies) and ``run_names``
    (the run ids, the names of the MLflow runs) size the view's columns."""
    from lgrpo_bench.tracking.schema import eval_metric

    benchmarks = sorted({name for point in expanded.points for name in point.config.eval.benchmarks})
    varying = [key for key in expanded.grid.axes
               if not key.endswith(".seed") and len({repr(point.values.get(key)) for point in expanded.points}) > 1]
    groups = list(dict.fromkeys(tuple(str(point.values.get(key)) for key in varying) if varying
                                else (point.config.algorithm.name,) for point in expanded.points))
    return {"metrics": [eval_metric(name, "acc") for name in benchmarks], "group_by": varying, "groups": groups,
            "run_names": [point.run_id for point in expanded.points]}


class _StopRequest:
    """SIGINT / SIGTERM set a flag the orchestrator's loop reads (handlers only in the main thread)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def run_grid(expanded: ExpandedGrid, *, slots: int | None = None, dry_run: bool = False, console=None,
             gpu_ids: Sequence[str] | None = None, poll_s: float = 1.0, executor: Executor | None = None) -> GridRunSummary:
    """Run every point of ``expanded`` that is not done; see the module docstring.

    Raises :class:`ConfigError` (e.g. runs need more GPUs than the machine has) or :class:`GridBusy` before
    anything is launched or written.
    """
    from rich.console import Console

    from lgrpo_bench import tracking as t
    from lgrpo_bench.dispatch.progress import GridProgress, plan_line

    console = console or Console()
    started = time.perf_counter()
    clients: dict[str, Any] = {}
    statuses = plan_grid(expanded, clients)
    summary = GridRunSummary(expanded.grid.name, dry_run=dry_run, statuses=statuses)
    for point in expanded.points:
        state = statuses[point.run_id].state
        if state in (DONE, PRUNED):
            summary.skipped_done.append(point.run_id)
        elif state in (RUNNING, QUEUED):  # a live process or a SLURM job of another orchestrator has it
            summary.running_elsewhere.append(point.run_id)
        else:
            summary.planned.append(point.run_id)
    if executor is None:
        try:
            executor = make_executor(expanded.grid.executor, expanded.grid.name, slots=slots, gpu_ids=gpu_ids)
        except ValueError as error:
            raise ConfigError(f"{expanded.path}: executor: {error}") from None
    if dry_run or not summary.planned:
        if not dry_run:
            _guard_store(lambda: mark_grid_members(expanded, statuses, clients), expanded)
            _await_elsewhere(expanded, summary, clients, console, poll_s)
        summary.seconds = time.perf_counter() - started
        return summary
    # at once, from the store's read alone: opening it for writing, the runs' set-up and the first warm start take
    # seconds to minutes before the progress view has anything to show
    console.print(plan_line(expanded.grid.name, len(summary.planned), len(summary.skipped_done),
                            len(summary.running_elsewhere), executor.kind), highlight=False, soft_wrap=True)

    _warm_up(expanded.grid.executor)
    planned = set(summary.planned)
    todo = [p for p in expanded.points if p.run_id in planned]
    runs_dir = Path(prepare_run(expanded.points[0].config, rid=expanded.points[0].run_id, write=False).config.tracking.runs_dir)
    # The first client imports MLflow's client and SQL store (pandas, SQLAlchemy, alembic: ~300,000 objects kept for
    # the grid's life): imported with the collector off and frozen, as the warm server imports (0.3-0.4 CPU-s less).
    with imports_kept_out_of_gc():
        for uri in dict.fromkeys(_location(point)[0] for point in todo):  # a store we cannot write: refused before
            if uri not in clients:                                            # anything is created
                clients[uri] = _guard_store(lambda uri=uri: t.open_client(uri), expanded)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{expanded.path}: tracking.runs_dir: cannot create the runs folder {runs_dir} "
                          f"({error.strerror or error}); set tracking.runs_dir to a folder this user may write") from None
    store_files = _store_files(expanded)
    with grid_lock(runs_dir, expanded.grid.name), _StopRequest() as stop:
        parents = _guard_store(lambda: _parent_runs(expanded, todo, clients), expanded)
        _guard_store(lambda: mark_grid_members(expanded, statuses, clients), expanded)
        jobs = build_jobs(expanded, statuses, parents)
        by_id = {job.run_id: job for job in jobs}
        pending = set(by_id)
        try:
            executor.start()
            with GridProgress(console, expanded, jobs, skipped=len(summary.skipped_done),
                              elsewhere=len(summary.running_elsewhere), executor=executor.kind) as view:
                executor.submit(jobs)
                cancelled = False
                while pending:
                    if stop.requested and not cancelled:
                        console.print("stopping: runs get SIGINT (SIGKILL after 15 s); run the grid again to resume")
                        executor.cancel()
                        cancelled = True
                    for result in executor.wait(timeout_s=poll_s):
                        pending.discard(result.run_id)
                        job = by_id[result.run_id]
                        if not result.ok and not result.cancelled and not result.recorded:
                            error = record_failure(job, result.error)
                            if error is None:  # the run was done before its worker died: a finished run
                                result.ok, result.error = True, ""
                            else:
                                result.error = error
                        view.finished(result)
                        summary.run_seconds[result.run_id] = result.seconds
                        if result.ok:
                            summary.done.append(result.run_id)
                            _clear_parent_failure(clients, job)
                        elif result.cancelled:
                            summary.cancelled.append(result.run_id)
                        else:
                            summary.failed[result.run_id] = result.error
                    view.update(executor.running() & pending)
        finally:
            executor.close()
        _check_store_files(store_files)
        if not summary.cancelled:
            _await_elsewhere(expanded, summary, clients, console, poll_s)
        summary.statuses = _guard_store(lambda: _finish_parents(expanded, parents, clients, summary), expanded)
    summary.seconds = time.perf_counter() - started
    return summary


def _warm_up(executor_config) -> None:
    """Local runs forked warm: start the warm server now, so its imports overlap the grid's set-up (store, parent
    runs, run folders) instead of delaying the first run."""
    if executor_config.kind != "local" or not getattr(executor_config, "warm_workers", False):
        return
    from lgrpo_bench.runs.warm import start_server, warm_refusal

    if warm_refusal(dict(os.environ)) is None:
        start_server()


def _await_elsewhere(expanded: ExpandedGrid, summary: GridRunSummary, clients: dict[str, Any], console,
                     poll_s: float) -> None:
    """Wait until the points another process runs (another grid, a terminal, a SLURM job) are no longer running, so
    their results join this grid's table; Ctrl-C or SIGTERM stops the wait (those runs go on)."""
    waiting = set(summary.running_elsewhere)
    if not waiting:
        return
    console.print(f"waiting for {len(waiting)} run(s) that another process is running; their results join this grid's "
                  "table (Ctrl-C stops waiting, not them)", highlight=False)
    points = [point for point in expanded.points if point.run_id in waiting]
    with _StopRequest() as stop:
        while waiting and not stop.requested:
            time.sleep(max(poll_s, 0.5))
            statuses = _guard_store(lambda: grid_status(points, expanded.grid.name, clients=clients), expanded)
            waiting = {rid for rid, status in statuses.items() if status.state in (RUNNING, QUEUED)}
            summary.statuses.update(statuses)
    if waiting:
        console.print(f"stopped waiting; {len(waiting)} run(s) still running elsewhere", highlight=False)


def _finish_parents(expanded: ExpandedGrid, parents: dict[tuple[str, str], str], clients: dict[str, Any],
                    summary: GridRunSummary) -> dict[str, RunStatus]:
    """The grid's states after its jobs, written to its parent runs (done / failed / running); returns the states."""
    from lgrpo_bench import tracking as t

    final = grid_status(expanded.points, expanded.grid.name, clients=clients, finished_pid=os.getpid())
    mark_grid_members(expanded, final, clients)
    for location, parent_id in parents.items():
        states = [final[p.run_id].state for p in expanded.points if _location(p) == location]
        if all(state == DONE for state in states):
            state, status = t.STATE_DONE, "FINISHED"
        elif any(state == FAILED for state in states):
            state, status = t.STATE_FAILED, "FAILED"
        else:  # interrupted, or runs left to other orchestrators: work remains, nothing failed
            state, status = t.STATE_RUNNING, "KILLED" if summary.cancelled else "FINISHED"
        record.set_parent_state(clients[location[0]], parent_id, state)
        clients[location[0]].set_terminated(parent_id, status)
    return final


def _store_files(expanded: ExpandedGrid) -> dict[Path, tuple[int, int]]:
    """(device, inode) of each SQLite store the grid writes to, as it starts."""
    from lgrpo_bench.tracking.store import sqlite_path

    files = {}
    for uri in {_location(point)[0] for point in expanded.points}:
        path = sqlite_path(uri)
        if path is not None and path.exists():
            stat = path.stat()
            files[path] = (stat.st_dev, stat.st_ino)
    return files


def _check_store_files(files: dict[Path, tuple[int, int]]) -> None:
    """:class:`StoreProblem` when a store file the grid started with was deleted or replaced while it ran."""
    from lgrpo_bench.tracking.reader import StoreProblem

    for path, identity in files.items():
        try:
            stat = path.stat()
            now = (stat.st_dev, stat.st_ino)
        except OSError:
            now = None
        if now != identity:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreProblem(f"the MLflow store {path} was {what} while the grid ran: the results of runs that "
                               "finished meanwhile went to the old file and are lost; restore the store (or accept a new "
                               "one) and run the grid again — finished runs whose folders hold results are moved aside "
                               "and trained again")


def _guard_store(action, expanded: ExpandedGrid):
    """Run ``action()``; an error of the store becomes a :class:`~lgrpo_bench.tracking.reader.StoreProblem`."""
    from lgrpo_bench.tracking.reader import store_problem

    try:
        return action()
    except Exception as error:
        problem = None
        for uri in {_location(point)[0] for point in expanded.points}:
            problem = store_problem(error, uri)
            if problem is not None:
                break
        if problem is None:
            raise
        raise problem from None


def _clear_parent_failure(clients: dict[str, Any], job: RunJob) -> None:
    if not job.parent_run_id:
        return
    client = clients.get(job.tracking_uri)
    tag = failure_tag(job.run_id)
    if client is not None and tag in client.get_run(job.parent_run_id).data.tags:
        client.delete_tag(job.parent_run_id, tag)
