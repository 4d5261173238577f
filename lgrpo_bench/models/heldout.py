"""Held-out evaluation of a policy during its making: greedy accuracy (one function for the warm-start build and
for ``train/heldout_acc`` during RL) and sampled-group statistics at T = 1.

:func:`greedy_accuracy_of` is THE greedy held-out accuracy: the tiny warm-start build (on arith problems, via
:func:`greedy_accuracy`) and :class:`lgrpo_bench.training.callbacks.HeldoutAccuracyCallback` (any task) both call
it. The evaluation harness (``lgrpo-bench eval``, lm-eval's ``arith`` task) decodes on its own path; a test
checks that it agrees with a direct greedy decode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lgrpo_bench.models.generation import generate_completions
from lgrpo_bench.tasks.arith import (
    ARITH_DEFAULT_DIGITS,
    ARITH_N_TEST,
    ARITH_SPLIT_SEED,
    ArithProblem,
    is_worked,
    n_digits,
    render_arith_prompt,
    score_arith,
    train_test_split,
)

__all__ = [
    "GROUP_SIZE",
    "MAX_NEW_TOKENS",
    "SMALL_MODEL_PARAMS",
    "GreedyOutcome",
    "greedy_accuracy",
    "greedy_accuracy_of",
    "heldout_problems",
    "sampled_group_stats",
    "torch_threads",
]

SMALL_MODEL_PARAMS = 20_000_000
"""Below this size a CPU model is evaluated single-threaded (see :func:`_eval_threads`)."""
GROUP_SIZE = 8
MAX_NEW_TOKENS = 40
"""Enough for the longest worked 3-digit completion (33 tokens + eos)."""

ScoreFn = Callable[[str, str], float]


def heldout_problems(n: int = ARITH_N_TEST) -> list[ArithProblem]:
    """The first ``n`` problems of the canonical held-out split (never seen by any warm start)."""
    if n > ARITH_N_TEST:
        raise ValueError(f"the canonical held-out split has {ARITH_N_TEST} problems, asked for {n}")
    _, test = train_test_split(ARITH_SPLIT_SEED, 0, ARITH_N_TEST, ARITH_DEFAULT_DIGITS)
    return test[:n]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (unchanged when ``n`` is None), then restore."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _eval_threads(model: torch.nn.Module, num_threads: int | None) -> int | None:
    """Thread count for evaluation: explicit ``num_threads``, else 1 for a small model on the CPU.

    Generation with a tiny model is a long chain of tiny ops; on a 2-core machine two OpenMP threads made
    it ~10x slower than one (they spin against each other and against other processes).
    """
    if num_threads is not None:
        return num_threads
    first = next(model.parameters())
    if first.device.type == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
        return 1
    return None


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


@dataclass(frozen=True)
class GreedyOutcome:
    """Greedy completions of a held-out set and their scores; ``acc`` is the mean reward."""

    acc: float
    rewards: list[float]
    texts: list[str]
    lengths: list[int]

    @property
    def mean_length(self) -> float:
        """Mean completion length in tokens (eos included)."""
        return _mean([float(n) for n in self.lengths])


def greedy_accuracy_of(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answers: Sequence[str],
    score: ScoreFn,
    *,
    max_new_tokens: int,
    batch_size: int = 128,
    num_threads: int | None = None,
) -> GreedyOutcome:
    """``acc = (1/n) Σ_i score(greedy_completion(prompt_i), answer_i)`` over rendered ``prompts``.

    Batched greedy decoding with left padding (:func:`~lgrpo_bench.models.generation.generate_completions`);
    the model is put in eval mode for the decode and its training flag restored. ``num_threads`` (default: 1
    for a small CPU model, else unchanged) applies during generation only. ``acc`` is NaN for no prompts.
    """
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch_threads(_eval_threads(model, num_threads)):
            completions = generate_completions(model, tokenizer, list(prompts), batch_size=batch_size,
                                               max_new_tokens=max_new_tokens)
    finally:
        model.train(was_training)
    rewards = [float(score(text, answer)) for text, answer in zip(completions.texts, answers)]
    return GreedyOutcome(_mean(rewards), rewards, completions.texts, completions.lengths)


def greedy_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[ArithProblem],
    *,
    batch_size: int = 256,
    max_new_tokens: int = MAX_NEW_TOKENS,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Greedy accuracy of ``model`` on arith ``problems`` (:func:`greedy_accuracy_of`, arith template and reward).

    Returns ``acc``, ``worked_share`` (completions containing ``|``), ``mean_length`` (completion tokens,
    eos included), ``n``, and ``acc_<d>digit`` for each operand length ``d`` present.
    """
    if not problems:
        raise ValueError("greedy_accuracy needs at least one problem")
    outcome = greedy_accuracy_of(model, tokenizer, [render_arith_prompt(p) for p in problems],
                                 [p.answer for p in problems], score_arith, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size, num_threads=num_threads)
    result: dict[str, Any] = {
        "acc": outcome.acc,
        "worked_share": _mean([float(is_worked(t)) for t in outcome.texts]),
        "mean_length": outcome.mean_length,
        "n": len(problems),
    }
    for d in sorted({n_digits(p) for p in problems}):
        result[f"acc_{d}digit"] = _mean([r for r, p in zip(outcome.rewards, problems) if n_digits(p) == d])
    return result


def sampled_group_stats(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[ArithProblem],
    *,
    group_size: int = GROUP_SIZE,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 512,
    max_new_tokens: int = MAX_NEW_TOKENS,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Statistics of ``group_size`` samples per problem at ``temperature`` (top-k off, top-p 1).

    Returns ``acc`` (mean reward over all samples), ``worked_share``, ``acc_worked`` / ``acc_direct``
    (accuracy among worked / direct samples, NaN if none), ``mixed_group_fraction`` (groups whose rewards
    are not all equal), ``all_correct_fraction``, ``all_wrong_fraction``, ``mean_length``, ``n_prompts``,
    ``group_size``. Sampling is seeded by ``seed``; the caller's global RNG state is preserved.
    ``num_threads`` as in :func:`greedy_accuracy_of`.
    """
    if not problems:
        raise ValueError("sampled_group_stats needs at least one problem")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    prompts = [render_arith_prompt(p) for p in problems for _ in range(group_size)]
    was_training = model.training
    model.eval()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with (
            torch.inference_mode(),
            torch.random.fork_rng(devices=devices),
            torch_threads(_eval_threads(model, num_threads)),
        ):
            torch.manual_seed(seed)
            completions = generate_completions(
                model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                do_sample=True, temperature=temperature,
            )
    finally:
        model.train(was_training)
    texts, lengths = completions.texts, completions.lengths
    answers = [p.answer for p in problems for _ in range(group_size)]
    rewards = [score_arith(t, a) for t, a in zip(texts, answers)]
    worked = [is_worked(t) for t in texts]
    groups = [rewards[i : i + group_size] for i in range(0, len(rewards), group_size)]
    return {
        "acc": _mean(rewards),
        "worked_share": _mean([float(w) for w in worked]),
        "acc_worked": _mean([r for r, w in zip(rewards, worked) if w]),
        "acc_direct": _mean([r for r, w in zip(rewards, worked) if not w]),
        "mixed_group_fraction": _mean([float(len(set(g)) > 1) for g in groups]),
        "all_correct_fraction": _mean([float(min(g) == 1.0) for g in groups]),
        "all_wrong_fraction": _mean([float(max(g) == 0.0) for g in groups]),
        "mean_length": _mean([float(n) for n in lengths]),
        "n_prompts": len(problems),
        "group_size": group_size,
    }
