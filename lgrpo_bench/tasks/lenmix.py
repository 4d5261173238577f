"""``lenmix``: a testbed where completion length varies widely and is tied to correctness in both directions.

Pure functions, no I/O, no torch. Measured design and numbers: ``docs/TESTBED.md``.

Why
    GRPO (1/|o_i| per response), DAPO (1/Σ|o| over the batch), Dr. GRPO (constant 1/L_max) and λ-GRPO differ
    only in how they weight a completion's tokens by its length. On ``arith`` the completions are 5-33 tokens
    and long means correct (worked), so the weightings hardly differ. Here length is informative in BOTH
    directions: long-and-correct (worked steps on hard problems), long-and-wrong (a "ramble" that restates
    the problem without computing anything, then guesses like a direct answer) and short (direct: right on
    easy problems, mostly wrong on hard ones). Under GRPO a long wrong completion's negative advantage is
    spread over more tokens (per-token push ∝ A_i/|o_i|), so long wrong completions are discouraged less than
    short wrong ones and the incorrect completions drift longer than under Dr. GRPO (arXiv 2503.20783, §3.1);
    λ-GRPO's λ (arXiv 2510.06870) should follow the sign of the within-group correlation of length and
    advantage.

Problems, prompt, split and reward: those of :mod:`lgrpo_bench.tasks.arith` (``a+b`` with n-digit operands,
``<|user|>457+386<|assistant|>``, :func:`~lgrpo_bench.tasks.arith.train_test_split`, reward 1.0 when the
number after the LAST ``=`` is the sum, :func:`score_lenmix` = :func:`~lgrpo_bench.tasks.arith.score_arith`).
The canonical held-out split (seed 0, digits (2, 3), 500 problems) is shared with ``arith``: the lenmix warm
starts continue from the arith warm starts, which never saw it.

Answer styles (``<|endoftext|>`` follows each; lengths in tokens of the tiny tokenizer, eos included, for
digits (2, 3))
    direct  ``=843``                                      (4-6 tokens)
    worked  ``7+6+0=13|5+8+1=14|4+3+1=08|=843``           (arith's worked style: 21-32 tokens)
    ramble  ``457+386;457+386;=843``                      (k restatements ``a+b;`` then the direct answer;
                                                           k = 1 … :data:`LENMIX_MAX_REPEATS`: 10-38 tokens)
A ramble holds no ``|`` and exactly one ``=`` (the answer's): it contains no computation, so it is at best as
accurate as a direct guess while as long as a worked answer. Measured on the tiny-s lenmix bases (T = 1): rambles
1-18 % correct, direct 4-34 %, worked 31-53 %; lengths 13.9-17.5 ± 10.4-11.7 tokens (docs/TESTBED.md).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

from lgrpo_bench.tasks.arith import (
    ArithProblem,
    _operands,
    direct_solution,
    score_arith,
    worked_solution,
)

__all__ = [
    "LENMIX_MAX_REPEATS",
    "LENMIX_STYLE_MIX",
    "STYLES",
    "classify_style",
    "ramble_solution",
    "render_style",
    "sample_style",
    "score_lenmix",
    "style_shares",
]

LENMIX_MAX_REPEATS = 4
"""Most restatements ``a+b;`` in a ramble (k is drawn uniformly from 1 … this)."""

STYLES = ("direct", "worked", "ramble", "other")
"""The style classes of :func:`classify_style`; ``other`` = none of the three forms."""

LENMIX_STYLE_MIX: Mapping[str, float] = {"direct": 0.4, "worked": 0.3, "ramble": 0.3}
"""The style mix of the lenmix warm start's continued SFT (probabilities, summing to 1)."""

_EOS = "<|endoftext|>"
_DIRECT = re.compile(r"=[0-9]+")
_WORKED = re.compile(r"(?:[0-9]\+[0-9]\+[0-9]=[0-9]{2}\|)+=[0-9]+")
_RAMBLE = re.compile(r"(?:[0-9]+\+[0-9]+;)+=[0-9]+")


