"""What a run's process does first when a warm server forks it (:mod:`.warm`, :mod:`.server`): become the run's process.

Its own session (Ctrl-C in the terminal reaches the orchestrator only, which stops runs itself); SIGKILL when the
process that asked for it ends (a pidfd watched by a daemon thread: the forkserver hands its children the "parent
alive" pipe, so they would otherwise outlive the orchestrator) and, from the kernel, when the server dies
(``PR_SET_PDEATHSIG``); its output appended to ``run.log``; the run's environment and working folder set before anything
runs; then what ``python -m lgrpo_bench.runs`` does.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

__all__ = ["RUN_DIR_ENV", "ended_within", "run_in_child"]

RUN_DIR_ENV = "LGRPO_RUN_DIR"
"""Set in every run's process (and inherited by what it starts): its run folder, so a process can be traced to its run."""


def run_in_child(run_dir: str, step: str, log_path: str, env: dict[str, str], cwd: str | None, starter_pid: int) -> None:
    """The forked child: become the run's process, then what ``python -m lgrpo_bench.runs`` does."""
    os.setsid()
    from lgrpo_bench.procs import signal_when_parent_dies

    ask_kernel = signal_when_parent_dies(signal.SIGKILL)
    if ask_kernel is not None:
        ask_kernel()
    if os.getppid() == 1:  # the server died between the fork and the request
        os._exit(1)
    _die_with(starter_pid)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)
    os.environ.clear()
    os.environ.update(env)
    os.environ[RUN_DIR_ENV] = run_dir
    if cwd:
        os.chdir(cwd)
    from lgrpo_bench.runs import preload

    for problem in preload.FORK_PROBLEMS:
        print(f"warning: forked from a warm server that is not fork-safe: {problem}", flush=True)
    from lgrpo_bench.runs.__main__ import run_worker

    code = run_worker(run_dir, step=step)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def _die_with(pid: int) -> None:
    """SIGKILL this process as soon as process ``pid`` has ended (a daemon thread waiting on it: :func:`_ended_within`)."""

    def wait() -> None:
        ended_within(pid, None)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait, name=f"die-with-{pid}", daemon=True).start()


def ended_within(pid: int, seconds: float | None) -> bool:
    """Whether process ``pid`` has ended (exited, zombie or reaped) or ends within ``seconds`` (None: wait until it
    does); through its pidfd (Linux ≥ 5.3), else polling every 50 ms."""
    import select

    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (OSError, AttributeError):
        deadline = None if seconds is None else time.monotonic() + seconds
        while _alive(pid) and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
        return not _alive(pid)
    try:
        return bool(select.select([handle], [], [], seconds)[0])
    finally:
        os.close(handle)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
