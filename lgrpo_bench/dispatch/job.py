"""One grid run as a job: its worker process (forked warm, or a fresh interpreter), a liveness record, failures in MLflow.

:func:`execute_job` is what every executor runs — in a thread of the orchestrator (local), in a Ray task
(ray), or in a submitit job (slurm) — so a run behaves the same everywhere:

* the run's worker process (:func:`job_steps`: what ``python -m lgrpo_bench.runs <run folder>`` does: the run's
  lifecycle, :mod:`lgrpo_bench.runs.lifecycle`) is forked from this process's warm server when it can be
  (:mod:`lgrpo_bench.runs.warm`: torch, TRL, lm-eval and MLflow are imported once per orchestrator or Ray worker,
  not once per run), else started as a fresh interpreter; either way in its own session (Ctrl-C in the terminal
  reaches only the orchestrator, which stops runs itself) and, on Linux, killed when its parent dies
  (``PR_SET_PDEATHSIG``: an orphan can never keep logging to a run that the next ``lgrpo-bench run`` resumes);
* stdout and stderr of every attempt go to ``<run folder>/run.log`` (appended: one file per run, every attempt in
  it; each attempt's header line says whether it was forked warm or why it was not);
* ``worker.json`` in the same folder records host, pid and a heartbeat while the job works (see
  :mod:`lgrpo_bench.dispatch.state`);
* a step that fails (non-zero exit: an exception, OOM, a kill) marks the run failed in MLflow with its
  error and the tail of ``run.log`` as the artifact ``run_log_tail.txt`` (:func:`record_failure`), and the job
  returns a failed :class:`JobResult`; it never raises for a failed run;
* cancelling (``cancel`` event, or an exception such as Ray's cancellation ``KeyboardInterrupt``) sends
  SIGINT to the step's process group — training then records the run as interrupted (MLflow ``KILLED``) —
  and SIGKILL after :data:`STOP_GRACE_S` seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lgrpo_bench.dispatch.commands import free_port, run_argv
from lgrpo_bench.dispatch.state import HEARTBEAT_S, process_start_ticks, store_exists
from lgrpo_bench.runs.lifecycle import describe_exit
from lgrpo_bench.runs.warm import RUN_DIR_ENV
from lgrpo_bench.tracking.record import PARENT_RUN_ENV, RunLayout
from lgrpo_bench.procs import LIBRARY_ENV_DEFAULTS, signal_when_parent_dies

__all__ = ["JobResult", "RunJob", "execute_job", "job_steps", "record_failure"]

LOG_TAIL_CHARS = 20000
STOP_GRACE_S = 15.0


@dataclass
class RunJob:
    """Everything a worker needs to execute one run (plain data: it is pickled to Ray and submitit).

    ``run_dir`` holds the resolved ``config.yaml`` (written by :func:`lgrpo_bench.runs.resolve.prepare_run`)."""

    run_id: str
    run_dir: str
    tracking_uri: str
    experiment: str
    label: str = ""
    gpus: int = 0
    python: str | None = None
    accelerate_config: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    cwd: str | None = None
    warm: bool = True
    """Fork the run's process from a warm server where it can be (:mod:`lgrpo_bench.runs.warm`); False: always a
    fresh interpreter."""

    @property
    def layout(self) -> RunLayout:
        return RunLayout(Path(self.run_dir))


@dataclass
class JobResult:
    """How a job ended. ``ok`` False with ``cancelled`` True: stopped on request (the run stays resumable)."""

    run_id: str
    ok: bool
    step: str | None = None
    returncode: int | None = None
    error: str = ""
    seconds: float = 0.0
    cancelled: bool = False
    recorded: bool = True
    """False when the failure is not in MLflow yet (the worker died before it could write it)."""


def job_steps(job: RunJob, *, port: int | None = None) -> list[tuple[str, list[str]]]:
    """(name, argv) of the processes of ``job``: one, the run's worker (see :mod:`lgrpo_bench.dispatch.commands`)."""
    if job.gpus > 1 and port is None:
        port = free_port()
    return [("run", run_argv(job.run_dir, python=job.python, gpus=job.gpus, accelerate_config=job.accelerate_config,
                             main_process_port=port if job.gpus > 1 else None))]


class _Fresh:
    """A run's process started as a fresh interpreter, with the interface of :class:`~lgrpo_bench.runs.warm.WarmProcess`."""

    def __init__(self, process: subprocess.Popen):
        self._process = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


def _stop(process) -> None:
    """SIGINT to the run's process group (training records the run as stopped), SIGKILL after :data:`STOP_GRACE_S`."""
    for signum, wait_s in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            return
        if process.wait(timeout=wait_s) is not None:
            return


