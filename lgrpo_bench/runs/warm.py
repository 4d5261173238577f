"""Warm workers: a run's process forked from a server that has imported everything once, not a fresh interpreter.

A fresh ``python -m lgrpo_bench.runs <run folder>`` spends most of a small run importing torch, transformers, TRL,
lm-eval and MLflow (issue 23 measured 28–30 s of a ~110 s quickstart run at load 4–6). Here the standard library's
*forkserver* (:mod:`multiprocessing.forkserver`) does what servers that preload their application do: one server
process per orchestrator (or per Ray worker process) imports :mod:`lgrpo_bench.runs.preload` once, and each run is a
child forked from it. The run keeps its isolation:

* its own process (``setsid``: its own session, so Ctrl-C in the terminal reaches the orchestrator only, which
  stops runs itself), its own lock (:func:`lgrpo_bench.runs.owner.claim_run`), its memory returned when it exits;
* killed with whatever started it: the child watches the process that asked for it (the orchestrator, or the Ray
  worker running the job) through a pidfd and SIGKILLs itself when that process is gone, and asks the kernel for
  SIGKILL when the server dies (``PR_SET_PDEATHSIG``). (The forkserver alone would not do: it hands each child its
  "parent alive" pipe so that it outlives its parent while children run.);
* its own environment and working folder, set in the child before anything runs, and its output appended to
  ``run.log`` like a fresh process's.

Fork safety: the server imports and never runs anything (no torch thread pool, no CUDA context, no MLflow writer
thread; :data:`lgrpo_bench.runs.preload.FORK_PROBLEMS`); thread counts are set by the run itself (its training and
evaluation choose torch's threads). The server imports with the garbage collector off and freezes what it imported
(``gc.freeze``, :func:`lgrpo_bench.procs.imports_kept_out_of_gc`): a child starts with the collector on, and its
collections walk only what the run creates. A run forked warm and the same run in a fresh interpreter give bit-identical
metrics (``tests/test_warm_workers.py``). Where ``$LGRPO_WARM_SERVER`` names a running shared server
(:mod:`lgrpo_bench.runs.server`) that can serve a local grid's run, the run is forked there instead, and this process
starts no server of its own.

When a fresh interpreter is used instead (:func:`warm_refusal` says why): ``$LGRPO_WARM_WORKERS=0``; another
interpreter (``executor.python``); a multi-GPU run (``accelerate launch``); the vLLM evaluation process (it must own
the GPU's memory, :mod:`lgrpo_bench.runs.lifecycle`); an environment whose import-time variables (``HF_*``,
``TORCH*``, ``OMP_*``, … :data:`IMPORT_TIME_PREFIXES`) differ from those the server imported in, since the libraries
read them when they are imported. The server imports in the first run's (a Ray worker's server: the first job's, so a
cluster begun by ``ray start`` in another environment still forks its runs), or in the orchestrator's own when it
starts the server ahead of its runs. SLURM runs one run per job, so its jobs start fresh.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from lgrpo_bench.procs import LIBRARY_ENV_DEFAULTS
from lgrpo_bench.runs.child import RUN_DIR_ENV, ended_within, run_in_child

__all__ = ["IMPORT_TIME_PREFIXES", "RUN_DIR_ENV", "WARM_ENV", "WarmProcess", "forkserver_context", "server_report",
           "shared_server_for", "start_server", "start_warm", "warm_refusal"]

WARM_ENV = "LGRPO_WARM_WORKERS"
"""``0`` starts every run in a fresh interpreter (warm workers off)."""
PRELOAD_MODULE = "lgrpo_bench.runs.preload"
IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "TORCH", "PYTORCH_", "OMP_", "MKL_",
                        "OPENBLAS_", "NCCL_", "MLFLOW_", "PYTHON", "LD_")
"""Environment variables libraries read when they are imported (or the interpreter when it starts)."""
RUNTIME_VARIABLES = frozenset({"MLFLOW_TRACKING_URI", "PYTHONUNBUFFERED", "CUDA_VISIBLE_DEVICES"})
"""Variables under those prefixes that are read when used, not when imported: they may differ per run."""

_lock = threading.Lock()
_context = None
_server_environ: dict[str, str] | None = None


def _forkserver(env: Mapping[str, str] | None = None):
    """This process's forkserver context; the first call starts the server. It imports in the import-time variables
    of ``env`` (the first run's environment; default: this process's with the library defaults a command sets,
    ``procs.LIBRARY_ENV_DEFAULTS``, as every run's has them), so a process whose own environment differs — a Ray
    worker that ``ray start`` began, without those defaults or the user's ``HF_HOME`` — still forks its runs; later
    runs must share those variables (:func:`warm_refusal`)."""
    global _context, _server_environ
    with _lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([PRELOAD_MODULE])
            environ = _with_import_time_variables_of({**LIBRARY_ENV_DEFAULTS, **os.environ} if env is None else env)
            with _process_environment(environ):  # the server process inherits it at its start
                from multiprocessing import forkserver

                forkserver.ensure_running()
            _context, _server_environ = context, environ
    return _context


def forkserver_context():
    """This process's warm server as a :mod:`multiprocessing` context, the server started on first use (in this
    process's environment): ``Process(target=f, args=...)`` runs ``f`` (importable, its arguments picklable) in a child
    forked from it, with torch, transformers, TRL, lm-eval and MLflow already imported. What :func:`start_warm` uses;
    for other processes of ours that would otherwise each import them (the tests' 2-process gloo launches)."""
    return _forkserver()


def _read_at_import(key: str) -> bool:
    return key.startswith(IMPORT_TIME_PREFIXES) and key not in RUNTIME_VARIABLES


def _with_import_time_variables_of(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with the variables read at import time taken from ``env`` instead."""
    return {**{k: v for k, v in os.environ.items() if not _read_at_import(k)},
            **{k: v for k, v in env.items() if _read_at_import(k)}}


@contextlib.contextmanager
def _process_environment(environ: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` is ``environ`` inside the block (what a process started there inherits), as before after it.
    Only the keys that differ change, for the moment the server takes to start."""
    before = dict(os.environ)
    changed = {k for k in set(before) | set(environ) if before.get(k) != environ.get(k)}
    for key in changed:
        if key in environ:
            os.environ[key] = environ[key]
        else:
            del os.environ[key]
    try:
        yield
    finally:
        for key in changed:
            if key in before:
                os.environ[key] = before[key]
            else:
                os.environ.pop(key, None)


def start_server() -> None:
    """Start this process's warm server now (its imports then overlap what the caller does before its first run);
    nothing when the shared server ``$LGRPO_WARM_SERVER`` names can fork this process's runs."""
    if not isinstance(shared_server_for(os.environ), str):
        return
    _forkserver()


def warm_refusal(env: Mapping[str, str], *, python: str | None = None, gpus: int = 0,
                 own_server: bool = True) -> str | None:
    """Why a run with environment ``env`` cannot be forked from this process's warm server (None when it can);
    ``own_server=False``: only what refuses every warm server (the shared one too), not a difference from this
    process's own server's import-time variables."""
    if os.environ.get(WARM_ENV, "1").strip() == "0":
        return f"${WARM_ENV}=0"
    if python and os.path.realpath(python) != os.path.realpath(sys.executable):
        return f"it runs on another interpreter ({python})"
    if gpus > 1:
        return "a multi-GPU run starts with accelerate launch"
    if _server_environ is None or not own_server:  # no server yet: it will import in this run's environment
        return None
    differ = _import_time_differences(env, _server_environ)
    if differ:
        return f"its environment sets {', '.join(differ[:4])} other than the warm server's"
    return None


def _import_time_differences(env: Mapping[str, str], server: Mapping[str, str]) -> list[str]:
    """The variables libraries read at import time whose values differ between ``env`` and a server's environment."""
    return sorted(key for key in set(env) | set(server) if key.startswith(IMPORT_TIME_PREFIXES)
                  and key not in RUNTIME_VARIABLES and env.get(key) != server.get(key))


def shared_server_for(env: Mapping[str, str]):
    """The running server ``$LGRPO_WARM_SERVER`` names (:mod:`lgrpo_bench.runs.server`) when it can fork a run with
    environment ``env`` (same interpreter, same package, same import-time variables), else why not (a str)."""
    from lgrpo_bench.runs import server

    shared = server.connect(os.environ.get(server.SERVER_ENV, "").strip())
    if isinstance(shared, str):
        return shared
    # a variable the server's imports set themselves (when it was unset) may be in the run's environment at that value:
    # the run's own imports would have set it so (torch sets TORCHINDUCTOR_CACHE_DIR once a process imports it)
    differ = [key for key in _import_time_differences(env, shared.environ)
              if not (key in shared.set_by_imports and env.get(key) == shared.set_by_imports[key])]
    if differ:
        return f"the run's environment sets {', '.join(differ[:4])} other than the shared warm server's"
    return shared


class WarmProcess:
    """A run's process forked from the warm server: ``pid``, ``wait(timeout)`` (its exit code, or None while it
    runs), ``returncode`` (negative: killed by that signal), as ``subprocess.Popen`` has them."""

    def __init__(self, process: multiprocessing.process.BaseProcess):
        self._process = process
        self.pid = process.pid
        self.server_pid = _parent_of(process.pid)
        self._server_died: bool | None = None

    @property
    def returncode(self) -> int | None:
        return self._translated(self._process.exitcode)

    def wait(self, timeout: float | None = None) -> int | None:
        self._process.join(timeout)
        return self._translated(self._process.exitcode)

    def _translated(self, code: int | None) -> int | None:
        """The forkserver reports a child's exit code; when the server itself died, the child's code is lost (255)
        and the child was killed by the signal it asked for when its parent dies: SIGKILL. The server's end of the
        status pipe closes while it exits, a moment before the kernel shows it ended: wait for that (≤ 5 s)."""
        if code == 255 and self.server_pid is not None:
            if self._server_died is None:
                self._server_died = ended_within(self.server_pid, 5.0)
            if self._server_died:
                return -signal.SIGKILL
        return code


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def start_warm(run_dir: str | Path, *, log_path: str | Path, env: Mapping[str, str], cwd: str | None,
               step: str = "all", shared=None):
    """Fork the worker of the run in ``run_dir`` from the warm server (see the module docstring): from ``shared`` (a
    :class:`lgrpo_bench.runs.server.SharedServer`) when given, else from this process's own server. When the shared
    server no longer answers, the log says so and the run is forked from this process's own server."""
    if shared is not None:
        try:
            return shared.start(run_dir, step=step, log_path=log_path, env=env, cwd=cwd)
        except OSError as error:
            from lgrpo_bench.runs import server

            server.forget(shared.path, f"the warm server at {shared.path} stopped answering ({error})")
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"the warm server at {shared.path} did not answer ({error}): forked from this process's own\n")
    context = _forkserver(env)
    process = context.Process(target=run_in_child, name=f"run-{Path(run_dir).name}",
                              args=(str(run_dir), step, str(log_path), dict(env), cwd, os.getpid()))
    process.start()
    return WarmProcess(process)


def server_report(timeout_s: float = 600) -> dict:
    """What a child forked from this process's warm server sees (starting the server if needed): the server's pid,
    :data:`lgrpo_bench.runs.preload.FORK_PROBLEMS`, whether CUDA is initialised, the heavy libraries already imported,
    whether the garbage collector is on and how many objects the preload left frozen out of its reach, and how long
    the fork took once the server was up. For checks and benchmarks."""
    context = _forkserver()
    receive, send = context.Pipe(duplex=False)
    started = time.perf_counter()
    process = context.Process(target=_report_in_child, args=(send, time.time()), name="warm-report")
    process.start()
    send.close()
    if not receive.poll(timeout_s):
        process.kill()
        raise TimeoutError(f"the warm server did not answer within {timeout_s:g} s")
    report = receive.recv()
    process.join(timeout_s)
    report["seconds"] = time.perf_counter() - started
    return report


def _report_in_child(send, asked_at: float) -> None:
    import gc

    import torch

    from lgrpo_bench.runs import preload

    send.send({"server_pid": os.getppid(), "child_pid": os.getpid(), "fork_problems": list(preload.FORK_PROBLEMS),
               "cuda_initialized": torch.cuda.is_initialized(), "threads": threading.active_count(),
               "imported": sorted(name for name in ("torch", "transformers", "trl", "lm_eval", "mlflow")
                                  if name in sys.modules),
               "gc_enabled": gc.isenabled(), "gc_frozen": gc.get_freeze_count(),
               "fork_latency_s": time.time() - asked_at})
    send.close()
