"""Tests of the TRL reward functions and DAPO's overlong penalty (`lgrpo_bench.tasks.rewards`)."""

from __future__ import annotations

import pytest

from lgrpo_bench.tasks.rewards import (
    RewardStats,
    WeightedRewardFunc,
    completion_text,
    make_reward_funcs,
    overlong_penalty,
)


def call_like_trl(func, completions, answers, log_metric=None):
    """The keyword call TRL 1.16's GRPOTrainer makes (dataset columns, trainer_state, log hooks included)."""
    n = len(completions)
    return func(
        prompts=["prompt"] * n,
        completions=completions,
        completion_ids=[[1, 2, 3]] * n,
        answer=answers,
        id=[str(i) for i in range(n)],
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=log_metric or (lambda name, value: None),
    )


# ----------------------------------------------------------------------------------------------------------
# make_reward_funcs
# ----------------------------------------------------------------------------------------------------------


def test_math_reward_funcs_names_and_weights():
    funcs = make_reward_funcs("math")
    assert [(f.func.__name__, f.weight) for f in funcs] == [("math_correctness", 1.0)]
    funcs = make_reward_funcs("math", format_weight=0.25)
    assert [(f.func.__name__, f.weight) for f in funcs] == [("math_correctness", 1.0), ("math_format", 0.25)]
    func, weight = funcs[0]  # a WeightedRewardFunc unpacks like a (func, weight) tuple
    assert isinstance(funcs[0], WeightedRewardFunc) and weight == 1.0 and callable(func)


def test_math_correctness_scores_like_score_math():
    correctness = make_reward_funcs("math")[0].func
    completions = [
        "... so \\boxed{\\dfrac{1}{2}}",
        "... so \\boxed{0.5}",
        "... so \\boxed{3}",
        "no answer",
        [{"role": "assistant", "content": "The answer is \\boxed{016}."}],
    ]
    rewards = call_like_trl(correctness, completions, ["\\frac12", "\\frac12", "\\frac12", "\\frac12", "16"])
    assert rewards == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert correctness.stats.snapshot() == {"calls": 5, "timeouts": 0}


def test_math_format_reward():
    format_reward = make_reward_funcs("math", format_weight=1.0)[1].func
    completions = ["\\boxed{5}", "\\boxed{}", "\\boxed{5} and \\boxed{", "5"]
    completions.append([{"role": "assistant", "content": "\\fbox{x}"}])
    assert call_like_trl(format_reward, completions, ["5"] * 5) == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_timeouts_are_counted_and_logged():
    correctness = make_reward_funcs("math", timeout_s=0.5)[0].func
    logged = []
    rewards = call_like_trl(
        correctness,
        ["\\boxed{\\sum_{k=1}^{10^{9}} k^{k}}", "\\boxed{5}"],
        ["5", "5"],
        log_metric=lambda name, value: logged.append((name, value)),
    )
    assert rewards == [0.0, 1.0]
    assert correctness.stats.timeouts == 1 and correctness.stats.calls == 2
    assert logged == [("math_correctness/timeouts", 1.0)]
    correctness.stats.reset()
    assert correctness.stats.snapshot() == {"calls": 0, "timeouts": 0}


def test_each_factory_call_has_its_own_stats():
    first, second = make_reward_funcs("math")[0].func, make_reward_funcs("math")[0].func
    call_like_trl(first, ["\\boxed{1}"], ["1"])
    assert first.stats.calls == 1 and second.stats.calls == 0


def test_missing_answer_column_is_a_clear_error():
    correctness = make_reward_funcs("math")[0].func
    with pytest.raises(ValueError, match="'answer'"):
        correctness(prompts=["p"], completions=["\\boxed{1}"], completion_ids=[[1]])


def test_arith_rewards():
    pytest.importorskip("lgrpo_bench.tasks.arith")
    correctness, format_reward = (f.func for f in make_reward_funcs("arith", format_weight=0.1))
    assert correctness.__name__ == "arith_correctness" and format_reward.__name__ == "arith_format"
    completions = ["=843", "7+6+0=13|5+8+1=14|4+3+1=08|=843", "=842", "843"]
    completions.append([{"role": "assistant", "content": "=0843"}])
    assert call_like_trl(correctness, completions, ["843"] * 5) == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert call_like_trl(format_reward, completions, ["843"] * 5) == [1.0, 1.0, 1.0, 0.0, 1.0]
    assert correctness.stats.calls == 5


@pytest.mark.parametrize(
    ("task", "kwargs", "message"),
    [
        ("gsm8k", {}, "unknown task 'gsm8k'.*math, arith"),
        ("math", {"timeout_s": 0}, "timeout_s"),
        ("math", {"format_weight": -1}, "format_weight"),
    ],
)
def test_bad_arguments(task, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_reward_funcs(task, **kwargs)


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "last"}], "last"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "b"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}], "xy"),
        ([], ""),
        (None, ""),
    ],
)
def test_completion_text(completion, text):
    assert completion_text(completion) == text


def test_reward_stats_is_thread_safe_counter():
    import threading

    stats = RewardStats()
    threads = [threading.Thread(target=lambda: [stats.add(1, 1) for _ in range(1000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.snapshot() == {"calls": 4000, "timeouts": 4000}


# ----------------------------------------------------------------------------------------------------------
# overlong_penalty (DAPO's soft overlong punishment), hand-computed
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "max_len", "buffer", "expected"),
    [
        # Lmax = 20, Lcache = 5: free up to 15, then -(L - 15)/5, and -1 beyond 20
        ([0, 15, 16, 18, 20, 21, 100], 20, 5, [0.0, 0.0, -0.2, -0.6, -1.0, -1.0, -1.0]),
        # DAPO's setting: Lmax = 20480, Lcache = 4096 -> free up to 16384
        ([16384, 16385, 18432, 20480, 20481], 20480, 4096, [0.0, -1 / 4096, -0.5, -1.0, -1.0]),
        # no buffer: a hard cliff after Lmax
        ([10, 11], 10, 0, [0.0, -1.0]),
        # the whole range is the buffer
        ([0, 1, 2, 4], 4, 4, [0.0, -0.25, -0.5, -1.0]),
        ([], 10, 2, []),
    ],
)
def test_overlong_penalty(lengths, max_len, buffer, expected):
    assert overlong_penalty(lengths, max_len, buffer) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("lengths", "max_len", "buffer"),
    [([1], 10, 11), ([1], 10, -1), ([1], 0, 0), ([-1], 10, 2)],
)
def test_overlong_penalty_rejects_bad_arguments(lengths, max_len, buffer):
    with pytest.raises(ValueError):
        overlong_penalty(lengths, max_len, buffer)


def test_reward_funcs_pickle_with_their_stats():
    import pickle

    correctness = make_reward_funcs("math", timeout_s=2.0)[0].func
    call_like_trl(correctness, ["\\boxed{1}"], ["1"])
    clone = pickle.loads(pickle.dumps(correctness))
    assert clone.__name__ == "math_correctness" and clone.timeout_s == 2.0
    assert clone.stats.snapshot() == {"calls": 1, "timeouts": 0}
    assert call_like_trl(clone, ["\\boxed{2}"], ["2"]) == [1.0] and clone.stats.calls == 2
