r"""Reward functions for TRL's ``GRPOTrainer``, and DAPO's soft overlong penalty.

TRL 1.16 calls each reward function as ``func(prompts=..., completions=..., completion_ids=...,
**dataset_columns, trainer_state=..., log_extra=..., log_metric=...)`` and logs it under ``func.__name__``.
A completion is a string, or for conversational prompts a list of messages whose last one holds the
generated text. Our functions read the dataset column ``answer`` and return one float per completion.

:func:`make_reward_funcs` returns a list of :class:`WeightedRewardFunc` ``(func, weight)`` pairs; hand
``[r.func for r in ...]`` to ``reward_funcs`` and ``[r.weight for r in ...]`` to ``GRPOConfig.reward_weights``
(TRL sums ``weight * reward`` over functions).

* ``math_correctness`` / ``arith_correctness`` (weight 1): 1.0 for a correct answer, else 0.0, from
  :func:`lgrpo_bench.tasks.scoring.score_math` (the same scorer evaluation uses) or
  :func:`lgrpo_bench.tasks.arith.score_arith`. A verification that times out scores 0.0 and is counted.
* ``math_format`` / ``arith_format`` (weight ``format_weight``, only when it is > 0): 1.0 when the answer
  can be located at all (math: a closed, non-empty ``\boxed{}``; arith: digits after a last ``=``), else 0.0.

Each function is a picklable callable object carrying ``func.__name__`` and ``func.stats`` (:class:`RewardStats`:
completions scored, timeouts); when TRL passes ``log_metric`` the math correctness function logs
``math_correctness/timeouts`` (count in the batch) every call, so the trainer's logs show timeouts per step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lgrpo_bench.tasks.scoring import extract_boxed, score_math

__all__ = [
    "ArithCorrectness",
    "ArithFormat",
    "MathCorrectness",
    "MathFormat",
    "RewardStats",
    "WeightedRewardFunc",
    "completion_text",
    "make_reward_funcs",
    "overlong_penalty",
]

TASKS = ("math", "arith", "lenmix")


@dataclass
class RewardStats:
    """Running totals of one reward function (thread-safe).

    ``calls``: completions scored; ``timeouts``: of those, how many hit the scorer's time bound.
    """

    calls: int = 0
    timeouts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, calls: int, timeouts: int = 0) -> None:
        with self._lock:
            self.calls += calls
            self.timeouts += timeouts

    def snapshot(self) -> dict[str, int]:
        """``{"calls": ..., "timeouts": ...}`` read atomically."""
        with self._lock:
            return {"calls": self.calls, "timeouts": self.timeouts}

    def reset(self) -> None:
        with self._lock:
            self.calls = 0
            self.timeouts = 0

    def __getstate__(self) -> dict[str, int]:
        return self.snapshot()

    def __setstate__(self, state: dict[str, int]) -> None:
        self.calls, self.timeouts = state["calls"], state["timeouts"]
        self._lock = threading.Lock()


class WeightedRewardFunc(NamedTuple):
    """A reward function and the weight to give it in ``GRPOConfig.reward_weights``."""

    func: Callable[..., list[float]]
    weight: float


def completion_text(completion: Any) -> str:
    """The generated text of a TRL completion: the string itself, or the last message's ``content`` of a
    conversational completion (text parts joined when the content is a list of parts). Other input: ``""``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion:
        last = completion[-1]
        content = last.get("content") if isinstance(last, dict) else None
        if isinstance(content, str):
            return content
        if isinstance(content, Sequence):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _answers(answer: Sequence[Any] | None, n_completions: int, name: str) -> Sequence[Any]:
    if answer is None:
        raise ValueError(
            f"reward {name!r} needs the dataset column 'answer' (the reference answer of each prompt); "
            "add it to the training dataset"
        )
    if len(answer) != n_completions:
        raise ValueError(f"reward {name!r}: {len(answer)} answers for {n_completions} completions")
    return answer


class _RewardFunc:
    """Base of our reward functions: a picklable callable with the ``__name__`` TRL logs and ``stats``."""

    __name__ = "reward"

    def __init__(self) -> None:
        self.stats = RewardStats()

    def __repr__(self) -> str:
        return f"<reward {self.__name__} {self.stats.snapshot()}>"


class MathCorrectness(_RewardFunc):
    """1.0 if :func:`~lgrpo_bench.tasks.scoring.score_math` says the completion's answer equals ``answer``."""

    __name__ = "math_correctness"

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def __call__(self, completions, answer=None, log_metric=None, **_: Any) -> list[float]:
        golds = _answers(answer, len(completions), self.__name__)
        rewards, timeouts = [], 0
        for completion, gold in zip(completions, golds):
            result = score_math(completion_text(completion), gold, timeout_s=self.timeout_s)
            timeouts += result.timed_out
            rewards.append(1.0 if result.correct else 0.0)
        self.stats.add(len(rewards), timeouts)
        if log_metric is not None:
            log_metric(f"{self.__name__}/timeouts", float(timeouts))
        return rewards


