"""Run a viewer's web server (``mlflow ui``, ``optuna-dashboard``) so that stopping us stops all of it.

The bug this prevents: ``mlflow ui`` starts uvicorn, which starts worker processes; killing only the process we
started left uvicorn and its workers serving on the port. So a server runs under a supervisor of ours::

    lgrpo-bench ui  (foreground: serve_foreground)
      └─ python -m lgrpo_bench.tracking.serve <parent pid> <grace s> -- ARGV   (own session: process group G)
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

Linux only for the parent-death signal and the group scan (``/proc``); elsewhere the group is still signalled.
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
from pathlib import Path

__all__ = ["DEFAULT_GRACE_S", "ServeOutcome", "answers", "group_members", "serve_foreground", "signal_when_parent_dies",
           "start_supervised"]

DEFAULT_GRACE_S = 1.0
"""Seconds the server gets between SIGTERM and SIGKILL. uvicorn and its workers exit within one and free the port
(measured 0.46-0.51 s after SIGTERM on the loaded 2-core machine); ``mlflow ui``'s wrapper process lingers until
SIGKILL (with 2 s of grace the group emptied at 2.40-2.47 s), and a web UI has nothing to save."""
_PR_SET_PDEATHSIG = 1
_POLL_S = 0.1


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # loaded before any fork: the child must not dlopen between fork and exec


def signal_when_parent_dies(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to send ``signum`` to the child when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``, which survives the exec); None where prctl is unavailable."""
    if _PRCTL is None:
        return None

    def preexec() -> None:  # runs in the child between fork and exec
        _PRCTL(_PR_SET_PDEATHSIG, signum)

    return preexec


def start_supervised(argv: Sequence[str], *, grace_s: float = DEFAULT_GRACE_S, env: dict[str, str] | None = None,
                     stdout=None, stderr=None) -> subprocess.Popen:
    """Start ``argv`` under a supervisor (see the module docstring) and return the supervisor's process.

    The supervisor's pid is also the id of the process group holding the server. ``process.terminate()`` stops
    the server and everything it started (``grace_s`` seconds, then SIGKILL). ``stdout``/``stderr`` as for
    ``subprocess.Popen`` (e.g. an open log file), inherited by the server.
    """
    command = [sys.executable, "-m", "lgrpo_bench.tracking.serve", str(os.getpid()), repr(float(grace_s)), "--", *argv]
    return subprocess.Popen(command, start_new_session=True, preexec_fn=signal_when_parent_dies(signal.SIGTERM), env=env,
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)


def group_members(pgid: int, *, exclude: Sequence[int] = ()) -> list[int]:
    """Pids of the live (not zombie) processes of process group ``pgid``, read from ``/proc`` (Linux)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _clear_group(pgid: int, grace_s: float, *, exclude: Sequence[int] = (), reap: Callable[[], object] = lambda: None) -> None:
    """SIGTERM to every member of ``pgid`` but ``exclude``, SIGKILL to those left after ``grace_s``; wait until none is left."""
    for pid in group_members(pgid, exclude=exclude):
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_members(pgid, exclude=exclude) and time.monotonic() < deadline:
        reap()
        time.sleep(_POLL_S)
    for _ in range(50):  # SIGKILL cannot be refused: the group empties within a few polls
        left = group_members(pgid, exclude=exclude)
        if not left:
            return
        for pid in left:
            _kill(pid, signal.SIGKILL)
        reap()
        time.sleep(_POLL_S)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _supervise(parent_pid: int, grace_s: float, argv: list[str]) -> int:
    """The supervisor's main loop (``python -m lgrpo_bench.tracking.serve``)."""
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
    _clear_group(os.getpgid(0), grace_s, exclude=(own,), reap=server.poll)
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
            _clear_group(process.pid, 0.0)  # the server's own leftovers, if the supervisor could not clear them
            return ServeOutcome(ready, stopped=False, returncode=process.returncode)
        _kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s + 2)
        except subprocess.TimeoutExpired:
            pass
        _clear_group(process.pid, 0.0, reap=process.poll)
        process.poll()
        return ServeOutcome(ready, stopped=stop["signal"] is not None, returncode=None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit("usage: python -m lgrpo_bench.tracking.serve PARENT_PID GRACE_S -- ARGV...")
    sys.exit(_supervise(int(sys.argv[1]), float(sys.argv[2]), sys.argv[4:]))
