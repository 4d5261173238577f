"""The lenmix task (lgrpo_bench.tasks.lenmix): styles rendered, classified and scored, by hand."""

from __future__ import annotations

import random

import pytest

from lgrpo_bench.tasks.arith import ArithProblem
from lgrpo_bench.tasks.lenmix import (
    STYLES,
    classify_style,
    ramble_solution,
    render_style,
    sample_style,
    score_lenmix,
    style_shares,
)

P = ArithProblem(id="t-0", problem="457+386", answer="843")


def test_ramble_restates_the_problem_repeats_times_then_answers():
    assert ramble_solution(P, 1) == "457+386;=843"
    assert ramble_solution(P, 3) == "457+386;457+386;457+386;=843"
    assert ramble_solution("12+34", 2, answer="46") == "12+34;12+34;=46"
    with pytest.raises(ValueError, match="at least once"):
        ramble_solution(P, 0)
    with pytest.raises(ValueError, match="answer is required"):
        ramble_solution("12+34", 1)


def test_render_style_gives_each_correct_completion():
    assert render_style(P, "direct") == "=843"
    assert render_style(P, "worked") == "7+6+0=13|5+8+1=14|4+3+1=08|=843"
    assert render_style(P, "ramble", 2) == "457+386;457+386;=843"
    with pytest.raises(ValueError, match="unknown style"):
        render_style(P, "verbose")


@pytest.mark.parametrize("text, style", [
    ("=843", "direct"),
    ("=999", "direct"),  # wrong but direct
    ("=843<|endoftext|>", "direct"),
    (" =843 ", "direct"),
    ("7+6+0=13|5+8+1=14|4+3+1=08|=843", "worked"),
    ("5+7+0=12|=12", "worked"),
    ("457+386;=843", "ramble"),
    ("457+386;457+386;457+386;=843", "ramble"),
    ("1+2;=3", "ramble"),  # one-digit "operands" are a ramble too: the form, not the numbers
    ("", "other"),
    ("=", "other"),
    ("843", "other"),
    ("457+386;", "other"),            # no answer
    ("457+386=843", "other"),         # a sum without ';' is not a ramble
    ("7+6+0=13|457+386;=843", "other"),  # mixed forms
    ("7+6=13|=843", "other"),         # a worked step needs the carry-in
    ("=843=844", "other"),
])
def test_classify_style_by_hand(text, style):
    assert classify_style(text) == style


def test_classify_style_of_non_text_is_other():
    assert classify_style(None) == "other"  # type: ignore[arg-type]


def test_score_reads_the_number_after_the_last_equals_sign():
    assert score_lenmix("457+386;457+386;=843", "843") == 1.0
    assert score_lenmix("457+386;=844", "843") == 0.0
    assert score_lenmix("7+6+0=13|5+8+1=14|4+3+1=08|=843", "843") == 1.0
    assert score_lenmix("457+386;", "843") == 0.0


def test_style_shares_by_hand():
    shares = style_shares(["=1", "=2", "1+1;=2", "x"])
    assert shares == {"direct": 0.5, "worked": 0.0, "ramble": 0.25, "other": 0.25}
    assert style_shares([]) == dict.fromkeys(STYLES, 0.0)


def test_sample_style_follows_the_mix_and_repeats_range():
    rng = random.Random(0)
    draws = [sample_style(rng, {"direct": 0.5, "worked": 0.0, "ramble": 0.5}, max_repeats=3) for _ in range(4000)]
    styles = [s for s, _ in draws]
    assert styles.count("worked") == 0
    assert abs(styles.count("direct") / 4000 - 0.5) < 0.03
    assert {k for _, k in draws} == {1, 2, 3}
    assert sample_style(random.Random(1), {"ramble": 1.0})[0] == "ramble"
    with pytest.raises(ValueError, match="summing to 1"):
        sample_style(rng, {"direct": 0.5})
    with pytest.raises(ValueError, match="summing to 1"):
        sample_style(rng, {"direct": 0.5, "verbose": 0.5})


# ---------------------------------------------------------------------------------------- wiring and base recipe


def test_lenmix_config_uses_the_arith_template_reward_and_split():
    from lgrpo_bench.config import RunConfig
    from lgrpo_bench.tasks.rewards import make_reward_funcs
    from lgrpo_bench.training.data import build_task_data

    lenmix = RunConfig.model_validate({"task": {"name": "lenmix", "num_train_problems": 20},
                                       "train": {"heldout_size": 10}})
    arith = RunConfig.model_validate({"task": {"name": "arith", "num_train_problems": 20},
                                      "train": {"heldout_size": 10}})
    assert lenmix.resolved_template == "arith"
    funcs = make_reward_funcs("lenmix")
    assert funcs[0].func(["457+386;=843", "=842"], answer=["843", "843"]) == [1.0, 0.0]
    a, b = build_task_data(lenmix), build_task_data(arith)
    assert a.heldout_prompts == b.heldout_prompts and a.heldout_answers == b.heldout_answers
    assert a.train["prompt"] == b.train["prompt"]
    assert a.heldout_prompts[0].startswith("<|user|>") and a.heldout_prompts[0].endswith("<|assistant|>")


def test_lenmix_run_resolves_the_lenmix_base(monkeypatch, tmp_path):
    from lgrpo_bench.models import loading, testbed
    from lgrpo_bench.models.tiny import TinyBuildResult

    calls = []

    def fake(preset, task, **kwargs):
        calls.append((preset, task, kwargs["seed"]))
        return TinyBuildResult(path=tmp_path / "base", metrics={"n_params": 201792})

    monkeypatch.setattr(testbed, "build_tiny_for_task", fake)
    resolved = loading.resolve_model("tiny-s", cache_dir=tmp_path, seed=1, task="lenmix")
    assert calls == [("tiny-s", "lenmix", 1)] and resolved.name_or_path == str(tmp_path / "base")