def _start(job: RunJob, name: str, argv: list[str], env: dict[str, str], cwd: str | None, log_path: Path, *,
           shared_warm_server: bool = False):
    """The process of step ``name``: forked from the warm server when it can be (:mod:`lgrpo_bench.runs.warm`; with
    ``shared_warm_server``, from the one ``$LGRPO_WARM_SERVER`` names where it can serve the run:
    :mod:`lgrpo_bench.runs.server`), else a fresh interpreter; either way in its own session, killed when its parent
    dies, its output appended to the log."""
    from lgrpo_bench.runs.server import SERVER_ENV
    from lgrpo_bench.runs.warm import shared_server_for, start_warm, warm_refusal

    refusal = ("warm workers are off for this executor" if not job.warm
               else warm_refusal(env, python=job.python, gpus=job.gpus, own_server=False))
    shared = shared_server_for(env) if refusal is None and shared_warm_server else None
    if refusal is None and (shared is None or isinstance(shared, str)):  # this process's own server, then
        refusal = warm_refusal(env, python=job.python, gpus=job.gpus)
    with open(log_path, "a", encoding="utf-8") as log:
        if refusal is not None:
            how = f"fresh interpreter ({refusal})"
        elif shared is None or isinstance(shared, str):
            named = isinstance(shared, str) and os.environ.get(SERVER_ENV, "").strip()
            how = "forked from the warm server" + (f"; not the shared one: {shared}" if named else "")
            shared = None
        else:
            how = f"forked from the warm server at {shared.path}, shared"
        log.write(f"\n==> {time.strftime('%Y-%m-%d %H:%M:%S')} {name} on {socket.gethostname()}: {' '.join(argv)} "
                  f"[{how}]\n")
        log.flush()
        if refusal is None:
            return start_warm(job.run_dir, log_path=log_path, env=env, cwd=cwd, shared=shared)
        return _Fresh(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                       cwd=cwd, start_new_session=True,
                                       preexec_fn=signal_when_parent_dies(signal.SIGKILL)))


class _Heartbeat:
    """Writes ``worker.json`` now and every :data:`HEARTBEAT_S` seconds until closed, then removes it.

    ``grid_parent_run_id``: the MLflow run id of the grid whose orchestrator started the job, so that ``status``
    without a grid file counts a run that has no MLflow run yet (a warm start) as running in its grid."""

    def __init__(self, layout: RunLayout, grid_parent_run_id: str | None = None):
        self.path = layout.worker_file
        pid = os.getpid()
        self.record = {"host": socket.gethostname(), "pid": pid, "pid_start": process_start_ticks(pid),
                       "started": time.time(), "heartbeat": time.time(), "child_pid": None,
                       "grid_parent_run_id": grid_parent_run_id}
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{layout.run_id}", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        self.record["heartbeat"] = time.time()
        tmp = self.path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(self.record))
        os.replace(tmp, self.path)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except OSError:
                pass

    def child(self, pid: int | None) -> None:
        self.record["child_pid"] = pid
        try:
            self._write()
        except OSError:  # a run folder that refuses writes (full disk) must not hide how the step ended
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.path.unlink()
        except OSError:
            pass


def execute_job(job: RunJob, *, cuda_devices: list[str] | None = None,
                cancel: threading.Event | None = None, shared_warm_server: bool = False) -> JobResult:
    """Run the steps of ``job`` (see the module docstring). ``cuda_devices``: set ``CUDA_VISIBLE_DEVICES``
    to these ids (``[]`` = no GPU); None leaves it as the executor set it (Ray, SLURM). ``shared_warm_server``: fork
    the steps from the server ``$LGRPO_WARM_SERVER`` names where it can serve them (the local executor)."""
    started = time.perf_counter()
    layout = job.layout
    layout.root.mkdir(parents=True, exist_ok=True)
    # the library defaults a command sets (lgrpo_bench.procs), also where no command ran: a grid or sweep run from
    # Python imports in the environment of one run from the command line, and of the warm servers that fork it
    env = {**LIBRARY_ENV_DEFAULTS, **os.environ, **job.env, "PYTHONUNBUFFERED": "1", RUN_DIR_ENV: str(layout.root)}
    if job.parent_run_id:
        env[PARENT_RUN_ENV] = job.parent_run_id
    if cuda_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(cuda_devices)
    cwd = job.cwd if job.cwd and Path(job.cwd).is_dir() else None
    log_path = layout.run_log
    heartbeat = _Heartbeat(layout, job.parent_run_id)
    try:
        steps = job_steps(job)
        for index, (name, argv) in enumerate(steps):
            process = _start(job, name, argv, env, cwd, log_path, shared_warm_server=shared_warm_server)
            heartbeat.child(process.pid)
            try:
                while True:
                    returncode = process.wait(timeout=0.2)
                    if returncode is not None:
                        break
                    if cancel is not None and cancel.is_set():
                        _stop(process)
                        returncode = process.wait(timeout=5.0)
                        if returncode == 0 and index == len(steps) - 1:
                            break  # it finished before the stop reached it: a done run, reported as done
                        return JobResult(job.run_id, False, name, returncode, "cancelled",
                                         time.perf_counter() - started, cancelled=True)
            except BaseException:
                _stop(process)
                raise
            heartbeat.child(None)
            if returncode != 0:
                error = record_failure(job, describe_exit(returncode), log_path)
                if error is not None:
                    return JobResult(job.run_id, False, name, returncode, error, time.perf_counter() - started)
        return JobResult(job.run_id, True, seconds=time.perf_counter() - started)
    finally:
        heartbeat.close()