class MathFormat(_RewardFunc):
    r"""1.0 if the completion's last box is closed and non-empty (``\boxed{...}``), else 0.0."""

    __name__ = "math_format"

    def __call__(self, completions, **_: Any) -> list[float]:
        rewards = []
        for completion in completions:
            boxed = extract_boxed(completion_text(completion))
            rewards.append(1.0 if boxed is not None and boxed.strip() else 0.0)
        self.stats.add(len(rewards))
        return rewards


class ArithCorrectness(_RewardFunc):
    """:func:`~lgrpo_bench.tasks.arith.score_arith`: 1.0 if the number after the last ``=`` equals ``answer``."""

    __name__ = "arith_correctness"

    def __call__(self, completions, answer=None, **_: Any) -> list[float]:
        from lgrpo_bench.tasks.arith import score_arith

        golds = _answers(answer, len(completions), self.__name__)
        rewards = [float(score_arith(completion_text(c), str(gold))) for c, gold in zip(completions, golds)]
        self.stats.add(len(rewards))
        return rewards


class ArithFormat(_RewardFunc):
    """1.0 if the completion has digits right after its last ``=``, else 0.0."""

    __name__ = "arith_format"

    def __call__(self, completions, **_: Any) -> list[float]:
        from lgrpo_bench.tasks.arith import parse_arith_answer

        rewards = [0.0 if parse_arith_answer(completion_text(c)) is None else 1.0 for c in completions]
        self.stats.add(len(rewards))
        return rewards


def make_reward_funcs(task: str, *, timeout_s: float = 5.0, format_weight: float = 0.0) -> list[WeightedRewardFunc]:
    """Reward functions for ``task`` (``"math"``, ``"arith"`` or ``"lenmix"``) with their weights.

    lenmix scores like arith (:func:`~lgrpo_bench.tasks.lenmix.score_lenmix` is ``score_arith``), so it gets the
    arith functions, names included.

    Returns ``[(correctness, 1.0)]``, plus ``(format, format_weight)`` when ``format_weight > 0``.
    ``timeout_s`` bounds one ``score_math`` call (math only). Each call makes fresh functions with their own
    ``func.stats``. Raises ``ValueError`` for an unknown task, a non-positive ``timeout_s`` or a negative
    ``format_weight``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; reward functions exist for {', '.join(TASKS)}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
    if not format_weight >= 0:
        raise ValueError(f"format_weight must be >= 0 (0 switches the format reward off), got {format_weight!r}")
    if task == "math":
        correctness, format_reward = MathCorrectness(timeout_s), MathFormat()
    else:
        correctness, format_reward = ArithCorrectness(), ArithFormat()
    funcs = [WeightedRewardFunc(correctness, 1.0)]
    if format_weight > 0:
        funcs.append(WeightedRewardFunc(format_reward, float(format_weight)))
    return funcs


def overlong_penalty(lengths: Sequence[int], max_completion_length: int, buffer_tokens: int) -> list[float]:
    r"""DAPO's "soft overlong punishment" (Yu et al. 2025), one value per completion length ``L``.

    With :math:`L_{max}` = ``max_completion_length`` and :math:`L_{cache}` = ``buffer_tokens``:

    .. math::
        R(L) = 0                                  \text{ if } L \le L_{max} - L_{cache}
        R(L) = \frac{(L_{max} - L_{cache}) - L}{L_{cache}}  \text{ if } L_{max} - L_{cache} < L \le L_{max}
        R(L) = -1                                 \text{ if } L > L_{max}

    It is added to the task reward. ``buffer_tokens = 0`` gives 0 up to :math:`L_{max}` and -1 beyond.
    Raises ``ValueError`` for negative lengths, ``max_completion_length < 1`` or ``buffer_tokens`` outside
    ``[0, max_completion_length]``.
    """
    if max_completion_length < 1:
        raise ValueError(f"max_completion_length must be >= 1 token, got {max_completion_length}")
    if not 0 <= buffer_tokens <= max_completion_length:
        raise ValueError(
            f"buffer_tokens must be between 0 and max_completion_length ({max_completion_length}), got {buffer_tokens}"
        )
    penalty_start = max_completion_length - buffer_tokens
    penalties = []
    for length in lengths:
        if length < 0:
            raise ValueError(f"completion lengths must be >= 0 tokens, got {length}")
        if length <= penalty_start:
            penalties.append(0.0)
        elif length <= max_completion_length:
            penalties.append((penalty_start - length) / buffer_tokens)
        else:
            penalties.append(-1.0)
    return penalties
