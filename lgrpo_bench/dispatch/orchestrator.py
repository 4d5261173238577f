"""``lgrpo-bench run grid.yaml``: plan, launch what is not done, follow it, summarise.

Contract of :func:`run_grid`:

* what runs is decided from the store (:func:`~lgrpo_bench.dispatch.state.grid_status`): done runs are
  skipped, runs a live process works on are left alone, new / trained / stopped / failed runs are launched — training
  resumes unfinished ones from their checkpoint into their MLflow run, and a ``trained`` run only gets its
  evaluation. A new run whose folder still holds checkpoints (its MLflow run was deleted) starts clean: the
  old folder is moved to ``<run_id>.orphaned-<time>``, so no run mixes two MLflow histories;
* one grid parent run per (store, experiment) (``lgrpo.kind = grid``, found again by ``lgrpo.grid``) is
  passed to training (:data:`~lgrpo_bench.dispatch.job.PARENT_RUN_ENV`), which links each new child run with
  ``mlflow.parentRunId``;
* one orchestrator per grid at a time: an ``flock`` on ``<runs_dir>/.grid-<name>.lock`` (:class:`GridBusy`);
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
from lgrpo_bench.dispatch.state import DONE, FAILED, NEW, PRUNED, QUEUED, RESUMABLE, RUNNING, RunStatus, grid_status, plan_grid
from lgrpo_bench.runs.resolve import PreparedRun, prepare_run
from lgrpo_bench.tracking import record
from lgrpo_bench.tracking.schema import TAG_GRID_POINTS, TAG_GRID_RUNS_DIR, failure_tag

__all__ = ["GridBusy", "GridRunSummary", "PASSED_ENV_PREFIXES", "REDACTED", "SECRET_ENV_KEY", "build_jobs", "grid_lock", "make_job",
           "plan_grid", "redact_executor_env", "run_grid"]

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
    written when ``write``).

    A new run whose folder still holds results of an earlier attempt (its MLflow run was deleted) starts clean:
    the folder is moved aside (:meth:`~lgrpo_bench.tracking.record.RunLayout.move_aside`), so no run mixes two
    MLflow histories."""
    jobs = []
    for point in expanded.points:
        status = statuses[point.run_id]
        if status.state not in RESUMABLE:
            continue
        prepared = prepare_run(point.config, rid=point.run_id, write=False)
        if write and status.state == NEW and status.mlflow_run_id is None and prepared.layout.has_outputs():
            moved = prepared.layout.move_aside()
            LOG.warning("run %s: its folder held results the store has no record of; moved to %s", point.run_id, moved)
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
    from lgrpo_bench.config import dump_yaml

    if write:
        prepared.layout.write_config(dump_yaml(prepared.config))
    gpus = int(getattr(executor, "gpus_per_run", 0) or getattr(executor, "num_gpus_per_run", 0)
               or getattr(executor, "gpus_per_node", 0))
    tracking = prepared.config.tracking
    return RunJob(
        run_id=prepared.run_id, run_dir=str(prepared.layout.root), tracking_uri=tracking.uri,
        experiment=tracking.experiment, label=label, gpus=gpus, python=executor.python,
        accelerate_config=executor.accelerate_config, env={**_passed_env(), **executor.env, **(extra_env or {})},
        parent_run_id=parent_run_id, cwd=os.getcwd(),
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
        found = t.find_runs_by_tag(client, experiment_id, t.TAG_GRID, expanded.grid.name,
                                   extra_filter=f"tags.`{t.TAG_KIND}` = '{t.KIND_GRID}'")
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


def grid_view_columns(expanded: ExpandedGrid) -> dict[str, list[str]]:
    """What the grid's saved MLflow UI view shows (:func:`lgrpo_bench.tracking.store.set_grid_view`): the
    ``eval/<benchmark>/acc`` metric of every benchmark its runs evaluate, grouped by the axes that vary, seeds apart."""
    from lgrpo_bench.tracking.schema import eval_metric

    benchmarks = sorted({name for point in expanded.points for name in point.config.eval.benchmarks})
    varying = [key for key in expanded.grid.axes
               if not key.endswith(".seed") and len({repr(point.values.get(key)) for point in expanded.points}) > 1]
    return {"metrics": [eval_metric(name, "acc") for name in benchmarks], "group_by": varying}


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
    from lgrpo_bench.dispatch.progress import GridProgress

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
        summary.seconds = time.perf_counter() - started
        return summary

    planned = set(summary.planned)
    todo = [p for p in expanded.points if p.run_id in planned]
    runs_dir = Path(prepare_run(expanded.points[0].config, rid=expanded.points[0].run_id, write=False).config.tracking.runs_dir)
    with grid_lock(runs_dir, expanded.grid.name), _StopRequest() as stop:
        parents = _parent_runs(expanded, todo, clients)
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
                            result.error = record_failure(job, result.error)
                        view.finished(result)
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
            final = grid_status(expanded.points, expanded.grid.name, clients=clients, finished_pid=os.getpid())
            summary.statuses = final
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
    summary.seconds = time.perf_counter() - started
    return summary


def _clear_parent_failure(clients: dict[str, Any], job: RunJob) -> None:
    if not job.parent_run_id:
        return
    client = clients.get(job.tracking_uri)
    tag = failure_tag(job.run_id)
    if client is not None and tag in client.get_run(job.parent_run_id).data.tags:
        client.delete_tag(job.parent_run_id, tag)
