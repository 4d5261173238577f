"""Executors: where grid runs execute, behind one small interface.

    executor.start()
    executor.submit(jobs)            # every job of the grid at once; the executor throttles
    while pending:
        for result in executor.wait(timeout_s=1.0):   # JobResults finished since the last call
            ...
    executor.cancel()                # on Ctrl-C: stop what runs; wait() then returns them as cancelled
    executor.close()

* :class:`LocalExecutor` — ``slots`` jobs at once on this machine, each a thread that runs
  :func:`~lgrpo_bench.dispatch.job.execute_job`; GPUs come from a :class:`~lgrpo_bench.dispatch.commands.GpuPool`
  through ``CUDA_VISIBLE_DEVICES``.
* :class:`RayExecutor` — each job a Ray task (``num_cpus``/``num_gpus`` per run; Ray sets
  ``CUDA_VISIBLE_DEVICES``), on an existing cluster or on a local Ray started for the grid and stopped after it.
  ``max_retries=0``: a run is retried by the next ``lgrpo-bench run``, which resumes it from its checkpoint.
* :class:`SubmititExecutor` — one SLURM job array through submitit (``cluster: local`` runs the same jobs as
  local processes through submitit's LocalExecutor). The orchestrator stays alive to follow the jobs. Each
  submitted run gets a submission record (``queued`` in ``plan``; :mod:`lgrpo_bench.dispatch.state`), and the
  executor asks ``squeue`` how jobs end, because ``sacct`` (submitit's source) needs SLURM's accounting
  database, which many clusters and single-node set-ups lack: a job that SLURM ended — ``scancel``, its time
  limit, a node failure, preemption — is reported with SLURM's reason (``cancelled by SLURM``, ``timed out``)
  even when it left no result. Departure from submitit: the signal it has SLURM send 90 s before the time
  limit (SIGUSR2, to every process of the job) is ignored — its default action would kill the training
  process, and submitit's handler would stop the run and call it a failure in its own words; a run trains
  until SLURM stops it, and the next ``lgrpo-bench run`` resumes it from its last checkpoint.

Every executor turns a worker that dies without returning (a Ray worker crash, a SLURM time limit) into a
failed :class:`~lgrpo_bench.dispatch.job.JobResult` whose failure the orchestrator records.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from lgrpo_bench.config.grid import LocalExecutorConfig, RayExecutorConfig, SlurmExecutorConfig
from lgrpo_bench.dispatch.commands import GpuPool
from lgrpo_bench.dispatch.job import JobResult, RunJob, execute_job
from lgrpo_bench.dispatch.state import SLURM_ACTIVE_STATES, SLURM_PENDING_STATES, slurm_job_states

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "SubmititExecutor", "make_executor", "slurm_parameters",
           "submitit_parameters"]


class Executor(ABC):
    """Runs :class:`RunJob` s and reports their :class:`JobResult` s (see the module docstring)."""

    kind: str = ""

    def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire what the executor needs (a Ray connection, a submitit folder)."""

    @abstractmethod
    def submit(self, jobs: Sequence[RunJob]) -> None: ...

    @abstractmethod
    def wait(self, timeout_s: float) -> list[JobResult]:
        """Results of jobs finished since the last call; waits up to ``timeout_s`` for the first one."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop every job in flight and drop queued ones; later ``wait`` calls return them as cancelled."""

    def running(self) -> set[str]:
        """Run ids of jobs that are executing now (not queued), as far as the executor knows."""
        return set()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (stop a Ray started for the grid)."""


def _working(job: RunJob) -> bool:
    """A worker has started the job (its liveness record exists; see lgrpo_bench.dispatch.state)."""
    return job.layout.worker_file.exists()


def _cancelled(job: RunJob) -> JobResult:
    return JobResult(job.run_id, False, error="cancelled before it started", cancelled=True)


class LocalExecutor(Executor):
    """``slots`` jobs at once on this machine; GPU jobs wait until the pool can place them."""

    kind = "local"

    def __init__(self, slots: int, gpus_per_run: int = 0, gpu_pool: GpuPool | None = None):
        if gpus_per_run and (gpu_pool is None or not gpu_pool.fits(gpus_per_run)):
            available = len(gpu_pool.devices) if gpu_pool else 0
            raise ValueError(f"runs need {gpus_per_run} GPUs each but {available} are available")
        self.slots = slots
        self.gpus_per_run = gpus_per_run
        self.pool = gpu_pool
        self._queue: collections.deque[RunJob] = collections.deque()
        self._running: dict[str, tuple[threading.Thread, list[str]]] = {}
        self._results: queue.Queue[tuple[RunJob, list[str], JobResult]] = queue.Queue()
        self._dropped: list[JobResult] = []
        self._cancel = threading.Event()

    def submit(self, jobs: Sequence[RunJob]) -> None:
        self._queue.extend(jobs)
        self._fill()

    def _fill(self) -> None:
        while self._queue and len(self._running) < self.slots and not self._cancel.is_set():
            devices = self.pool.acquire(self.gpus_per_run) if self.pool is not None else []
            if devices is None:
                return
            job = self._queue.popleft()
            thread = threading.Thread(target=self._execute, args=(job, devices), name=f"run-{job.run_id}", daemon=True)
            self._running[job.run_id] = (thread, devices)
            thread.start()

    def _execute(self, job: RunJob, devices: list[str]) -> None:
        try:
            result = execute_job(job, cuda_devices=devices, cancel=self._cancel, shared_warm_server=True)
        except BaseException as error:  # noqa: BLE001 - a job thread must always report
            result = JobResult(job.run_id, False, "train", error=f"{type(error).__name__}: {error}", recorded=False)
        self._results.put((job, devices, result))

    def wait(self, timeout_s: float) -> list[JobResult]:
        finished: list[JobResult] = self._dropped
        self._dropped = []
        try:
            items = [self._results.get(timeout=timeout_s if not finished else 0.0)]
        except queue.Empty:
            items = []
        while True:
            try:
                items.append(self._results.get_nowait())
            except queue.Empty:
                break
        for job, devices, result in items:
            self._running.pop(job.run_id, None)
            if self.pool is not None:
                self.pool.release(devices)
            finished.append(result)
        self._fill()
        return finished

    def cancel(self) -> None:
        self._cancel.set()
        self._dropped.extend(_cancelled(job) for job in self._queue)
        self._queue.clear()

    def running(self) -> set[str]:
        return set(self._running)


# ---------------------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------------------
def _ray_execute(job: RunJob) -> JobResult:
    return execute_job(job)


class RayExecutor(Executor):
    """Each job a Ray task; see the module docstring."""

    kind = "ray"

    def __init__(self, config: RayExecutorConfig, max_concurrent: int | None = None):
        self.config = config
        self.max_concurrent = max_concurrent or config.max_concurrent
        self._pending: collections.deque[RunJob] = collections.deque()
        self._refs: dict[Any, RunJob] = {}
        self._dropped: list[JobResult] = []
        self._started_here = False
        self._remote = None

    def start(self) -> None:
        import ray

        if not ray.is_initialized():
            if self.config.address is None:
                ray.init(num_cpus=self.config.local_num_cpus, num_gpus=self.config.local_num_gpus,
                         include_dashboard=False, log_to_driver=False, runtime_env=self.config.runtime_env,
                         object_store_memory=LOCAL_RAY_OBJECT_STORE_BYTES)
                self._started_here = True
            else:
                ray.init(address=self.config.address, log_to_driver=False, runtime_env=self.config.runtime_env)
        self._remote = ray.remote(max_retries=0)(_ray_execute)

    def submit(self, jobs: Sequence[RunJob]) -> None:
        self._pending.extend(jobs)
        self._fill()

    def _fill(self) -> None:
        while self._pending and (self.max_concurrent is None or len(self._refs) < self.max_concurrent):
            job = self._pending.popleft()
            options = {"num_cpus": self.config.num_cpus_per_run, "num_gpus": self.config.num_gpus_per_run,
                       "name": f"lgrpo-{job.run_id}"}
            self._refs[self._remote.options(**options).remote(job)] = job

    def wait(self, timeout_s: float) -> list[JobResult]:
        import ray
        from ray.exceptions import RayError, TaskCancelledError

        finished = self._dropped
        self._dropped = []
        if self._refs:
            ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout_s if not finished else 0)
            for ref in ready:
                job = self._refs.pop(ref)
                try:
                    finished.append(ray.get(ref))
                except TaskCancelledError:
                    finished.append(JobResult(job.run_id, False, error="cancelled", cancelled=True))
                except RayError as error:
                    finished.append(JobResult(job.run_id, False, "train", error=f"Ray task failed: {_first_line(error)}",
                                                recorded=False))
        self._fill()
        return finished

    def cancel(self) -> None:
        import ray

        self._dropped.extend(_cancelled(job) for job in self._pending)
        self._pending.clear()
        for ref in list(self._refs):
            ray.cancel(ref, force=False)  # KeyboardInterrupt in the task: execute_job stops its step

    def running(self) -> set[str]:
        return {job.run_id for job in self._refs.values() if _working(job)}

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


LOCAL_RAY_OBJECT_STORE_BYTES = 128 * 1024**2
"""Object store of a Ray started for a grid: tasks pass only small job descriptions."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else type(error).__name__


