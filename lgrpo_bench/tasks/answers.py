r"""Answer semantics of the scorer: what counts as the model's answer and when two answers are equal.

Pure functions (no processes, no timers); :mod:`lgrpo_bench.tasks.scoring` runs :func:`verdict` under a time bound.

Contract
    :func:`~lgrpo_bench.tasks.scoring.score_math` ``(completion, gold) -> ScoreResult(correct, extracted, timed_out)``.
    It never raises for any ``completion`` / ``gold`` (text of any size, invalid LaTeX, unicode, NUL bytes;
    non-strings score ``correct=False``) and returns within ``timeout_s`` plus a small slack, from any thread
    (see "Time bound, threads and state" in :mod:`lgrpo_bench.tasks.scoring`).

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
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

__all__ = [
    "MAX_ANSWER_CHARS",
    "TAIL_CHARS",
    "ScoreResult",
    "answer_to_verify",
    "clean_text",
    "extract_boxed",
    "extract_choice_letters",
    "load_math_verify",
    "parse_gold_cached",
    "verdict",
]

logger = logging.getLogger(__name__)

TAIL_CHARS = 4_000
"""Without a box, only the last this-many characters of a completion are searched for an answer."""

MAX_ANSWER_CHARS = 4_000
"""A boxed answer longer than this is not parsed and scores ``correct=False`` (golds in our data: <= 988)."""


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


def clean_text(text: str) -> str:
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
def load_math_verify():
    """Import math-verify once and fix its vacuous equation comparison (for every user in this process)."""
    import math_verify
    from math_verify import LatexExtractionConfig, grader

    grader.solve = _solve_or_raise
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_SilenceTimeoutDisabledWarning())
    boxed_only = [LatexExtractionConfig(boxed_match_priority=0)]
    return math_verify, boxed_only


def _parse_boxed(answer: str) -> list:
    math_verify, boxed_only = load_math_verify()
    return math_verify.parse(
        "\\boxed{" + _rewrite_e_notation(answer) + "}", extraction_config=boxed_only, parsing_timeout=None
    )


@functools.lru_cache(maxsize=8192)
def parse_gold_cached(gold: str) -> tuple:
    return tuple(_parse_boxed(gold))


def _fallback_string(parsed: list) -> str | None:
    strings = [item for item in parsed if isinstance(item, str)]
    if strings:
        return strings[0]
    return str(parsed[0]) if parsed else None


def verdict(mode: str, answer_text: str, gold: str) -> tuple[bool, str | None]:
    """(correct, extracted) for a prepared request; may be slow, the caller bounds its time."""
    math_verify, boxed_only = load_math_verify()
    gold_letters = _gold_choice_letters(gold)
    if gold_letters is not None:
        if mode == "boxed":
            return extract_choice_letters(answer_text) == gold_letters, answer_text
        letters = _anchored_choice_letters(answer_text)
        return letters == gold_letters, None if letters is None else ", ".join(letters)
    gold_parsed = list(parse_gold_cached(gold))
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


def answer_to_verify(completion: str) -> tuple[str, str] | None:
    """(mode, text) to verify: ``("boxed", last box content)``, ``("tail", last TAIL_CHARS characters)`` when
    there is no box, or ``None`` when the last box is unclosed (no answer)."""
    boxed = _find_last_box(completion)
    if boxed is _UNCLOSED:
        return None
    if boxed is not None:
        return "boxed", boxed
    return "tail", completion[-TAIL_CHARS:]
