"""Run a viewer's web server (``mlflow ui``, ``optuna-dashboard``) so that stopping us stops all of it.

The bug this prevents: ``mlflow ui`` starts uvicorn, which starts worker processes; killing only the process we
started left uvicorn and its workers serving on the port. So a server runs under a supervisor of ours::

    lgrpo-bench ui  (foreground: serve_foreground)
      └─ python -m lgrpo_bench.ui.serve <parent pid> <grace s> -- ARGV   (own session: process group G)
           └─ ARGV (mlflow ui / optuna-dashboard) and every process it starts (in G unless they leave it)

Contract:

* :func:`start_supervised` starts the supervisor in a new session (``setsid``), so the terminal's Ctrl-C reaches
  only the foreground command, which decides. The supervisor asks the kernel for SIGTERM when its parent dies
  (``PR_SET_PDEATHSIG``, Linux), so a SIGKILLed ``lgrpo-bench ui`` leaves nothing either.
* The supervisor, on SIGTERM, SIGINT or SIGHUP (or when the kernel reports its parent's death): SIGTERM to the
  whole group G, then SIGKILL to whatever of G is left after ``grace_s`` seconds; it exits when G is empty.
  When the server exits on its own, the supervisor clears the rest of G the same way and exits with the
  server's code.
* :func:`serve_foreground` (the CLI side): SIGINT and SIGTERM are forwarded to the supervisor as SIGTERM; if G
  still has processes ``grace_s`` + 2 s later, they are SIGKILLed from here. Returns within about
  ``grace_s`` + 2 s of the signal.

Linux only for the parent-death signal and the group scan (``/proc``); elsewhere the group is still signalled. The
process utilities themselves (parent-death signal, group scan and clearing) are :mod:`lgrpo_bench.procs`, which the run
worker and the job runners use too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lgrpo_bench.procs import clear_group, kill_quietly, signal_when_parent_dies

__all__ = ["DEFAULT_GRACE_S", "ServeOutcome", "answers", "serve_foreground", "start_supervised"]

DEFAULT_GRACE_S = 1.0
"""Seconds the server gets between SIGTERM and SIGKILL. uvicorn and its workers exit within one and free the port
(measured 0.46-0.51 s after SIGTERM on the loaded 2-core machine); ``mlflow ui``'s wrapper process lingers until
SIGKILL (with 2 s of grace the group emptied at 2.40-2.47 s), and a web UI has nothing to save."""
_POLL_S = 0.1


def start_supervised(argv: Sequence[str], *, grace_s: float = DEFAULT_GRACE_S, env: dict[str, str] | None = None,
                     stdout=None, stderr=None) -> subprocess.Popen:
    """Start ``argv`` under a supervisor (see the module docstring) and return the supervisor's process.

    The supervisor's pid is also the id of the process group holding the server. ``process.terminate()`` stops
    the server and everything it started (``grace_s`` seconds, then SIGKILL). ``stdout``/``stderr`` as for
    ``subprocess.Popen`` (e.g. an open log file), inherited by the server.
    """
    command = [sys.executable, "-m", "lgrpo_bench.ui.serve", str(os.getpid()), repr(float(grace_s)), "--", *argv]
    return subprocess.Popen(command, start_new_session=True, preexec_fn=signal_when_parent_dies(signal.SIGTERM), env=env,
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)


def _supervise(parent_pid: int, grace_s: float, argv: list[str]) -> int:
    """The supervisor's main loop (``python -m lgrpo_bench.ui.serve``)."""
    stop = {"signal": None}

    def request_stop(signum, frame) -> None:
        stop["signal"] = signum

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)
    if os.getppid() != parent_pid:  # the parent died before PR_SET_PDEATHSIG took effect
        return 0
    server = subprocess.Popen(argv)
    own = os.getpid()
    while stop["signal"] is None and server.poll() is None:
        time.sleep(_POLL_S)
        if os.getppid() != parent_pid:
            stop["signal"] = signal.SIGTERM
    code = server.poll()
    clear_group(os.getpgid(0), grace_s, exclude=(own,), reap=server.poll)
    if code is None:
        code = server.wait()
    return 0 if stop["signal"] is not None else code


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers HTTP (any status, redirects followed or not)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (our own local server)
            response.read(1)
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class ServeOutcome:
    """How :func:`serve_foreground` ended."""

    ready: bool
    """The server answered at its URL."""
    stopped: bool
    """SIGINT or SIGTERM stopped it (the normal end)."""
    returncode: int | None
    """The supervisor's exit code when the server ended by itself; None when it was stopped or never answered."""


def serve_foreground(process: subprocess.Popen, url: str, *, on_ready: Callable[[], None] = lambda: None,
                     ready_timeout_s: float = 180.0, grace_s: float = DEFAULT_GRACE_S) -> ServeOutcome:
    """Hold supervisor ``process`` (from :func:`start_supervised`) in the foreground until it ends or is stopped.

    Calls ``on_ready()`` once ``url`` answers. SIGINT and SIGTERM stop the server and its whole process group
    (SIGTERM to the supervisor, then SIGKILL to what is left of the group after ``grace_s`` + 2 s); so does a
    server that has not answered within ``ready_timeout_s``. Signal handlers are restored on return.
    """
    stop = {"signal": None}

    def request_stop(signum, frame) -> None:
        stop["signal"] = signum

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    ready = False
    deadline = time.monotonic() + ready_timeout_s
    try:
        while stop["signal"] is None and process.poll() is None:
            if not ready:
                if answers(url, timeout_s=1.0):
                    ready = True
                    on_ready()
                elif time.monotonic() > deadline:
                    break
            time.sleep(0.2)
        if process.poll() is not None and stop["signal"] is None:
            clear_group(process.pid, 0.0)  # the server's own leftovers, if the supervisor could not clear them
            return ServeOutcome(ready, stopped=False, returncode=process.returncode)
        kill_quietly(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s + 2)
        except subprocess.TimeoutExpired:
            pass
        clear_group(process.pid, 0.0, reap=process.poll)
        process.poll()
        return ServeOutcome(ready, stopped=stop["signal"] is not None, returncode=None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit("usage: python -m lgrpo_bench.ui.serve PARENT_PID GRACE_S -- ARGV...")
    sys.exit(_supervise(int(sys.argv[1]), float(sys.argv[2]), sys.argv[4:]))
