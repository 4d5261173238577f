"""Tiny tokenizer, tiny presets (short real SFT builds), cache/locking, and model resolution."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from lgrpo_bench.models.heldout import greedy_accuracy, heldout_problems, sampled_group_stats
from lgrpo_bench.models.loading import (
    QWEN_PRESETS,
    ModelLoadError,
    format_param_count,
    load_model_and_tokenizer,
    resolve_model,
)
from lgrpo_bench.models.presets import TINY_PRESETS
from lgrpo_bench.models.sft import _length_buckets
from lgrpo_bench.models.tiny import build_tiny, default_cache_dir, make_tiny_model
from lgrpo_bench.models.tokenizer import SPECIAL_TOKENS, build_tokenizer, make_tokenizer
from lgrpo_bench.tasks.arith import (
    direct_solution,
    generate_problems,
    render_arith_prompt,
    worked_solution,
)

FEW_STEPS = 20

ROUND_TRIP_TEXTS = [
    "<|user|>457+386<|assistant|>7+6+0=13|5+8+1=14|4+3+1=08|=843<|endoftext|>",
    "<|user|>12+34<|assistant|>=46<|endoftext|>",
    "Hello,  world!\nTwo spaces, a tab\there,\r\nand trailing space ",
    "Unicode: café naïve 日本語 🙂 Ω≈ç√",
    r"LaTeX: $\frac{1}{2} + \sqrt{x^2} = \boxed{\tfrac{3}{4}}$ and \(a_{ij}\)",
    "Numbers 1234567 and 3.14159, -42",
    "",
]


# --------------------------------------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def saved_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    built = build_tokenizer(folder)
    return built, AutoTokenizer.from_pretrained(folder), folder


def test_tokenizer_reloads_identically(saved_tokenizer):
    built, reloaded, _ = saved_tokenizer
    assert type(reloaded).__name__ == "Qwen2Tokenizer"
    assert len(built) == len(reloaded) and 259 <= len(reloaded) <= 261
    problems = generate_problems(20, seed=0)
    texts = ROUND_TRIP_TEXTS + [render_arith_prompt(p) + worked_solution(p) for p in problems]
    texts += [direct_solution(p) for p in problems]
    for text in texts:
        ids = built(text, add_special_tokens=False)["input_ids"]
        assert reloaded(text, add_special_tokens=False)["input_ids"] == ids, text
        assert reloaded.decode(ids) == text
        assert built.decode(ids) == text


def test_tokenizer_specials_digits_and_padding(saved_tokenizer):
    _, tok, _ = saved_tokenizer
    for special in SPECIAL_TOKENS:
        ids = tok(special, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, special
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "left"
    ids = tok("1234567890", add_special_tokens=False)["input_ids"]
    assert len(ids) == 10
    assert tok.convert_ids_to_tokens(ids) == list("1234567890")
    batch = tok(["<|user|>1+2<|assistant|>", "<|user|>100+200<|assistant|>"], padding=True)
    assert batch["attention_mask"][0][0] == 0 and batch["attention_mask"][0][-1] == 1


def test_tokenizer_is_deterministic(saved_tokenizer):
    built = saved_tokenizer[0]
    assert make_tokenizer().get_vocab() == built.get_vocab()


# ------------------------------------------------------------------------------------------ tiny presets


def test_length_buckets_partition_the_batch():
    lengths = [14, 38, 12, 15, 37, 13, 36]
    buckets = _length_buckets(list(range(len(lengths))), lengths)
    assert sorted(i for bucket in buckets for i in bucket) == list(range(len(lengths)))
    assert [sorted(lengths[i] for i in bucket) for bucket in buckets] == [[12, 13, 14, 15], [36, 37, 38]]
    assert _length_buckets([5], [10]) == [[5]]


def test_preset_sizes_grow_by_2_to_4x(saved_tokenizer):
    tok = saved_tokenizer[0]
    counts = {name: sum(p.numel() for p in make_tiny_model(name, tok).parameters()) for name in TINY_PRESETS}
    assert 150_000 <= counts["tiny-s"] <= 250_000
    assert 400_000 <= counts["tiny-m"] <= 700_000
    assert 900_000 <= counts["tiny-l"] <= 1_600_000
    assert 2.0 <= counts["tiny-m"] / counts["tiny-s"] <= 4.0
    assert 2.0 <= counts["tiny-l"] / counts["tiny-m"] <= 4.0
    model = make_tiny_model("tiny-s", tok)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    steps_seen = []
    started = time.perf_counter()
    result = build_tiny(
        "tiny-s", cache_dir=cache, seed=0, sft_steps=FEW_STEPS,
        progress=lambda step, total, loss: steps_seen.append((step, total, loss)),
    )
    return result, cache, steps_seen, time.perf_counter() - started


def test_build_reloads_and_reports_metrics(tiny_build):
    result, cache, steps_seen, _ = tiny_build
    assert result.path.parent == cache and not result.metrics["cached"]
    assert [s for s, _, _ in steps_seen] == list(range(1, FEW_STEPS + 1))
    assert all(n == FEW_STEPS for _, n, _ in steps_seen)
    assert steps_seen[-1][2] < steps_seen[0][2]  # the loss goes down
    for key in ["greedy_acc", "greedy_acc_2digit", "greedy_acc_3digit", "worked_share_greedy", "sampled_acc_t1",
                "worked_share_sampled", "mixed_group_fraction", "n_params", "sft_steps", "sft_seconds",
                "sft_cpu_seconds", "sft_max_steps", "stop_reason", "validation_checks"]:
        assert key in result.metrics, key
    # a budget below the first check: one check, at the last step, and the budget ends it
    assert result.metrics["validation_checks"] == [[FEW_STEPS, result.metrics["validation_acc"]]]
    assert (result.metrics["sft_steps"], result.metrics["sft_max_steps"]) == (FEW_STEPS, FEW_STEPS)
    assert result.metrics["stop_reason"] == "budget"
    assert json.loads((result.path / "metrics.json").read_text())["n_params"] == result.metrics["n_params"]
    model = AutoModelForCausalLM.from_pretrained(result.path)
    tok = AutoTokenizer.from_pretrained(result.path)
    assert type(tok).__name__ == "Qwen2Tokenizer" and tok.padding_side == "left"
    assert model.config.model_type == "qwen2"
    assert sum(p.numel() for p in model.parameters()) == result.metrics["n_params"]
    assert not [p for p in cache.iterdir() if p.name.startswith(".") and "tmp" in p.name]  # no temp left


def test_cache_hit_is_flagged_and_not_rebuilt(tiny_build):
    result, cache, _, build_seconds = tiny_build
    again = build_tiny(
        "tiny-s", cache_dir=cache, seed=0, sft_steps=FEW_STEPS, progress=lambda *a: pytest.fail("rebuilt")
    )
    assert again.metrics["cached"] is True and again.cached
    assert result.metrics["source"] == "built" and again.metrics["source"] == "cache"
    assert again.path == result.path

    def without_flags(metrics):
        return {k: v for k, v in metrics.items() if k not in ("cached", "source")}

    assert without_flags(again.metrics) == without_flags(result.metrics)


def test_same_seed_gives_bit_identical_weights(tiny_build, tmp_path):
    result = tiny_build[0]
    other = build_tiny("tiny-s", cache_dir=tmp_path, seed=0, sft_steps=FEW_STEPS)
    assert not other.metrics["cached"]
    first, second = load_file(result.path / "model.safetensors"), load_file(other.path / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    for key in ["greedy_acc", "sampled_acc_t1", "mixed_group_fraction", "final_loss"]:
        assert other.metrics[key] == result.metrics[key]


def _build_in_subprocess(cache_dir: str, queue) -> None:
    result = build_tiny("tiny-s", cache_dir=Path(cache_dir), seed=1, sft_steps=5, eval_problems=16, sampled_prompts=8)
    queue.put((str(result.path), result.metrics["cached"]))


@pytest.mark.e2e  # real processes
def test_concurrent_builders_share_one_build(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_build_in_subprocess, args=(str(tmp_path), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    paths = {path for path, _ in results}
    assert len(paths) == 1
    assert sorted(cached for _, cached in results) == [False, True]
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [Path(paths.pop()).name]


def test_unknown_preset_and_bad_steps(tmp_path):
    with pytest.raises(ValueError, match="tiny-s"):
        build_tiny("tiny-xl", cache_dir=tmp_path)
    with pytest.raises(ValueError):
        build_tiny("tiny-s", cache_dir=tmp_path, sft_steps=0)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LGRPO_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("LGRPO_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "lgrpo-bench"


# ------------------------------------------------------------------------------------------------ eval


def test_eval_helpers_score_hand_made_outputs(tiny_build):
    model = AutoModelForCausalLM.from_pretrained(tiny_build[0].path)
    tok = AutoTokenizer.from_pretrained(tiny_build[0].path)
    problems = heldout_problems(16)
    greedy = greedy_accuracy(model, tok, problems, batch_size=5)
    assert 0.0 <= greedy["acc"] <= 1.0 and greedy["n"] == 16
    assert greedy == greedy_accuracy(model, tok, problems, batch_size=16)  # batching does not change greedy
    assert model.training is False
    stats = sampled_group_stats(model, tok, problems[:8], group_size=4, seed=3)
    assert stats == sampled_group_stats(model, tok, problems[:8], group_size=4, seed=3)  # seeded
    assert stats["n_prompts"] == 8 and stats["group_size"] == 4
    state = torch.get_rng_state()
    sampled_group_stats(model, tok, problems[:2], group_size=2, seed=0)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is untouched


# --------------------------------------------------------------------------------------------- loading


def test_resolve_specs(tiny_build, tmp_path):
    result, cache, _, _ = tiny_build
    local = resolve_model(str(result.path), cache_dir=cache)
    assert local.kind == "local" and local.name_or_path == str(result.path) and local.size_label == "0.2M"
    preset = resolve_model("qwen2.5-math-1.5b", cache_dir=cache)
    assert (preset.kind, preset.name_or_path, preset.size_label) == ("preset", "Qwen/Qwen2.5-Math-1.5B", "1.5B")
    assert set(QWEN_PRESETS) >= {"qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-math-1.5b", "qwen2.5-math-7b"}
    hub = resolve_model("someone/SomeModel-0.5B", cache_dir=cache)
    assert (hub.kind, hub.name_or_path, hub.size_label, hub.build) == ("hub", "someone/SomeModel-0.5B", "0.5B", None)
    with pytest.raises(ModelLoadError, match="no such folder"):
        resolve_model(str(tmp_path / "missing"), cache_dir=cache)
    assert format_param_count(201_792) == "0.2M" and format_param_count(1_543_714_304) == "1.5B"


def test_resolve_tiny_preset_uses_cache(tiny_build, monkeypatch):
    result, cache, _, _ = tiny_build
    import lgrpo_bench.models.presets as presets

    shortened = dict(presets.TINY_PRESETS)
    shortened["tiny-s"] = dataclasses.replace(presets.TINY_PRESETS["tiny-s"], sft_steps=FEW_STEPS)
    monkeypatch.setattr(presets, "TINY_PRESETS", shortened)
    resolved = resolve_model("tiny-s", cache_dir=cache)
    assert resolved.kind == "tiny" and resolved.build is not None and resolved.build.cached
    assert resolved.name_or_path == str(result.path) and resolved.size_label == "0.2M"
    monkeypatch.undo()
    explicit = resolve_model("tiny-s", cache_dir=cache, sft_steps=FEW_STEPS)  # the same key, explicitly
    assert explicit.name_or_path == str(result.path) and explicit.build.cached


def test_load_model_and_tokenizer(tiny_build, tmp_path):
    model, tok = load_model_and_tokenizer(str(tiny_build[0].path))
    assert model.dtype == torch.float32 and tok.padding_side == "left" and tok.pad_token is not None
    model16, _ = load_model_and_tokenizer(str(tiny_build[0].path), dtype="bf16")
    assert model16.dtype == torch.bfloat16
    with pytest.raises(ModelLoadError, match="local folder"):
        load_model_and_tokenizer(str(tmp_path))
    with pytest.raises(ValueError, match="dtype"):
        load_model_and_tokenizer(str(tiny_build[0].path), dtype="int3")


def test_unreachable_hub_id_gives_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying
    with pytest.raises(ModelLoadError, match="not a preset, not a local folder, and the hub is unreachable"):
        load_model_and_tokenizer("nobody/no-such-model-for-lgrpo-tests")
