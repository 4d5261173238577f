"""Synthetic verifiable arithmetic task: ``a+b`` with n-digit operands.

Pure functions, no I/O. This is the task the tiny presets are warm-started on and the task that RL on a
CPU trains on (see ``/work/shared/TINY_RL.md`` for the measured recipe).

Problems
    ``a+b`` where both operands have the same number of digits ``n``; ``n`` is drawn uniformly from
    ``digits`` (default ``(2, 3)``, i.e. 50/50 two- and three-digit problems). An n-digit operand is drawn
    uniformly from ``[10**(n-1), 10**n - 1]`` (no leading zeros). Difficulty is set by ``digits`` only:
    ``(2,)`` is easy, ``(2, 3)`` the default, ``(3, 4)`` or ``(4,)`` harder.

Prompt (the ``arith`` prompt template)
    ``<|user|>457+386<|assistant|>`` -- see :data:`ARITH_PROMPT_FORMAT` and :func:`render_arith_prompt`.

Answer styles (what the model is taught to write after the prompt)
    direct  ``=843``
    worked  ``7+6+0=13|5+8+1=14|4+3+1=08|=843`` -- one step per digit column from right to left,
            ``digit_a+digit_b+carry_in=SS`` with the carry-in always written (0 for the first column) and the
            partial sum always two digits, steps separated by ``|``, then ``|=`` and the full sum.

Reward
    :func:`score_arith` -- 1.0 when the number after the LAST ``=`` equals the answer, else 0.0.

Splits
    :func:`train_test_split` draws the held-out test problems (unique by problem string) from a stream that
    depends only on ``(seed, digits)``, and the training problems from a separate stream with the test
    problem strings excluded. Both streams are prefix-stable: asking for more problems appends problems,
    it never changes the first ones. Tiny warm starts use :data:`ARITH_SPLIT_SEED`, :data:`ARITH_N_TEST`
    and :data:`ARITH_DEFAULT_DIGITS`; RL runs that want a held-out set unseen by the warm start must use the
    same three values. :func:`validation_problems` draws a third set, disjoint from the test split, for model
    selection (the warm start's stopping rule), so that nothing is ever selected on the test split.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = [
    "ARITH_DEFAULT_DIGITS",
    "ARITH_N_TEST",
    "ARITH_PROMPT_FORMAT",
    "ARITH_SPLIT_SEED",
    "ARITH_N_VALIDATION",
    "ArithProblem",
    "direct_solution",
    "generate_problems",
    "is_worked",
    "n_digits",
    "parse_arith_answer",
    "render_arith_prompt",
    "score_arith",
    "train_test_split",
    "validation_problems",
    "worked_solution",
]

ARITH_PROMPT_FORMAT = "<|user|>{problem}<|assistant|>"
"""The ``arith`` prompt template; ``{problem}`` is e.g. ``457+386``."""

ARITH_DEFAULT_DIGITS: tuple[int, ...] = (2, 3)
"""Operand lengths drawn uniformly per problem."""

ARITH_SPLIT_SEED = 0
"""Seed of the canonical split used by the tiny warm starts (and to be used by RL on their checkpoints)."""

ARITH_N_TEST = 500
"""Size of the canonical held-out test split."""

ARITH_N_VALIDATION = 500
"""Size of the canonical validation split (:func:`validation_problems`); warm starts exclude all of it."""

_MAX_DIGITS = 9
_ASCII_DIGITS = re.compile(r"[0-9]*")


@dataclass(frozen=True)
class ArithProblem:
    """One addition problem.

    ``id`` is stable for a given generator call (``"<stream>-<index>"``), ``problem`` is ``"457+386"`` and
    ``answer`` the decimal sum without leading zeros, ``"843"``.
    """

    id: str
    problem: str
    answer: str


def _check_digits(digits: Sequence[int]) -> tuple[int, ...]:
    digits = tuple(int(d) for d in digits)
    if not digits:
        raise ValueError("digits must name at least one operand length, e.g. (2, 3)")
    for d in digits:
        if not 1 <= d <= _MAX_DIGITS:
            raise ValueError(f"operand length must be in 1..{_MAX_DIGITS}, got {d}")
    return digits


def _operands(problem: str) -> tuple[str, str]:
    left, sep, right = problem.partition("+")
    if not sep or not left.isdigit() or not right.isdigit():
        raise ValueError(f"not an addition problem of the form 'a+b': {problem!r}")
    return left, right


def _make_problem(pid: str, a: int, b: int) -> ArithProblem:
    return ArithProblem(id=pid, problem=f"{a}+{b}", answer=str(a + b))


def _problem_stream(rng: random.Random, digits: tuple[int, ...]):
    while True:
        n = digits[rng.randrange(len(digits))]
        low, high = 10 ** (n - 1), 10**n - 1
        yield rng.randint(low, high), rng.randint(low, high)


def _is_drawable(text: str, digits: tuple[int, ...]) -> bool:
    try:
        left, right = _operands(text)
    except ValueError:
        return False
    return len(left) == len(right) and len(left) in digits and left[0] != "0" and right[0] != "0"


def _n_distinct_problems(digits: tuple[int, ...]) -> int:
    return sum((9 * 10 ** (d - 1)) ** 2 for d in set(digits))


def generate_problems(
    n: int,
    *,
    seed: int,
    digits: Sequence[int] = ARITH_DEFAULT_DIGITS,
    unique: bool = False,
    exclude: Collection[str] = (),
    id_prefix: str = "arith",
) -> list[ArithProblem]:
    """Return ``n`` problems drawn deterministically from ``seed``.

    The operand length is drawn uniformly from ``digits`` per problem, then both operands uniformly among
    numbers of that length. ``unique=True`` skips repeated problem strings; ``exclude`` skips the given
    problem strings (e.g. a test split). The result is prefix-stable in ``n`` and independent of the
    global ``random`` state. Raises ``ValueError`` when ``unique`` asks for more problems than exist.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    digits = _check_digits(digits)
    excluded = set(exclude)
    available = _n_distinct_problems(digits) - sum(_is_drawable(text, digits) for text in excluded)
    if n > 0 and available <= 0:
        raise ValueError(f"every problem with digits={digits} is excluded")
    if unique and n > available:
        raise ValueError(f"cannot draw {n} unique problems with digits={digits}")
    rng = random.Random(f"{id_prefix}|{seed}|{','.join(map(str, digits))}")
    seen: set[str] = set()
    problems: list[ArithProblem] = []
    for a, b in _problem_stream(rng, digits):
        if len(problems) == n:
            break
        text = f"{a}+{b}"
        if text in excluded or (unique and text in seen):
            continue
        seen.add(text)
        problems.append(_make_problem(f"{id_prefix}-{seed}-{len(problems)}", a, b))
    return problems


