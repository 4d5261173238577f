"""Process utilities every layer may use: a child that dies with its parent, a process group found and cleared.

* :func:`signal_when_parent_dies` — a ``preexec_fn`` asking the kernel to signal the child when its parent dies
  (``PR_SET_PDEATHSIG``); used by the run worker, the evaluation process, warm-start builders and job runners, and by
  the web-UI supervisor (:mod:`lgrpo_bench.ui.serve`).
* :func:`group_members` / :func:`clear_group` — the live members of a process group (``/proc``), and SIGTERM then
  SIGKILL to all of them until none is left.
* :func:`imports_kept_out_of_gc` — heavy imports with the cyclic garbage collector off, then frozen out of its reach
  (``gc.freeze``): the warm server's preload and a fresh run worker use it.

Standard library only, imports nothing of ours (layer 0). Linux only for the parent-death signal and the group scan;
elsewhere :func:`signal_when_parent_dies` gives None and the group is still signalled.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LIBRARY_ENV_DEFAULTS", "clear_group", "group_members", "imports_kept_out_of_gc", "kill_quietly",
           "signal_when_parent_dies"]

LIBRARY_ENV_DEFAULTS = {"HF_HUB_DISABLE_TELEMETRY": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                        "TOKENIZERS_PARALLELISM": "false", "MLFLOW_LOGGING_LEVEL": "WARNING"}
"""What our commands set unless the user did, before the libraries that read them are imported: the hub's and MLflow's
telemetry off (MLflow's exit hook otherwise waits seconds on a network call), no tokenizer fork warnings, MLflow's
INFO lines off. Every run's environment has them too (:func:`lgrpo_bench.dispatch.job.execute_job`: a grid or sweep
started from Python, not a command, included), and the warm servers import with them (:mod:`lgrpo_bench.runs.server`,
:mod:`lgrpo_bench.runs.warm`), so that a run and the server that forks it agree."""

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


def clear_group(pgid: int, grace_s: float, *, exclude: Sequence[int] = (), reap: Callable[[], object] = lambda: None) -> None:
    """SIGTERM to every member of ``pgid`` but ``exclude``, SIGKILL to those left after ``grace_s``; wait until none is left."""
    for pid in group_members(pgid, exclude=exclude):
        kill_quietly(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_members(pgid, exclude=exclude) and time.monotonic() < deadline:
        reap()
        time.sleep(_POLL_S)
    for _ in range(50):  # SIGKILL cannot be refused: the group empties within a few polls
        left = group_members(pgid, exclude=exclude)
        if not left:
            return
        for pid in left:
            kill_quietly(pid, signal.SIGKILL)
        reap()
        time.sleep(_POLL_S)


def kill_quietly(pid: int, signum: int) -> None:
    """``os.kill(pid, signum)``; a process already gone, or not ours, is not an error."""
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def imports_kept_out_of_gc() -> Iterator[None]:
    """Run the block (heavy imports) with the cyclic garbage collector disabled, then move every object tracked so far
    into the permanent generation (``gc.freeze()``) and restore the collector's previous state.

    Why: importing torch, transformers, TRL, lm-eval and MLflow creates ~650,000 tracked objects, all alive for the
    life of the process. While they are being created, the collector's automatic passes walk them again and again
    (1.5 s of a 7.8 s import here); afterwards every full collection walks them once more — and libraries collect
    on their own (accelerate's ``free_memory`` when training starts, our evaluation before it generates): 0.3–0.6 s
    each, per run, on a 2-core EPYC. Frozen, a collection walks only what the run created. This is the standard
    library's documented recipe for a process that forks workers (disable early, freeze before forking); a child
    forked afterwards inherits the frozen generation and an enabled collector.

    The cost: garbage made during the block (about 12,000 objects, ~2 % of what it creates) is never freed.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