def log_tail(log_path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - chars, 0))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _last_error_line(text: str) -> str:
    """The last line that looks like a Python exception (``SomeError: ...``) in ``text``, else ''."""
    for line in reversed(text.splitlines()):
        stripped = line.strip()
        head = stripped.split(":", 1)[0]
        if ":" in stripped and head and head.replace(".", "").isidentifier() and (
                head.endswith(("Error", "Exception", "Interrupt", "Exit")) or head == "error"):
            return stripped[:500]
    return ""


def record_failure(job: RunJob, how: str, log_path: Path | None = None) -> str | None:
    """Record that run ``job.run_id``'s worker failed (``how``: e.g. ``killed by SIGKILL``) and return the error;
    None when the run is ``done`` (or ``pruned``) in the store: its process ended after the run had finished, which
    is no failure of the run.

    Training records its own exceptions (state ``failed``, ``lgrpo.error``, ``error.txt``); this adds what only
    the caller sees — a process killed by a signal, a worker that failed before training created its MLflow
    run (then recorded on the grid's parent run as ``lgrpo.failed.<run_id>`` plus an artifact
    ``failures/<run_id>/run_log_tail.txt``), or a failed evaluation (the run stays ``trained``, with
    ``lgrpo.failed_step = eval``). The failed step is ``eval`` when training had finished, else ``train``.
    Never raises: the store may itself be what failed.
    """
    from lgrpo_bench import tracking as t
    from lgrpo_bench.tracking import record

    tail = log_tail(log_path or job.layout.run_log)
    detail = _last_error_line(tail)
    error = f"train {how}" + (f": {detail}" if detail else "")
    try:
        if not store_exists(job.tracking_uri):  # the run never reached the store; do not create one
            return error
        from lgrpo_bench.tracking.reader import find_train_run, open_reader

        client = t.open_client(job.tracking_uri)
        with open_reader(client=client) as reader:
            run = find_train_run(reader, job.experiment, job.run_id)
        if run is not None and run.data.tags.get(t.TAG_STATE) in (t.STATE_DONE, t.STATE_PRUNED):
            return None  # the run had finished before its process ended: nothing failed
        if run is not None:
            tags = run.data.tags
            state = tags.get(t.TAG_STATE)
            step = "eval" if state == t.STATE_TRAINED else "train"
            error = f"{step} {how}" + (f": {detail}" if detail else "")
            if state == t.STATE_FAILED and tags.get(t.TAG_ERROR) and step == "train":
                error = f"{step} {how}: {tags[t.TAG_ERROR]}"  # the lifecycle's own record is the most precise
                if tags[t.TAG_ERROR].startswith(f"{step} "):  # a worker's account ("train killed by SIGTERM"):
                    client.set_tag(run.info.run_id, t.TAG_ERROR, error[:5000])  # the cause found since goes first
                client.set_tag(run.info.run_id, t.TAG_FAILED_STEP, step)
            else:
                record.mark_failed(client, run.info.run_id, error, step=step, current=state)
            if tail:
                client.log_text(run.info.run_id, tail, t.ARTIFACT_RUN_LOG_TAIL)
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "FAILED")
        elif job.parent_run_id:
            client.set_tag(job.parent_run_id, t.failure_tag(job.run_id), error[:5000])
            if tail:
                client.log_text(job.parent_run_id, tail, t.failure_log_artifact(job.run_id))
    except Exception as store_error:  # noqa: BLE001 - report the run's failure even when the store is down
        error = f"{error} (could not record it in MLflow: {store_error})"
    return error