def train_test_split(
    seed: int = ARITH_SPLIT_SEED,
    n_train: int = 10_000,
    n_test: int = ARITH_N_TEST,
    digits: Sequence[int] = ARITH_DEFAULT_DIGITS,
) -> tuple[list[ArithProblem], list[ArithProblem]]:
    """Return ``(train, test)``: ``n_test`` unique held-out problems and ``n_train`` training problems.

    No training problem string occurs in the test split. Training problems may repeat (two-digit
    problems are only 8,100). The test split depends on ``(seed, n_test, digits)`` only (and is
    prefix-stable in ``n_test``); the training list is prefix-stable in ``n_train``.
    """
    test = generate_problems(n_test, seed=seed, digits=digits, unique=True, id_prefix="test")
    test_strings = {p.problem for p in test}
    train = generate_problems(n_train, seed=seed, digits=digits, exclude=test_strings, id_prefix="train")
    return train, test


def validation_problems(
    n: int = ARITH_N_VALIDATION,
    seed: int = ARITH_SPLIT_SEED,
    n_test: int = ARITH_N_TEST,
    digits: Sequence[int] = ARITH_DEFAULT_DIGITS,
) -> list[ArithProblem]:
    """``n`` unique validation problems, none of them in the test split of ``train_test_split(seed, n_test=n_test,
    digits=digits)``. Prefix-stable in ``n``; ids ``validation-<seed>-<i>``.

    For selecting a model (a stopping rule, a checkpoint) without looking at the test split; a training
    stream that must not see them excludes their problem strings.
    """
    _, test = train_test_split(seed, 0, n_test, digits)
    return generate_problems(n, seed=seed, digits=digits, unique=True, exclude={p.problem for p in test},
                             id_prefix="validation")


def n_digits(problem: ArithProblem | str) -> int:
    """Operand length of a problem (the longer operand's length)."""
    text = problem.problem if isinstance(problem, ArithProblem) else problem
    left, right = _operands(text)
    return max(len(left), len(right))


def render_arith_prompt(problem: ArithProblem | str) -> str:
    """``<|user|>{problem}<|assistant|>`` for an :class:`ArithProblem` or a problem string."""
    text = problem.problem if isinstance(problem, ArithProblem) else problem
    return ARITH_PROMPT_FORMAT.format(problem=text)


def direct_solution(p: ArithProblem) -> str:
    """The direct completion, ``=843`` (no end-of-sequence token)."""
    return f"={p.answer}"


def worked_solution(p: ArithProblem) -> str:
    """The worked completion, e.g. ``7+6+0=13|5+8+1=14|4+3+1=08|=843`` for ``457+386``.

    Columns right to left; a shorter operand is padded with 0 digits; the carry-in is always written; the
    partial sum is always two digits; the final ``=`` is followed by the full sum (so a final carry shows
    up only in the answer, as in ``5+7+0=12|=12`` for ``5+7``).
    """
    left, right = _operands(p.problem)
    width = max(len(left), len(right))
    left, right = left.zfill(width), right.zfill(width)
    steps = []
    carry = 0
    for da, db in zip(reversed(left), reversed(right)):
        total = int(da) + int(db) + carry
        steps.append(f"{da}+{db}+{carry}={total:02d}")
        carry = total // 10
    return "|".join(steps) + f"|={p.answer}"


def parse_arith_answer(completion: str) -> str | None:
    """The digits right after the LAST ``=`` in ``completion``, leading zeros stripped.

    Reading stops at the first non-digit. Returns ``None`` when there is no ``=`` or no digit right after
    it. ``"=0843"`` gives ``"843"``, ``"=000"`` gives ``"0"``. Runs in time linear in the input.
    """
    if not isinstance(completion, str):
        return None
    pos = completion.rfind("=")
    if pos < 0:
        return None
    number = _ASCII_DIGITS.match(completion, pos + 1).group()
    if not number:
        return None
    return number.lstrip("0") or "0"


def _normalize_answer(answer: object) -> str | None:
    text = str(answer).strip()
    if not text or any(c not in "0123456789" for c in text):
        return None
    return text.lstrip("0") or "0"


def score_arith(completion: str, answer: str) -> float:
    """1.0 if :func:`parse_arith_answer` of ``completion`` equals ``answer`` numerically, else 0.0.

    Never raises (bad input scores 0.0); linear time, no big-integer conversion.
    """
    try:
        parsed = parse_arith_answer(completion)
        expected = _normalize_answer(answer)
        return 1.0 if parsed is not None and parsed == expected else 0.0
    except Exception:  # noqa: BLE001 - a reward function must never raise
        return 0.0


def is_worked(completion: str) -> bool:
    """Whether a completion uses the worked style (contains ``|``)."""
    return isinstance(completion, str) and "|" in completion