def ramble_solution(p: ArithProblem | str, repeats: int, answer: str | None = None) -> str:
    """``(a+b;)×repeats`` then ``=answer``: e.g. ``457+386;457+386;=843`` for ``457+386`` with ``repeats=2``.

    ``answer`` defaults to the problem's sum (``p.answer``; required when ``p`` is a problem string).
    Raises ``ValueError`` for ``repeats < 1`` or a problem that is not ``a+b``.
    """
    if repeats < 1:
        raise ValueError(f"a ramble restates the problem at least once, got repeats={repeats}")
    text = p.problem if isinstance(p, ArithProblem) else p
    left, right = _operands(text)
    if answer is None:
        if not isinstance(p, ArithProblem):
            raise ValueError("answer is required when the problem is given as a string")
        answer = p.answer
    return f"{left}+{right};" * repeats + f"={answer}"


def render_style(p: ArithProblem, style: str, repeats: int = 1) -> str:
    """The correct completion of ``p`` in ``style`` (direct, worked, or ramble with ``repeats``), no eos."""
    if style == "direct":
        return direct_solution(p)
    if style == "worked":
        return worked_solution(p)
    if style == "ramble":
        return ramble_solution(p, repeats)
    raise ValueError(f"unknown style {style!r}; choose from direct, worked, ramble")


def sample_style(rng: random.Random, mix: Mapping[str, float] = LENMIX_STYLE_MIX,
                 max_repeats: int = LENMIX_MAX_REPEATS) -> tuple[str, int]:
    """Draw ``(style, repeats)``: style by ``mix`` (two ``rng`` draws, always), ``repeats`` uniform in
    ``1 … max_repeats`` (used by ramble only). Raises ``ValueError`` when ``mix`` names another style or does not
    sum to 1 (± 1e-9)."""
    unknown = set(mix) - {"direct", "worked", "ramble"}
    if unknown or abs(sum(mix.values()) - 1.0) > 1e-9 or any(v < 0 for v in mix.values()):
        raise ValueError(f"style mix must give non-negative probabilities of direct/worked/ramble summing to 1, "
                         f"got {dict(mix)}")
    u, repeats = rng.random(), rng.randint(1, max_repeats)
    cumulative = 0.0
    names = [name for name in ("direct", "worked", "ramble") if mix.get(name, 0.0) > 0]
    for name in names:
        cumulative += mix[name]
        if u < cumulative:
            return name, repeats
    return names[-1], repeats


def classify_style(completion: str) -> str:
    """``direct`` / ``worked`` / ``ramble`` when the completion (eos and surrounding whitespace removed) is exactly
    of that form, whatever its numbers; else ``other``.

    direct ``=D+``; worked ``(d+d+d=dd|)+=D+``; ramble ``(D+ + D+;)+=D+`` (D = a digit). Correctness is not
    checked: ``=999`` is direct even when wrong.
    """
    if not isinstance(completion, str):
        return "other"
    text = completion.split(_EOS, 1)[0].strip()
    if _DIRECT.fullmatch(text):
        return "direct"
    if _WORKED.fullmatch(text):
        return "worked"
    if _RAMBLE.fullmatch(text):
        return "ramble"
    return "other"


def style_shares(completions: Sequence[str]) -> dict[str, float]:
    """Share of each of :data:`STYLES` among ``completions`` (each 0.0 for none; the shares sum to 1 otherwise)."""
    counts = dict.fromkeys(STYLES, 0)
    for text in completions:
        counts[classify_style(text)] += 1
    n = len(completions)
    return {style: (count / n if n else 0.0) for style, count in counts.items()}


def score_lenmix(completion: str, answer: str) -> float:
    """1.0 when the number after the LAST ``=`` equals ``answer`` (:func:`~lgrpo_bench.tasks.arith.score_arith`)."""
    return score_arith(completion, answer)
