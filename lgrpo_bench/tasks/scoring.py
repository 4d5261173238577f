r"""The one answer scorer shared by the training reward and by evaluation: :func:`score_math`.

What counts as an answer and how answers compare is :mod:`lgrpo_bench.tasks.answers`; this module bounds the time a
verdict may take and keeps math-verify's state clean.

Time bound, threads and state
    math-verify's own timeouts use ``signal.alarm`` (main thread only, whole seconds), and an interrupted sympy
    computation can leave state behind: sympy records "unknown" for an assumption before computing it, so an
    interrupt can make later queries on the same (cached) expression answer "unknown" for good. We switch
    math-verify's timeouts off and bound the whole parse+verify ourselves:

    * ``isolation="process"`` (default): in a persistent worker subprocess (``python -c``; one per
      concurrently calling thread, reused, at most 4 kept idle, started lazily, so any thread may call).
      The worker runs the verification under its own repeating ``ITIMER_REAL`` timer; if it has not
      answered ``timeout_s + KILL_GRACE_S`` after the request (stuck in C code), the caller kills it
      (SIGKILL). A worker that timed out either way is discarded and a fresh one started, so no interrupted
      state is ever reused. Workers run with a 4 GiB address-space limit and exit when the parent's pipe
      closes; a forked child starts its own. Overhead: ~0.1 ms per call.
    * ``isolation="inline"``: in this process under the same timer; main thread only (elsewhere: no bound),
      and only while no other ``ITIMER_REAL`` timer is armed. After a timeout the sympy and parse caches are
      cleared, which removes most but not all interrupted state. For quick interactive use.

    Start-up of a worker (importing sympy, about 1 s) is waited for separately (:data:`WORKER_START_TIMEOUT_S`)
    and not counted against ``timeout_s``; call :func:`warm_up_worker` to pay it ahead of time. If no worker
    can be started, scoring falls back to ``inline`` (logging an error once): a verdict without a bound is
    preferred to silently scoring everything wrong.

    ``timed_out=True`` means the verification did not finish within the bound (or its worker died); it then
    scores ``correct=False``. :func:`timeout_count` is a process-wide, thread-safe total of such results.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Literal

from lgrpo_bench.tasks.answers import (
    MAX_ANSWER_CHARS,
    TAIL_CHARS,
    ScoreResult,
    answer_to_verify,
    clean_text,
    extract_boxed,
    extract_choice_letters,
    load_math_verify,
    parse_gold_cached,
    verdict,
)

__all__ = [
    "KILL_GRACE_S",
    "MAX_ANSWER_CHARS",
    "TAIL_CHARS",
    "WORKER_START_TIMEOUT_S",
    "ScoreResult",
    "extract_boxed",
    "extract_choice_letters",
    "score_math",
    "shutdown_workers",
    "timeout_count",
    "warm_up_worker",
]

logger = logging.getLogger(__name__)

KILL_GRACE_S = 0.5
"""How long past ``timeout_s`` a worker process may take to answer before it is killed and replaced."""

WORKER_START_TIMEOUT_S = 60.0
"""How long to wait for a new worker process to import math-verify; not counted against ``timeout_s``."""

_TIMER_REFIRE_S = 0.05
_RERAISE_AFTER_S = 0.25
_WORKER_MEMORY_LIMIT_BYTES = 4 * 1024**3
_MAX_IDLE_WORKERS = 4

Isolation = Literal["process", "inline"]


class _DeadlineExceeded(BaseException):
    """Raised by our SIGALRM handler; a BaseException so that ``except Exception`` in libraries lets it pass."""


def _forget_interrupted_state() -> None:
    """Drop caches that may hold expressions whose assumptions an interrupt left as "unknown"."""
    try:
        from math_verify import parser
        from sympy.core.cache import clear_cache

        clear_cache()
        parser.parse_latex_cached.cache_clear()
        parser.parse_expr_cached.cache_clear()
        parse_gold_cached.cache_clear()
    except Exception:  # noqa: BLE001 - best effort
        logger.debug("could not clear caches after a timeout", exc_info=True)


def _timer_is_free() -> bool:
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )


def _run_inline(mode: str, answer_text: str, gold: str, timeout_s: float | None) -> ScoreResult:
    """Run :func:`verdict` here, under a repeating ITIMER_REAL timer when ``timeout_s`` is given.

    The timer first fires at ``timeout_s`` and then every ``_TIMER_REFIRE_S``; the handler raises again
    only if ``_RERAISE_AFTER_S`` passed since its last raise, i.e. when a library swallowed the interrupt.
    That spacing is what lets the cleanup below run without being interrupted itself.
    """
    extracted = answer_text if mode == "boxed" else None
    load_math_verify()  # import sympy / math-verify (about 1 s, once) before the clock starts
    if timeout_s is None:
        try:
            correct, extracted = verdict(mode, answer_text, gold)
            return ScoreResult(bool(correct), extracted, False)
        except Exception:  # noqa: BLE001 - scoring must never raise
            logger.debug("scoring failed", exc_info=True)
            return ScoreResult(False, extracted, False)

    last_raise = [-math.inf]

    def on_alarm(signum, frame):
        now = time.monotonic()
        if now - last_raise[0] >= _RERAISE_AFTER_S:
            last_raise[0] = now
            raise _DeadlineExceeded()

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout_s, _TIMER_REFIRE_S)
            correct, extracted = verdict(mode, answer_text, gold)
            result = ScoreResult(bool(correct), extracted, False)
        except _DeadlineExceeded:
            result = ScoreResult(False, extracted, True)
        except Exception:  # noqa: BLE001 - scoring must never raise
            logger.debug("scoring failed", exc_info=True)
            result = ScoreResult(False, extracted, False)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
            signal.signal(signal.SIGALRM, previous_handler)
    except _DeadlineExceeded:  # the first interrupt landed in the ``finally`` above, at the deadline
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous_handler)
        result = ScoreResult(False, extracted, True)
    if result.timed_out:
        _forget_interrupted_state()
    return result


# --------------------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------------------

_WORKER_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from lgrpo_bench.tasks.scoring import _worker_main; _worker_main()"
)
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker_main() -> None:
    """Entry point of a worker process: one JSON request per line on stdin, one JSON verdict per line out."""
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol stream
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; we exit when its pipe closes
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_LIMIT_BYTES, _WORKER_MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    from lgrpo_bench.procs import imports_kept_out_of_gc

    with imports_kept_out_of_gc():  # sympy and math-verify: 0.49 -> 0.28 CPU-s per worker start (2-core EPYC)
        load_math_verify()
    protocol_out.write(b"ready\n")
    for line in sys.stdin.buffer:
        try:
            mode, answer_text, gold, timeout_s = json.loads(line)
            result = _run_inline(mode, answer_text, gold, float(timeout_s))
            reply = [result.correct, result.extracted, result.timed_out]
        except _DeadlineExceeded:
            reply = [False, None, True]
        except BaseException:  # noqa: BLE001 - a malformed request must not kill the worker
            reply = [False, None, False]
        protocol_out.write(json.dumps(reply).encode("ascii") + b"\n")


class _WorkerDied(Exception):
    pass


class _Worker:
    """One worker subprocess and its pipes. Used by one thread at a time (the pool hands it out)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOT, _PACKAGE_PARENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # Ctrl-C in the terminal goes to the parent, which decides
        )
        self.ready = False
        self._buffer = b""

    def _read_line(self, deadline: float) -> bytes | None:
        """Next line from the worker, ``None`` if none by ``deadline``; raises ``_WorkerDied`` at end of stream."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _WorkerDied()
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _await_ready(self, deadline: float) -> bool:
        if not self.ready:
            line = self._read_line(deadline)
            if line is None:
                return False
            if line != b"ready":
                raise _WorkerDied()
            self.ready = True
        return True

    def is_ready_now(self) -> bool:
        """Whether start-up has finished, without waiting; ``False`` for a worker that died."""
        try:
            return self._await_ready(time.monotonic())
        except (_WorkerDied, OSError):
            return False

    def wait_ready(self) -> None:
        """Wait for start-up (at most :data:`WORKER_START_TIMEOUT_S`); raises ``_WorkerDied`` on failure."""
        if not self._await_ready(time.monotonic() + WORKER_START_TIMEOUT_S):
            raise _WorkerDied()

    def request(self, payload: list, hard_deadline: float) -> ScoreResult | None:
        """Send one request; the verdict, or ``None`` when the worker missed ``hard_deadline``."""
        self.process.stdin.write(json.dumps(payload).encode("ascii") + b"\n")
        self.process.stdin.flush()
        line = self._read_line(hard_deadline)
        if line is None:
            return None
        correct, extracted, timed_out = json.loads(line)
        return ScoreResult(bool(correct), extracted, bool(timed_out))

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=2)
        except Exception:  # noqa: BLE001
            self.kill()


_POOL_LOCK = threading.Lock()
_IDLE_WORKERS: list[_Worker] = []
_WORKERS_UNAVAILABLE_LOGGED = False


def _forget_workers_after_fork() -> None:
    """A forked child must not use (or kill) its parent's workers, nor a lock another thread may have held."""
    global _POOL_LOCK, _IDLE_WORKERS, _TIMEOUT_LOCK
    _POOL_LOCK = threading.Lock()
    _IDLE_WORKERS = []
    _TIMEOUT_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_after_fork)


