"""Tests of prompt templates (`lgrpo_bench.tasks.templates`) and problem loading (`lgrpo_bench.tasks.math_data`)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from lgrpo_bench.tasks import math_data
from lgrpo_bench.tasks.math_data import Problem, load_jsonl, load_math_train, math_level, problems_hash
from lgrpo_bench.tasks.templates import TEMPLATES, PromptTemplate, get_template, render_prompt

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LGRPO_DATA_DIR", REPO_ROOT / ".." / "shared" / "data" / "math")).resolve()
MATH_TRAIN = DATA_DIR / "math_train.jsonl"
needs_math_train = pytest.mark.skipif(
    not MATH_TRAIN.is_file(), reason=f"no {MATH_TRAIN}; set LGRPO_DATA_DIR to the folder holding math_train.jsonl"
)

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
PROBLEM = "What is $\\{1,2\\} \\cap \\{2\\}$? Use {braces}."


class ChatTokenizer:
    chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


class PlainTokenizer:
    chat_template = None


# ----------------------------------------------------------------------------------------------------------
# Templates
# ----------------------------------------------------------------------------------------------------------


def test_registry_holds_the_three_templates():
    assert {"qwen_math", "r1", "arith"} <= set(TEMPLATES)
    assert TEMPLATES["qwen_math"].system == QWEN_SYSTEM
    assert all(name == template.name for name, template in TEMPLATES.items())


def test_qwen_math_plain_string():
    assert render_prompt("qwen_math", PROBLEM) == QWEN_SYSTEM + "\n\n" + PROBLEM
    assert render_prompt("qwen_math", PROBLEM, PlainTokenizer()) == QWEN_SYSTEM + "\n\n" + PROBLEM


def test_qwen_math_conversational():
    assert render_prompt("qwen_math", PROBLEM, ChatTokenizer()) == [
        {"role": "system", "content": QWEN_SYSTEM},
        {"role": "user", "content": PROBLEM},
    ]


def test_r1_renders_think_and_boxed_instruction():
    system = TEMPLATES["r1"].system
    assert "<think> </think>" in system and "\\boxed{}" in system
    assert render_prompt("r1", PROBLEM) == system + "\n\n" + PROBLEM
    assert render_prompt("r1", PROBLEM, ChatTokenizer()) == [
        {"role": "system", "content": system},
        {"role": "user", "content": PROBLEM},
    ]


@pytest.mark.parametrize("tokenizer", [None, PlainTokenizer(), ChatTokenizer()])
def test_arith_is_raw_text_even_with_a_chat_template(tokenizer):
    assert render_prompt("arith", "457+386", tokenizer) == "<|user|>457+386<|assistant|>"


def test_arith_template_matches_the_arith_task():
    arith = pytest.importorskip("lgrpo_bench.tasks.arith")
    assert TEMPLATES["arith"].user_format == arith.ARITH_PROMPT_FORMAT


def test_template_object_without_system_turn():
    template = PromptTemplate(name="bare", system=None, user_format="Q: {problem}\nA:", use_chat_template=True)
    assert render_prompt(template, "1+1") == "Q: 1+1\nA:"
    assert render_prompt(template, "1+1", ChatTokenizer()) == [{"role": "user", "content": "Q: 1+1\nA:"}]
    assert get_template(template) is template


def test_unknown_template_names_the_choices():
    with pytest.raises(ValueError) as error:
        render_prompt("qwen-math", PROBLEM)
    message = str(error.value)
    assert "'qwen-math'" in message
    for name in ("arith", "qwen_math", "r1"):
        assert name in message


@pytest.mark.parametrize("user_format", ["no field", "{question}", "{problem} {extra}", "{problem"])
def test_template_needs_exactly_the_problem_field(user_format):
    with pytest.raises(ValueError, match="user_format"):
        PromptTemplate(name="bad", system=None, user_format=user_format, use_chat_template=False)


# ----------------------------------------------------------------------------------------------------------
# JSONL loading
# ----------------------------------------------------------------------------------------------------------


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_jsonl_round_trip(tmp_path):
    records = [
        {"id": "a/1", "problem": "1+1?", "answer": "2"},
        {"id": "a/2", "problem": "Solve $x^2=4$ — both roots", "answer": "2, -2",
         "level": "Level 3", "type": "Algebra"},
        {"id": 7, "problem": "Pick (A) or (B).", "answer": "A", "solution": "\\boxed{A}"},
    ]
    path = _write_lines(tmp_path / "set.jsonl", [json.dumps(r, ensure_ascii=False) for r in records] + [""])
    problems = load_jsonl(path)
    assert problems == [
        Problem(id="a/1", problem="1+1?", answer="2", extra={}),
        Problem(id="a/2", problem="Solve $x^2=4$ — both roots", answer="2, -2",
                extra={"level": "Level 3", "type": "Algebra"}),
        Problem(id="7", problem="Pick (A) or (B).", answer="A", extra={"solution": "\\boxed{A}"}),
    ]
    assert math_level(problems[1]) == 3 and math_level(problems[0]) is None


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "x", "problem": "p", "answer": ', "not valid JSON"),
        ('["x", "p", "a"]', "expected a JSON object"),
        ('{"id": "x", "problem": "p"}', "'answer'.*missing"),
        ('{"id": "x", "problem": "  ", "answer": "1"}', "'problem'"),
        ('{"id": "", "problem": "p", "answer": "1"}', "'id'"),
        ('{"id": "x", "problem": "p", "answer": 1.0}', "'answer'"),
        ('{"id": "first", "problem": "again", "answer": "1"}', "duplicate id 'first' \\(first on line 1\\)"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    good = json.dumps({"id": "first", "problem": "p", "answer": "1"})
    path = _write_lines(tmp_path / "bad.jsonl", [good, "", bad_line])
    with pytest.raises(ValueError, match=message) as error:
        load_jsonl(path)
    assert f"{path}:3:" in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        load_jsonl(tmp_path / "nothere.jsonl")


# ----------------------------------------------------------------------------------------------------------
# MATH train
# ----------------------------------------------------------------------------------------------------------


def _level_counts_by_hand() -> dict[str, int]:
    counts: dict[str, int] = {}
    with MATH_TRAIN.open(encoding="utf-8") as handle:
        for line in handle:
            level = json.loads(line)["level"]
            counts[level] = counts.get(level, 0) + 1
    return counts


@needs_math_train
@pytest.mark.parametrize("levels", [[1], [5], [1, 2], [3, 4, 5], [1, 2, 3, 4, 5]])
def test_level_filter_counts_on_math_train(levels):
    counts = _level_counts_by_hand()
    expected = sum(counts.get(f"Level {level}", 0) for level in levels)
    problems = load_math_train(DATA_DIR, levels=levels)
    assert len(problems) == expected
    assert {math_level(p) for p in problems} == set(levels)


@needs_math_train
def test_math_train_sources_and_known_counts():
    everything = load_math_train(MATH_TRAIN)
    assert len(everything) == 7498  # PROVENANCE.md: 7,500 minus the two empty \boxed{} records
    assert load_math_train(str(MATH_TRAIN)) == everything
    assert load_math_train(None, data_dir=DATA_DIR) == everything
    counts = _level_counts_by_hand()
    assert counts["Level ?"] == 2 and counts["Level 5"] == 2302 and counts["Level 1"] == 564
    assert len(load_math_train(DATA_DIR, levels=[1, 2, 3, 4, 5])) == 7498 - 2


def test_folder_without_math_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="math_train.jsonl"):
        load_math_train(tmp_path)


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_math_train(str(tmp_path / "missing.jsonl"))


def test_empty_level_list_is_an_error(tmp_path):
    path = _write_lines(tmp_path / "m.jsonl", [json.dumps({"id": "1", "problem": "p", "answer": "1", "level": 1})])
    with pytest.raises(ValueError, match="levels"):
        load_math_train(path, levels=[])


def test_hub_failure_tells_the_user_to_use_local_data(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError) as error:
        load_math_train(None)
    message = str(error.value)
    assert "EleutherAI/hendrycks_math" in message and "no network" in message
    assert "task.data" in message and "math_train.jsonl" in message


def test_hub_records_get_answers_from_the_last_box(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, subject, split):
        calls.append((name, subject, split))
        return [
            {"problem": f"{subject} one", "solution": "First \\boxed{1}, finally \\boxed{\\frac{1}{2}}.",
             "level": "Level 2", "type": "X"},
            {"problem": f"{subject} two", "solution": "no box at all", "level": "Level 5", "type": "X"},
        ]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_math_train("some/mirror", levels=[2])
    assert calls == [("some/mirror", subject, "train") for subject in math_data.MATH_SUBJECTS]
    assert len(problems) == len(math_data.MATH_SUBJECTS)
    assert problems[0] == Problem(
        id="hub/algebra/0",
        problem="algebra one",
        answer="\\frac{1}{2}",
        extra={"solution": "First \\boxed{1}, finally \\boxed{\\frac{1}{2}}.", "level": "Level 2", "type": "X"},
    )


# ----------------------------------------------------------------------------------------------------------
# problems_hash
# ----------------------------------------------------------------------------------------------------------


def test_problems_hash_contract():
    problems = [Problem("1", "p1", "a1", {"level": 1}), Problem("2", "p2", "a2")]
    by_hand = hashlib.sha256()
    for p in problems:
        by_hand.update(json.dumps([p.id, p.problem, p.answer], ensure_ascii=False).encode("utf-8") + b"\n")
    assert problems_hash(problems) == by_hand.hexdigest()[:16]
    assert len(problems_hash(problems)) == 16
    assert problems_hash([Problem("1", "p1", "a1"), Problem("2", "p2", "a2")]) == problems_hash(problems)  # extra
    assert problems_hash(problems[::-1]) != problems_hash(problems)
    assert problems_hash([Problem("1", "p1", "a1"), Problem("2", "p2", "a3")]) != problems_hash(problems)
    assert problems_hash([Problem("1", "p1a", "1")]) != problems_hash([Problem("1", "p1", "a1")])
    assert problems_hash([]) == hashlib.sha256(b"").hexdigest()[:16]