# ---------------------------------------------------------------------------------------------------------
# SLURM through submitit
# ---------------------------------------------------------------------------------------------------------
def slurm_parameters(config: SlurmExecutorConfig, grid_name: str) -> dict[str, Any]:
    """The submitit ``SlurmExecutor`` parameters (sbatch options) of one run of the grid."""
    params: dict[str, Any] = {
        "job_name": config.job_name or f"lgrpo-{grid_name}",
        "time": config.timeout_min,
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": config.cpus_per_task,
        "gpus_per_node": config.gpus_per_node or None,
        "partition": config.partition,
        "mem": config.mem,
        "account": config.account,
        "qos": config.qos,
        "constraint": config.constraint,
        "setup": list(config.setup) or None,
        "array_parallelism": config.array_parallelism,
        "additional_parameters": dict(config.additional) or None,
    }
    return {key: value for key, value in params.items() if value is not None}


def submitit_parameters(config: SlurmExecutorConfig, grid_name: str) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` arguments for ``config.cluster``."""
    if config.cluster == "slurm":
        return {f"slurm_{key}": value for key, value in slurm_parameters(config, grid_name).items()}
    params: dict[str, Any] = {"name": config.job_name or f"lgrpo-{grid_name}", "timeout_min": config.timeout_min,
                              "cpus_per_task": config.cpus_per_task, "gpus_per_node": config.gpus_per_node,
                              "nodes": 1, "tasks_per_node": 1}
    if config.cluster == "local" and config.setup:
        params["local_setup"] = list(config.setup)
    return params


SLURM_ENDS = {
    "CANCELLED": "cancelled by SLURM (job {job} CANCELLED: scancel, or an administrator)",
    "TIMEOUT": "timed out: SLURM stopped job {job} at its time limit ({limit})",
    "PREEMPTED": "preempted by SLURM (job {job})",
    "NODE_FAIL": "its node failed (SLURM job {job} NODE_FAIL)",
    "BOOT_FAIL": "its node failed to boot (SLURM job {job} BOOT_FAIL)",
    "OUT_OF_MEMORY": "out of memory (SLURM job {job} OUT_OF_MEMORY: raise executor.mem)",
    "DEADLINE": "SLURM job {job} missed its deadline",
}
"""Job states in which SLURM, not the run, ended the job, and how a failed run reports them."""
SQUEUE_POLL_S = 5.0
FORCED_POLL_S = 1.0
"""Seconds between ``squeue`` calls while jobs run, and while a failed result waits for SLURM's verdict."""
RESULT_GRACE_S = 15.0
"""How long a job SLURM lists as ended may take to show its result file (shared file systems lag)."""
ATTRIBUTION_WAIT_S = 180.0
"""How long a failed result waits for SLURM to say how its job ended (a scancel or time limit first shows as
COMPLETING while SLURM's KillWait runs)."""


def slurm_end_reason(state: str, job_id: str, limit: str) -> str | None:
    """Why SLURM ended a job in ``state`` (``squeue %T``), in words; None for an end the run itself made."""
    template = SLURM_ENDS.get(state.split()[0] if state else "")
    return template.format(job=job_id, limit=limit) if template else None


def _slurm_execute(job: RunJob) -> JobResult:
    """:func:`execute_job` in a SLURM job, ignoring submitit's time-limit signal (module docstring).

    SLURM sends it (``--signal=USR2@90``, set by submitit) to every process of the job, ``signal_delay_s``
    seconds before the limit: with its default action it would kill the training process, and submitit's
    handler would stop the run; ignored here, the disposition is inherited by the run's processes.
    """
    signal.signal(_submitit_signal(), signal.SIG_IGN)
    return execute_job(job)


def _submitit_signal() -> signal.Signals:
    """The signal submitit asks SLURM to send before the time limit (``$SUBMITIT_PREEMPT_SIGNAL``, default USR2)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)


class SubmititExecutor(Executor):
    """The grid's jobs as one submitit job array; see the module docstring."""

    kind = "slurm"

    def __init__(self, config: SlurmExecutorConfig, grid_name: str, array_parallelism: int | None = None):
        self.config = config
        self.grid_name = grid_name
        self.array_parallelism = array_parallelism
        self._executor = None
        self._jobs: dict[str, tuple[Any, RunJob]] = {}
        self._dropped: list[JobResult] = []
        self._scheduler: dict[str, tuple[str, str]] = {}  # SLURM job id -> (state, reason) at the last squeue
        self._ended_since: dict[str, float] = {}  # run id -> when SLURM first listed its job as ended (or forgot it)
        self._held: dict[str, tuple[JobResult, float]] = {}  # run id -> failed result waiting for SLURM's verdict
        self._polled_at = float("-inf")
        self._squeue_failing = False

    def start(self) -> None:
        import submitit

        kwargs = {f"{self.config.cluster}_python": self.config.python} if self.config.python and self.config.cluster != "debug" else {}
        self._executor = submitit.AutoExecutor(folder=self.config.folder, cluster=self.config.cluster, **kwargs)
        params = submitit_parameters(self.config, self.grid_name)
        if self.array_parallelism and self.config.cluster == "slurm":
            params["slurm_array_parallelism"] = self.array_parallelism
        self._executor.update_parameters(**params)

    @property
    def _on_slurm(self) -> bool:
        return self.config.cluster == "slurm"

    def submit(self, jobs: Sequence[RunJob]) -> None:
        if not jobs:
            return
        submitted = self._executor.map_array(_slurm_execute if self._on_slurm else execute_job, list(jobs))
        for handle, job in zip(submitted, jobs):
            self._jobs[job.run_id] = (handle, job)
            if self._on_slurm:
                job.layout.write_submitted("slurm", handle.job_id)

    def _poll_scheduler(self, force: bool = False) -> None:
        if not self._on_slurm or not self._jobs:
            return
        now = time.monotonic()
        if now - self._polled_at < (FORCED_POLL_S if force else SQUEUE_POLL_S):
            return
        self._polled_at = now
        states = slurm_job_states(handle.job_id for handle, _job in self._jobs.values())
        self._squeue_failing = states is None
        if states is None:
            return  # squeue failed this time: keep what we knew, and let submitit (sacct) say when jobs are done
        self._scheduler.update(states)
        for rid, (handle, _job) in self._jobs.items():
            state = states.get(handle.job_id, ("", ""))[0]
            ended = state not in SLURM_PENDING_STATES and state not in SLURM_ACTIVE_STATES
            if ended:
                self._ended_since.setdefault(rid, now)
            else:
                self._ended_since.pop(rid, None)

    def _has_result(self, handle) -> bool:
        """On SLURM, whether the job's result file exists (``squeue`` says when a job ended without one);
        elsewhere submitit's ``done()`` (on SLURM it would call ``sacct`` and warn wherever accounting is off)."""
        if not self._on_slurm or self._squeue_failing:
            return handle.done()
        return handle.paths.result_pickle.exists()

    def _outcome(self, rid: str, handle) -> JobResult:
        try:
            return handle.result()
        except Exception as error:  # noqa: BLE001 - submitit raises for jobs that died (time limit, node failure)
            return JobResult(rid, False, "train", error=f"submitit job {handle.job_id} failed: {_first_line(error)}",
                             recorded=False)

    def _attributed(self, result: JobResult, handle) -> JobResult:
        """``result`` with SLURM's reason when SLURM ended the job (the orchestrator records it: ``recorded``
        False; the worker's own account, e.g. ``train killed by SIGTERM``, follows it in MLflow)."""
        state = self._scheduler.get(handle.job_id, ("", ""))[0]
        reason = slurm_end_reason(state, handle.job_id, str(self.config.time))
        if reason is None:
            return result
        return JobResult(result.run_id, False, result.step or "train", result.returncode, reason, result.seconds,
                         recorded=False)

    def _finished(self, rid: str, handle, now: float) -> JobResult | None:
        """The result of run ``rid`` if its job has ended (see the module docstring), else None."""
        if rid in self._held:
            result, since = self._held[rid]
        elif self._has_result(handle):
            result, since = self._outcome(rid, handle), now
            if result.ok or not self._on_slurm or self._squeue_failing:
                return result
            self._held[rid] = (result, since)
            self._poll_scheduler(force=True)
        elif self._on_slurm and now - self._ended_since.get(rid, now) > RESULT_GRACE_S:
            state = self._scheduler.get(handle.job_id, ("", ""))[0]
            reason = slurm_end_reason(state, handle.job_id, str(self.config.time))
            return JobResult(rid, False, "train", error=reason or f"SLURM job {handle.job_id} ended "
                             f"{state or '(no longer listed by squeue)'} without a result", recorded=False)
        else:
            return None
        if rid not in self._ended_since and now - since < ATTRIBUTION_WAIT_S:
            return None  # SLURM still lists the job as running or completing: wait for how it ended
        self._held.pop(rid, None)
        return self._attributed(result, handle)

    def wait(self, timeout_s: float) -> list[JobResult]:
        finished = self._dropped
        self._dropped = []
        deadline = time.monotonic() + timeout_s
        while True:
            self._poll_scheduler(force=bool(self._held))
            now = time.monotonic()
            for rid, (handle, job) in list(self._jobs.items()):
                result = self._finished(rid, handle, now)
                if result is None:
                    continue
                del self._jobs[rid]
                self._ended_since.pop(rid, None)
                job.layout.clear_submitted()
                finished.append(result)
            if finished or not self._jobs or time.monotonic() >= deadline:
                return finished
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.0)))

    def cancel(self) -> None:
        for rid, (handle, job) in list(self._jobs.items()):
            try:
                handle.cancel(check=False)
            except Exception:  # noqa: BLE001 - best effort; the job may be gone already
                pass
            del self._jobs[rid]
            job.layout.clear_submitted()
            self._dropped.append(JobResult(rid, False, error="cancelled", cancelled=True))

    def running(self) -> set[str]:
        return {rid for rid, (_handle, job) in self._jobs.items() if _working(job)}


def make_executor(config: LocalExecutorConfig | RayExecutorConfig | SlurmExecutorConfig, grid_name: str, *,
                  slots: int | None = None, gpu_ids: Sequence[str] | None = None) -> Executor:
    """The executor of a grid's ``executor`` section; ``slots`` overrides its parallelism (``--slots``).

    ``gpu_ids`` (local only) replaces GPU detection (tests use fake ids; there is no GPU here).
    """
    if isinstance(config, LocalExecutorConfig):
        if gpu_ids is None:
            from lgrpo_bench.dispatch.commands import visible_gpus

            gpu_ids = [str(g) for g in config.gpus] if config.gpus is not None else visible_gpus()
        pool = GpuPool(gpu_ids, config.runs_per_gpu if config.share_gpus else 1) if config.gpus_per_run else None
        return LocalExecutor(slots or config.slots, config.gpus_per_run, pool)
    extra = "ray" if isinstance(config, RayExecutorConfig) else "submitit"
    try:
        __import__(extra)
    except ImportError:
        raise ValueError(f"kind {config.kind} needs the {extra} package: pip install 'lgrpo-bench[{'ray' if extra == 'ray' else 'slurm'}]'") from None
    if isinstance(config, RayExecutorConfig):
        return RayExecutor(config, max_concurrent=slots)
    return SubmititExecutor(config, grid_name, array_parallelism=slots)