def _take_worker() -> _Worker:
    """An idle worker, preferring one that has finished starting (most recently used first), else a new one."""
    with _POOL_LOCK:
        for worker in [w for w in _IDLE_WORKERS if w.process.poll() is not None]:
            _IDLE_WORKERS.remove(worker)  # died while idle (killed from outside, out of memory)
            worker.kill()
        for index in range(len(_IDLE_WORKERS) - 1, -1, -1):
            if _IDLE_WORKERS[index].is_ready_now():
                return _IDLE_WORKERS.pop(index)
        if _IDLE_WORKERS:
            return _IDLE_WORKERS.pop()  # still starting
    return _Worker()


def _return_worker(worker: _Worker) -> None:
    with _POOL_LOCK:
        if len(_IDLE_WORKERS) < _MAX_IDLE_WORKERS:
            _IDLE_WORKERS.append(worker)
            return
    worker.close()


def _replace_worker_in_background() -> None:
    """Start a replacement now (it imports while the caller goes on), so the next call rarely waits."""
    try:
        _return_worker(_Worker())
    except Exception:  # noqa: BLE001 - the next call will try again
        pass


def shutdown_workers() -> None:
    """Stop all idle worker processes of this process (also registered with ``atexit``)."""
    with _POOL_LOCK:
        workers = list(_IDLE_WORKERS)
        _IDLE_WORKERS.clear()
    for worker in workers:
        worker.close()


