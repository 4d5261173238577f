r"""The one answer scorer shared by the training reward and by evaluation.

Contract
    :func:`score_math` ``(completion, gold) -> ScoreResult(correct, extracted, timed_out)``.
    It never raises for any ``completion`` / ``gold`` (text of any size, invalid LaTeX, unicode, NUL bytes;
    non-strings score ``correct=False``) and returns within ``timeout_s`` plus a small slack, from any thread
    (plus a worker process's start-up when none is ready, see "Time bound, threads and state").

What counts as the model's answer
    1. The content of the LAST ``\boxed{...}`` / ``\fbox{...}`` (:func:`extract_boxed`). Only that one
       counts: ``\boxed{3} or \boxed{5}`` answers ``5``. If the last ``\boxed{`` is never closed (a completion
       cut off at the length limit) there is no answer, even if an earlier box was complete.
    2. If the completion has no box at all: math-verify's own extraction (LaTeX environments, then plain
       expressions / numbers, preferring "final answer is" / "answer:" anchors, rightmost match first) over
       the last :data:`TAIL_CHARS` characters. This keeps base models that answer "The answer is 5"
       gradable, as the Qwen2.5-Math harness does (it falls back to the last number).
    3. Multiple-choice golds (capital letters only: ``A``, ``(A)``, ``\text{(C)}``, or a multi-select list
       ``\text{A, C}``): the answer is the set of choice letters in the box (``A``, ``(A)``, ``\text{(A)}``,
       ``\textbf{(A) } 12``, ``A, C``), or without a box the letters after an "answer" anchor ("the answer
       is (B)"). The sets must be equal: ``a`` is not ``A``, the hedge ``A, B`` is not ``A``, and the order of a
       multi-select list does not matter.

How answers are compared
    math-verify ``parse`` + ``verify`` (strict mode, ``float_rounding=6``): the gold is parsed as
    ``\boxed{gold}`` and the answer as ``\boxed{answer}`` with LaTeX extraction only, so both go through the
    same normalisation (``\text{ feet}`` and other units dropped, ``\dfrac`` = ``\frac``, ``\$`` dropped,
    ``1{,}008`` = ``1,008`` = ``1008``, ``^\circ`` dropped, leading zeros ``016`` = ``16``, ``x = 5`` = ``5``,
    ``25\%`` = ``25`` = ``0.25``). Intervals keep their brackets (``[2,5)`` is not ``(2,5)``) and tuples their
    order (``(3,-2)`` is not ``(-2,3)``); unordered answer lists (``4, -4``) compare as sets.
    Before parsing, a whole-answer float in e-notation (``4.5e33``, common in Minerva golds) is rewritten as
    ``4.5\times 10^{33}``; math-verify would otherwise read ``e`` as Euler's number. Three guards against
    math-verify false positives (each found on our data, each a test): two real numbers more than
    ``1e-5`` apart relative to the larger are never equal (math-verify rounds to 6 decimal places and
    chops, so ``2.88e-19`` "equalled" ``1.325e-27``); two equations without unknowns (``|M_1| = -6``,
    ``1+1=3``) must match side by side (math-verify compares ``lhs - rhs``: ``1+1=3`` "equalled"
    ``2+2=5``); and two equations that cannot be solved are not equal by having no solutions
    (:func:`_solve_or_raise`). Kept from math-verify, and worth knowing: ``10\%`` equals ``10``; an
    interval answer matches an inequality gold (``(3,\infty)`` for ``x>3``) but an inequality answer does
    not match an interval gold; comparing two different long symbolic answers (ODE solutions) can run into
    the time bound, which scores 0.

Where we depart from the references
    * Qwen2.5-Math harness (``math_equal``): it accepts numbers within a relative tolerance of 1e-4 and, for
      percentages, any of ``x``, ``x/100``, ``100x``; we use math-verify's rounding to 6 decimal places
      within our relative ``1e-5`` (``3\sqrt{2}`` vs ``4.24`` is wrong here, right there), and math-verify's
      percentage rule (``25\%`` = ``25`` = ``0.25``, but ``25`` is not ``2500``). Its fallback to the last
      number in the text is replaced by math-verify's anchored-then-rightmost extraction over the tail.
    * lighteval / math-verify defaults: they extract from the whole completion and join several adjacent boxes
      (``\boxed{3}, \boxed{5}``) into a set; we score the last box only, so a hedged list of boxes is not
      rewarded as a set answer. The multiple-choice rule above is ours.
    * The three guards above. :func:`_solve_or_raise` patches ``math_verify.grader`` in the process that
      verifies, i.e. only in worker processes unless ``isolation="inline"`` is used. An answer that is a
      value is not matched to a gold written as an equation without unknowns (``3464.1`` vs
      ``20\cos\frac{\pi}{6}\cdot 200=3464.1``, some college_math golds), as in math-verify and the Qwen
      harness.
    * Only the tail matters: without a box we read the last :data:`TAIL_CHARS` characters, and a box whose
      content is longer than :data:`MAX_ANSWER_CHARS` characters scores ``correct=False`` without parsing
      (the longest gold in our ten benchmark files is 988 characters).

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
import functools
import json
import logging
import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Literal

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

TAIL_CHARS = 4_000
"""Without a box, only the last this-many characters of a completion are searched for an answer."""

MAX_ANSWER_CHARS = 4_000
"""A boxed answer longer than this is not parsed and scores ``correct=False`` (golds in our data: <= 988)."""

KILL_GRACE_S = 0.5
"""How long past ``timeout_s`` a worker process may take to answer before it is killed and replaced."""

WORKER_START_TIMEOUT_S = 60.0
"""How long to wait for a new worker process to import math-verify; not counted against ``timeout_s``."""

_TIMER_REFIRE_S = 0.05
_RERAISE_AFTER_S = 0.25
_WORKER_MEMORY_LIMIT_BYTES = 4 * 1024**3
_MAX_IDLE_WORKERS = 4

Isolation = Literal["process", "inline"]


@dataclass(frozen=True)
class ScoreResult:
    """Verdict of :func:`score_math`.

    ``correct``: the answer equals the gold. ``extracted``: the answer text that was compared (the last box's
    content, math-verify's extracted string, or ``None`` when nothing was found). ``timed_out``: the
    verification did not finish within the time bound (``correct`` is then ``False``).
    """

    correct: bool
    extracted: str | None
    timed_out: bool = False


# --------------------------------------------------------------------------------------------------------
# Pure text helpers
# --------------------------------------------------------------------------------------------------------

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_BRACE_TOKENS = re.compile(r"\\.|[{}]", re.DOTALL)
_UNCLOSED = object()
_SPACE_FORM_ARGUMENT = re.compile(r"[^$\n]*")


def _read_box_argument(text: str, start: int):
    """Argument of a box command whose name ends at ``start``.

    Returns the argument string, ``_UNCLOSED`` for ``{`` without its matching ``}``, or ``None`` when the
    command is not a box (``\\boxedfoo``) or has no argument.
    """
    n = len(text)
    pos = start
    while pos < n and text[pos] in " \t":
        pos += 1
    if pos < n and text[pos] == "{":
        depth = 0
        for token in _BRACE_TOKENS.finditer(text, pos):
            lexeme = token.group()
            if lexeme == "{":
                depth += 1
            elif lexeme == "}":
                depth -= 1
                if depth == 0:
                    return text[pos + 1 : token.start()]
        return _UNCLOSED
    if pos > start:
        # The rare ``\boxed 5`` form: the argument runs to the next ``$`` or line end, as in MATH's own
        # ``last_boxed_only_string``.
        argument = _SPACE_FORM_ARGUMENT.match(text, pos).group().strip()
        return argument or None
    return None


def _find_last_box(text: str):
    """The argument of the last box command, ``_UNCLOSED`` if that box is never closed, ``None`` if none."""
    last_position = {command: text.rfind(command) for command in _BOX_COMMANDS}
    while True:
        command = max(_BOX_COMMANDS, key=last_position.__getitem__)
        position = last_position[command]
        if position < 0:
            return None
        argument = _read_box_argument(text, position + len(command))
        if argument is not None:
            return argument
        # ``\boxedfoo`` or similar: look further left
        last_position[command] = text.rfind(command, 0, position)


def extract_boxed(text: str) -> str | None:
    r"""Content of the LAST ``\boxed{...}`` or ``\fbox{...}`` in ``text``, or ``None``.

    Nested braces are matched, and escaped characters (``\{``, ``\}``, ``\\``) do not count as braces. The
    ``\boxed 5`` form (argument up to the next ``$`` or newline) is read too. ``\boxed{}`` gives ``""``.
    If the last box is never closed (truncated output) the result is ``None``: an unfinished final answer
    is no answer, and an earlier box is not used instead. Time is linear in ``len(text)``.
    """
    if not isinstance(text, str):
        return None
    argument = _find_last_box(text)
    return None if argument is _UNCLOSED else argument


_LATEX_WRAPPERS = re.compile(r"\\(?:text|textbf|mathbf|mathrm|textrm|mathit|textit|operatorname)\s*\{")
_CHOICE_LIST = re.compile(r"\(?[A-Z]\)?(?:[,;]\(?[A-Z]\)?)*\.?")
_CHOICE_LEADING = re.compile(r"\(?([A-Z])(?:\)|(?![A-Za-z]))")
_STANDALONE_CAPITAL = re.compile(r"(?<![A-Za-z\\])[A-Z](?![A-Za-z])")


def _strip_choice_markup(answer: str) -> str:
    """``\\text{(A), (C)}`` -> ``(A),(C)``: formatting commands, braces, ``$``, spacing and "and" removed."""
    stripped = _LATEX_WRAPPERS.sub("", answer)
    stripped = re.sub(r"\s+(?:and|or|&)\s+", ",", stripped)
    return re.sub(r"[\s{}$~]|\\[,;:! ]|\\q?quad", "", stripped)


def _letters(text: str) -> tuple[str, ...]:
    return tuple(sorted(set(re.findall(r"[A-Z]", text))))


def _gold_choice_letters(gold: str) -> tuple[str, ...] | None:
    """Choice letters of a multiple-choice gold (``A``, ``(A)``, ``\\text{(C)}``, ``\\text{A, C}``), else ``None``."""
    stripped = _strip_choice_markup(gold)
    return _letters(stripped) if _CHOICE_LIST.fullmatch(stripped) else None


def extract_choice_letters(answer: str) -> tuple[str, ...] | None:
    r"""The multiple-choice letters an answer gives, sorted and without repeats, or ``None``.

    Either a list of letters (``A``, ``(A)``, ``\text{(A)}``, ``\text{A, C}``, ``A and C``), or one letter
    followed by its option's value (``\textbf{(A) } 12``). Formatting commands, braces, ``$`` and spacing
    are dropped first; letters must be capitals ``A``-``Z`` standing alone (``Area`` gives ``None``), and a
    leading letter may not be followed by another stand-alone capital (``(A) 12 or B`` gives ``None``).
    """
    if not isinstance(answer, str):
        return None
    stripped = _strip_choice_markup(answer)
    if _CHOICE_LIST.fullmatch(stripped):
        return _letters(stripped)
    match = _CHOICE_LEADING.match(stripped)
    if not match or _STANDALONE_CAPITAL.search(stripped, match.end()):
        return None
    return (match.group(1),)


_ANCHORED_CHOICE = re.compile(
    r"(?i:answer)\s*(?:is|:|=)?\s*(?i:options?|choices?)?[\s:]*\**\s*\$?\s*"  # "answer is option **$"
    r"(?:\\text(?:bf)?\s*\{)?\s*"  # "\textbf{"
    r"(\(?[A-Z]\)?(?:\s*(?:,|;|and)\s*\(?[A-Z]\)?)*)(?![A-Za-z])"  # "(B)", "A, C", "A and C"
)


def _anchored_choice_letters(text: str) -> tuple[str, ...] | None:
    """Letters of the last "answer is (B)" / "Answer: A, C" / "answer is option B" in ``text``, or ``None``."""
    letters = None
    for match in _ANCHORED_CHOICE.finditer(text):
        letters = _letters(match.group(1))
    return letters


_E_NOTATION = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*[eE]\s*([+-]?\d+)\s*$")


def _rewrite_e_notation(answer: str) -> str:
    match = _E_NOTATION.match(answer)
    if not match:
        return answer
    return f"{match.group(1)}\\times 10^{{{int(match.group(2))}}}"


def _clean(text: str) -> str:
    return text.replace("\x00", "")


# --------------------------------------------------------------------------------------------------------
# math-verify calls (run inline, under the timer, in this process or in a worker)
# --------------------------------------------------------------------------------------------------------


class _SilenceTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its own timeout is off; ours is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


class _NoSolutions(Exception):
    """Raised instead of returning an empty solution list; see :func:`_solve_or_raise`."""


def _solve_or_raise(*args, **kwargs):
    """``sympy.solve`` for math-verify's grader, raising when there is no solution.

    math-verify 0.9 compares two equations by solving both and checking that the solution lists agree
    element by element; two empty lists agree vacuously, so ``e^x=0`` "equals" ``e^x=-1`` and two different
    vector ODE solutions match (8 wrong college_math pairs did). The grader catches exceptions from that
    step and treats them as "not equal".
    """
    from sympy import solve

    solutions = solve(*args, **kwargs)
    if isinstance(solutions, (list, dict)) and not solutions:
        raise _NoSolutions()
    return solutions


@functools.lru_cache(maxsize=1)
def _math_verify():
    """Import math-verify once and fix its vacuous equation comparison (for every user in this process)."""
    import math_verify
    from math_verify import LatexExtractionConfig, grader

    grader.solve = _solve_or_raise
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_SilenceTimeoutDisabledWarning())
    boxed_only = [LatexExtractionConfig(boxed_match_priority=0)]
    return math_verify, boxed_only


def _parse_boxed(answer: str) -> list:
    math_verify, boxed_only = _math_verify()
    return math_verify.parse(
        "\\boxed{" + _rewrite_e_notation(answer) + "}", extraction_config=boxed_only, parsing_timeout=None
    )


@functools.lru_cache(maxsize=8192)
def _parse_gold_cached(gold: str) -> tuple:
    return tuple(_parse_boxed(gold))


def _fallback_string(parsed: list) -> str | None:
    strings = [item for item in parsed if isinstance(item, str)]
    if strings:
        return strings[0]
    return str(parsed[0]) if parsed else None


def _verdict_inline(mode: str, answer_text: str, gold: str) -> tuple[bool, str | None]:
    """(correct, extracted) for a prepared request; may be slow, the caller bounds its time."""
    math_verify, boxed_only = _math_verify()
    gold_letters = _gold_choice_letters(gold)
    if gold_letters is not None:
        if mode == "boxed":
            return extract_choice_letters(answer_text) == gold_letters, answer_text
        letters = _anchored_choice_letters(answer_text)
        return letters == gold_letters, None if letters is None else ", ".join(letters)
    gold_parsed = list(_parse_gold_cached(gold))
    if mode == "boxed":
        answer_parsed = _parse_boxed(answer_text)
        extracted: str | None = answer_text
    else:
        answer_parsed = math_verify.parse(answer_text, parsing_timeout=None)
        extracted = _fallback_string(answer_parsed)
    if not answer_parsed or not gold_parsed:
        return False, extracted
    # verify() also compares the normalized strings, after the (possibly slow) sympy comparison; doing it
    # first changes no verdict and makes identical long answers (ODE solutions, matrices) instant.
    if _normalized_strings(gold_parsed) & _normalized_strings(answer_parsed):
        return True, extracted
    gold_expr, answer_expr = _first_expression(gold_parsed), _first_expression(answer_parsed)
    if gold_expr is not None and answer_expr is not None:
        if _is_closed_equation(gold_expr) and _is_closed_equation(answer_expr):
            return _closed_equations_match(math_verify, gold_expr, answer_expr), extracted
        gold_value, answer_value = _real_value(gold_expr), _real_value(answer_expr)
        if gold_value is not None and answer_value is not None and not _relatively_close(gold_value, answer_value):
            return False, extracted
    return bool(math_verify.verify(gold_parsed, answer_parsed, timeout_seconds=None)), extracted


# Two real numbers further apart than this (relative to the larger) are never equal. math-verify compares
# numbers by rounding to 6 decimal places or by ``(a - b).evalf(chop=True) == 0``; both call any two numbers
# below 5e-7 equal (Minerva: ``2.88e-19`` "equalled" ``1.325e-27``). Within this tolerance math-verify decides.
_RELATIVE_TOLERANCE = 1e-5


def _first_expression(parsed: list):
    for item in parsed:
        if not isinstance(item, str):
            return item
    return None


def _is_closed_equation(expr) -> bool:
    """An equation without unknowns, such as ``|M| = -6`` or ``1+1=3``: a statement, not something to solve."""
    from sympy import Eq

    try:
        return isinstance(expr, Eq) and not expr.free_symbols
    except Exception:  # noqa: BLE001
        return False


def _closed_equations_match(math_verify, gold, answer) -> bool:
    """Both sides must match, in order or swapped. math-verify compares ``lhs - rhs`` instead, which makes
    ``1+1=3`` equal ``2+2=5`` (both -1) and ``|M_1|=-6`` equal ``|M_2|=-32`` (solving neither gives nothing)."""

    def same(a, b) -> bool:
        return bool(math_verify.verify(a, b, timeout_seconds=None))

    return (same(gold.lhs, answer.lhs) and same(gold.rhs, answer.rhs)) or (
        same(gold.lhs, answer.rhs) and same(gold.rhs, answer.lhs)
    )


def _real_value(expr):
    """The value of a real number expression as a 30-digit sympy Float (an assignment ``x = v`` counts as
    ``v``); ``None`` for anything else, and for percentages, whose rule (``25\\%`` = ``25``) math-verify keeps."""
    from sympy import Basic, Eq, Symbol
    from math_verify.grader import get_pct_val

    try:
        if isinstance(expr, Eq) and isinstance(expr.lhs, Symbol):
            expr = expr.rhs
        if not isinstance(expr, Basic) or expr.free_symbols or not expr.is_number:
            return None
        if get_pct_val(expr) is not None:
            return None
        value = expr.evalf(30)
        return value if value.is_real and value.is_finite else None
    except Exception:  # noqa: BLE001 - not a plain number
        return None


def _relatively_close(a, b) -> bool:
    if a == b:
        return True
    return abs(a - b) <= _RELATIVE_TOLERANCE * max(abs(a), abs(b))


def _normalized_strings(parsed: list) -> set[str]:
    return {item.strip() for item in parsed if isinstance(item, str) and item.strip()}


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
        _parse_gold_cached.cache_clear()
    except Exception:  # noqa: BLE001 - best effort
        logger.debug("could not clear caches after a timeout", exc_info=True)


def _timer_is_free() -> bool:
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )


def _run_inline(mode: str, answer_text: str, gold: str, timeout_s: float | None) -> ScoreResult:
    """Run :func:`_verdict_inline` here, under a repeating ITIMER_REAL timer when ``timeout_s`` is given.

    The timer first fires at ``timeout_s`` and then every ``_TIMER_REFIRE_S``; the handler raises again
    only if ``_RERAISE_AFTER_S`` passed since its last raise, i.e. when a library swallowed the interrupt.
    That spacing is what lets the cleanup below run without being interrupted itself.
    """
    extracted = answer_text if mode == "boxed" else None
    _math_verify()  # import sympy / math-verify (about 1 s, once) before the clock starts
    if timeout_s is None:
        try:
            correct, extracted = _verdict_inline(mode, answer_text, gold)
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
            correct, extracted = _verdict_inline(mode, answer_text, gold)
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
    _math_verify()
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


def _prepare(completion: str) -> tuple[str, str] | None:
    """(mode, text) to verify: ``("boxed", last box content)``, ``("tail", last TAIL_CHARS characters)`` when
    there is no box, or ``None`` when the last box is unclosed (no answer)."""
    boxed = _find_last_box(completion)
    if boxed is _UNCLOSED:
        return None
    if boxed is not None:
        return "boxed", boxed
    return "tail", completion[-TAIL_CHARS:]


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

    prepared = _prepare(_clean(completion))
    if prepared is None:
        return ScoreResult(False, None, False)
    mode, answer_text = prepared
    if mode == "boxed" and (not answer_text.strip() or len(answer_text) > MAX_ANSWER_CHARS):
        return ScoreResult(False, answer_text[:MAX_ANSWER_CHARS], False)
    gold = _clean(gold).strip()

    if isolation == "inline":
        result = _run_inline(mode, answer_text, gold, float(timeout_s) if _timer_is_free() else None)
    else:
        result = _run_in_worker(mode, answer_text, gold, float(timeout_s))
    if result.timed_out:
        with _TIMEOUT_LOCK:
            _TIMEOUT_TOTAL += 1
    return result