def test_build_tiny_for_task_refuses_unknown_tasks():
    from lgrpo_bench.models.testbed import build_tiny_for_task

    with pytest.raises(ValueError, match="no tiny warm start for task 'math'"):
        build_tiny_for_task("tiny-s", "math")


def test_lenmix_base_key_and_recipe_by_hand():
    from lgrpo_bench.models.testbed import LENMIX_RECIPE, LenmixRecipe, _lr_factor, lenmix_cache_key

    key = lenmix_cache_key("tiny-s-seed0-steps3000-v2-4030f654")
    assert key == f"tiny-s-seed0-steps3000-v2-4030f654-lenmix-v1-{LENMIX_RECIPE.digest()}"
    assert LenmixRecipe(steps=301).digest() != LENMIX_RECIPE.digest()
    recipe = LenmixRecipe(steps=120, warmup_steps=20, final_lr_fraction=0.1)
    assert _lr_factor(0, recipe) == pytest.approx(1 / 20)
    assert _lr_factor(19, recipe) == pytest.approx(1.0)
    assert _lr_factor(20, recipe) == pytest.approx(1.0)      # cosine starts at 1
    assert _lr_factor(70, recipe) == pytest.approx(0.55)     # halfway: 0.1 + 0.9 · 0.5
    assert _lr_factor(120, recipe) == pytest.approx(0.1)


def test_lenmix_sft_examples_never_hold_heldout_or_validation_problems():
    from lgrpo_bench.models.heldout import heldout_problems
    from lgrpo_bench.models.testbed import LenmixRecipe, lenmix_sft_examples
    from lgrpo_bench.models.tokenizer import make_tokenizer
    from lgrpo_bench.tasks.arith import validation_problems

    tokenizer = make_tokenizer()
    examples, prompt_lens, styles = lenmix_sft_examples(tokenizer, LenmixRecipe(steps=10, batch_size=64), seed=0)
    assert len(examples) == len(styles) == 640
    texts = [tokenizer.decode(e[:n]) for e, n in zip(examples, prompt_lens)]
    problems = {t.removeprefix("<|user|>").removesuffix("<|assistant|>") for t in texts}
    assert not problems & {p.problem for p in heldout_problems()}
    assert not problems & {p.problem for p in validation_problems()}
    for share, style in ((0.4, "direct"), (0.3, "worked"), (0.3, "ramble")):
        assert abs(styles.count(style) / 640 - share) < 0.06
    completion = tokenizer.decode(examples[0][prompt_lens[0]:])
    assert completion.endswith("<|endoftext|>") and classify_style(completion) == styles[0]


def test_lenmix_base_is_built_once_cached_verified_and_tied_to_its_parent(tmp_path):
    import json

    from lgrpo_bench.models.testbed import LenmixRecipe, build_tiny_for_task
    from lgrpo_bench.models.tiny import FILES_KEY, MODEL_FILE, build_tiny

    recipe = LenmixRecipe(steps=4, warmup_steps=2, batch_size=8)
    small = {"recipe": recipe, "eval_problems": 16, "sampled_prompts": 4, "sft_steps": 20}
    lines: list[str] = []
    built = build_tiny_for_task("tiny-s", "lenmix", cache_dir=tmp_path, seed=0, emit=lines.append, **small)
    parent = build_tiny("tiny-s", cache_dir=tmp_path, seed=0, sft_steps=20)
    assert not built.cached and built.path.name.startswith(parent.path.name + "-lenmix-v1-")
    assert built.path.name.endswith("-eval16x4")
    m = built.metrics
    assert m["parent_model_hash"] == parent.model_hash != built.model_hash
    assert m["parent_key"] == parent.path.name and m["task"] == "lenmix" and m["sft_steps"] == 4
    assert set(m[FILES_KEY]) >= {"config.json", MODEL_FILE, "tokenizer.json", "tokenizer_config.json"}
    assert 0 <= m["greedy_acc"] <= 1 and m["sampled_n_prompts"] == 4
    assert sum(m[f"sampled_share_{s}"] for s in STYLES) == pytest.approx(1.0)
    assert any("lenmix base tiny-s seed 0" in line for line in lines)

    again = build_tiny_for_task("tiny-s", "lenmix", cache_dir=tmp_path, seed=0, **small)
    assert again.cached and again.path == built.path and again.model_hash == built.model_hash
    assert (built.metrics["source"], again.metrics["source"]) == ("built", "cache")

    # a base whose recorded parent is not the parent found now is rebuilt (same weights: same parent, same seed)
    record = json.loads((built.path / "metrics.json").read_text())
    record["parent_model_hash"] = "0" * 64
    (built.path / "metrics.json").write_text(json.dumps(record))
    lines.clear()
    rebuilt = build_tiny_for_task("tiny-s", "lenmix", cache_dir=tmp_path, seed=0, emit=lines.append, **small)
    assert not rebuilt.cached and rebuilt.metrics["parent_model_hash"] == parent.model_hash
    assert any("parent_model_hash differs" in line for line in lines)

    # a corrupt model file is caught by the recorded hashes and rebuilt
    with open(built.path / MODEL_FILE, "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\0\0\0\1")
    lines.clear()
    healed = build_tiny_for_task("tiny-s", "lenmix", cache_dir=tmp_path, seed=0, emit=lines.append, **small)
    assert not healed.cached and any("hash mismatch" in line for line in lines)
    assert healed.model_hash == rebuilt.model_hash  # deterministic on one machine
