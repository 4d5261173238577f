"""The arith task: generation, splits, solution formats, answer parsing and scoring."""

from __future__ import annotations

import time

import pytest

from lgrpo_bench.tasks.arith import (
    ARITH_PROMPT_FORMAT,
    ArithProblem,
    direct_solution,
    generate_problems,
    is_worked,
    n_digits,
    parse_arith_answer,
    render_arith_prompt,
    score_arith,
    train_test_split,
    worked_solution,
)


def _p(text: str) -> ArithProblem:
    a, b = text.split("+")
    return ArithProblem(id="t", problem=text, answer=str(int(a) + int(b)))


def test_generation_is_deterministic_per_seed_and_prefix_stable():
    first = generate_problems(200, seed=7)
    assert first == generate_problems(200, seed=7)
    assert first != generate_problems(200, seed=8)
    assert generate_problems(50, seed=7) == first[:50]


def test_problems_are_well_formed_with_requested_digits():
    problems = generate_problems(2000, seed=1)
    lengths = [n_digits(p) for p in problems]
    assert set(lengths) == {2, 3}
    assert 0.4 < lengths.count(2) / len(lengths) < 0.6
    for p in problems:
        a, b = p.problem.split("+")
        assert len(a) == len(b) and a[0] != "0" and b[0] != "0"
        assert p.answer == str(int(a) + int(b))
    assert {n_digits(p) for p in generate_problems(100, seed=1, digits=(4,))} == {4}
    with pytest.raises(ValueError):
        generate_problems(10, seed=0, digits=())
    with pytest.raises(ValueError):
        generate_problems(82, seed=0, digits=(1,), unique=True)  # only 81 one-digit problems


def test_split_is_disjoint_unique_and_deterministic():
    train, test = train_test_split(seed=3, n_train=20_000, n_test=500, digits=(2, 3))
    assert len(train) == 20_000 and len(test) == 500
    test_strings = {p.problem for p in test}
    assert len(test_strings) == 500
    assert not test_strings & {p.problem for p in train}
    again_train, again_test = train_test_split(seed=3, n_train=100, n_test=500, digits=(2, 3))
    assert again_test == test and again_train == train[:100]
    assert train_test_split(seed=4, n_train=10, n_test=500, digits=(2, 3))[1] != test


def test_prompt_template():
    assert ARITH_PROMPT_FORMAT == "<|user|>{problem}<|assistant|>"
    assert render_arith_prompt(_p("457+386")) == "<|user|>457+386<|assistant|>"
    assert render_arith_prompt("12+34") == "<|user|>12+34<|assistant|>"


@pytest.mark.parametrize(
    ("problem", "worked"),
    [
        ("457+386", "7+6+0=13|5+8+1=14|4+3+1=08|=843"),
        ("12+34", "2+4+0=06|1+3+0=04|=46"),
        ("57+68", "7+8+0=15|5+6+1=12|=125"),  # carry out of the last column shows only in the answer
        ("999+999", "9+9+0=18|9+9+1=19|9+9+1=19|=1998"),
        ("100+200", "0+0+0=00|0+0+0=00|1+2+0=03|=300"),
    ],
)
def test_worked_and_direct_solutions(problem, worked):
    p = _p(problem)
    assert worked_solution(p) == worked
    assert direct_solution(p) == f"={p.answer}"
    assert is_worked(worked_solution(p)) and not is_worked(direct_solution(p))
    assert score_arith(worked_solution(p), p.answer) == 1.0
    assert score_arith(direct_solution(p), p.answer) == 1.0


@pytest.mark.parametrize(
    ("completion", "parsed"),
    [
        ("=843", "843"),
        ("=0843", "843"),
        ("=000", "0"),
        ("7+6+0=13|5+8+1=14|4+3+1=08|=843", "843"),
        ("=843<|endoftext|>", "843"),
        ("=843abc=12", "12"),
        ("=843 junk after", "843"),
        ("843", None),
        ("", None),
        ("=", None),
        ("=x843", None),
        ("=12=", None),
    ],
)
def test_parse_arith_answer(completion, parsed):
    assert parse_arith_answer(completion) == parsed


def test_score_arith():
    assert score_arith("=0843", "843") == 1.0
    assert score_arith("=843", "0843") == 1.0
    assert score_arith("=842", "843") == 0.0
    assert score_arith("843", "843") == 0.0
    assert score_arith("=843|=844", "843") == 0.0  # the LAST '=' counts
    assert score_arith(None, "843") == 0.0  # type: ignore[arg-type]
    assert score_arith("=843", None) == 0.0  # type: ignore[arg-type]
    assert score_arith("=843", "abc") == 0.0


def test_score_is_bounded_on_100kb_inputs():
    big_digits = "=" + "7" * 100_000
    big_junk = "1+2=3|" * 17_000
    many_eq = "=" * 100_000
    started = time.perf_counter()
    assert score_arith(big_digits, "7" * 100_000) == 1.0  # no int() conversion limit
    assert score_arith(big_junk, "3") == 1.0
    assert score_arith(big_junk, "4") == 0.0
    assert score_arith(many_eq, "3") == 0.0
    assert parse_arith_answer(big_junk + "=12") == "12"
    assert time.perf_counter() - started < 0.5


def test_is_worked():
    assert is_worked("1+2+0=03|=3")
    assert not is_worked("=3")
    assert not is_worked(None)  # type: ignore[arg-type]