atexit.register(shutdown_workers)


def warm_up_worker(count: int = 1) -> bool:
    """Make sure ``count`` idle worker processes have started and imported math-verify; returns success.

    Two keep a spare ready while a timed-out worker's replacement starts.
    """
    workers = []
    try:
        for _ in range(count):
            workers.append(_take_worker())
        for worker in workers:
            worker.wait_ready()
    except Exception:  # noqa: BLE001
        logger.exception("could not start a scoring worker process")
        for worker in workers:
            worker.kill()
        return False
    for worker in workers:
        _return_worker(worker)
    return True


def _run_in_worker(mode: str, answer_text: str, gold: str, timeout_s: float) -> ScoreResult:
    global _WORKERS_UNAVAILABLE_LOGGED
    extracted = answer_text if mode == "boxed" else None
    worker = None
    try:
        worker = _take_worker()
        worker.wait_ready()
    except Exception:  # noqa: BLE001
        if worker is not None:
            worker.kill()
        if not _WORKERS_UNAVAILABLE_LOGGED:
            _WORKERS_UNAVAILABLE_LOGGED = True
            logger.error(
                "lgrpo_bench scoring could not start a worker process (%s -c ...); scoring inline instead, "
                "without a time bound off the main thread. Check that this Python can start subprocesses.",
                sys.executable,
                exc_info=True,
            )
        return _run_inline(mode, answer_text, gold, timeout_s if _timer_is_free() else None)
    hard_deadline = time.monotonic() + timeout_s + KILL_GRACE_S
    try:
        result = worker.request([mode, answer_text, gold, timeout_s], hard_deadline)
    except Exception:  # noqa: BLE001 - broken pipe, worker died (e.g. out of memory), bad reply
        result = ScoreResult(False, extracted, True)
        worker.kill()
        _replace_worker_in_background()
        return result
    if result is None or result.timed_out:
        # Killed at the hard deadline, or interrupted by its own timer: either way its state is suspect.
        worker.kill()
        _replace_worker_in_background()
        return ScoreResult(False, result.extracted if result else extracted, True)
    _return_worker(worker)
    return result


# --------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------

_TIMEOUT_LOCK = threading.Lock()
_TIMEOUT_TOTAL = 0


def timeout_count() -> int:
    """Number of :func:`score_math` calls in this process that returned ``timed_out=True`` (thread-safe)."""
    with _TIMEOUT_LOCK:
        return _TIMEOUT_TOTAL


def score_math(
    completion: str,
    gold: str,
    *,
    timeout_s: float = 5.0,
    isolation: Isolation = "process",
) -> ScoreResult:
    r"""Score ``completion`` against the reference answer ``gold`` (see the module docstring for the rules).

    Args:
        completion: the model's output text.
        gold: the reference answer without ``\boxed{}``, as in our JSONL files (``"\frac{1}{2}"``, ``"A"``).
        timeout_s: bound on the verification, in seconds (> 0). The call returns within about
            ``timeout_s + KILL_GRACE_S`` (plus a worker's one-off start-up, see :func:`warm_up_worker`).
        isolation: ``"process"`` (a worker subprocess, any thread) or ``"inline"`` (this process; bounded on
            the main thread only). See the module docstring, "Time bound, threads and state".

    Returns:
        :class:`ScoreResult`. Never raises for bad ``completion`` / ``gold``; raises ``ValueError`` for a
        non-positive ``timeout_s`` or an unknown ``isolation`` (caller bugs).
    """
    global _TIMEOUT_TOTAL
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if isolation not in ("process", "inline"):
        raise ValueError(f"isolation must be 'process' or 'inline', got {isolation!r}")
    if not isinstance(completion, str):
        return ScoreResult(False, None, False)
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str) or not gold.strip():
        return ScoreResult(False, None, False)

    prepared = answer_to_verify(clean_text(completion))
    if prepared is None:
        return ScoreResult(False, None, False)
    mode, answer_text = prepared
    if mode == "boxed" and (not answer_text.strip() or len(answer_text) > MAX_ANSWER_CHARS):
        return ScoreResult(False, answer_text[:MAX_ANSWER_CHARS], False)
    gold = clean_text(gold).strip()

    if isolation == "inline":
        result = _run_inline(mode, answer_text, gold, float(timeout_s) if _timer_is_free() else None)
    else:
        result = _run_in_worker(mode, answer_text, gold, float(timeout_s))
    if result.timed_out:
        with _TIMEOUT_LOCK:
            _TIMEOUT_TOTAL += 1
    return result
