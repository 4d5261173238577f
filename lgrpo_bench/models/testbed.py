"""Task-specific tiny warm starts: the ``lenmix`` base = the arith warm start + a fixed continued SFT.

Recipe (:data:`LENMIX_RECIPE`, version :data:`LENMIX_RECIPE_VERSION`): start from
:func:`~lgrpo_bench.models.tiny.build_tiny` ``(preset, seed)`` (the arith warm start, cached by its own key),
then train ``steps`` optimizer steps (no stopping rule: deterministic for a given parent and machine) on
lenmix completions of arith training problems (digits (2, 3); the canonical held-out test split and the
whole validation split excluded, so ``train/heldout_acc`` of an RL run stays unseen), styles drawn by
:data:`~lgrpo_bench.tasks.lenmix.LENMIX_STYLE_MIX` (ramble repeats uniform in 1 … 4), each completion
followed by ``<|endoftext|>``. Loss: token mean over the completion tokens of the batch (as
:func:`lgrpo_bench.models.sft.run_sft`, whose batching helpers this loop uses); AdamW with the preset's β and
weight decay (matrices only), ``warmup_steps`` linear warm-up then cosine decay to 10 % of ``lr``, gradient
clipping at the preset's ``grad_clip``; one thread, seeded by ``seed`` (bit-identical on the same machine).

Cache: the same folder as the arith warm starts (:func:`~lgrpo_bench.models.tiny.default_cache_dir`), key
``<parent key>-lenmix-v<version>-<digest of the recipe>``, the same verified-cache machinery (metrics.json
with ``files`` hashes, a lock per key, temporary folder then atomic move; :mod:`lgrpo_bench.models.tiny`).
``metrics.json`` also records ``parent_key`` and ``parent_model_hash`` (the SHA-256 of the parent's
model.safetensors) and the measured statistics of :func:`lenmix_sampled_stats`; a base whose recorded parent hash
is not the parent's now is rebuilt. Lookup order: beside the parent (so a lenmix base shipped in the package's
bases folder next to its parent is used read-only), then the user cache (built there when missing);
``metrics["source"]`` says which (``shipped``, ``cache`` or ``built``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lgrpo_bench.models import tiny as _tiny
from lgrpo_bench.models.generation import generate_completions
from lgrpo_bench.models.heldout import greedy_accuracy_of, heldout_problems, torch_threads
from lgrpo_bench.models.presets import get_preset
from lgrpo_bench.models.sft import batch_loss_backward
from lgrpo_bench.models.tokenizer import EOS_TOKEN
from lgrpo_bench.tasks.arith import (
    ARITH_DEFAULT_DIGITS,
    ARITH_N_TEST,
    ARITH_SPLIT_SEED,
    ArithProblem,
    generate_problems,
    n_digits,
    render_arith_prompt,
    train_test_split,
    validation_problems,
)
from lgrpo_bench.tasks.lenmix import (
    LENMIX_MAX_REPEATS,
    LENMIX_STYLE_MIX,
    STYLES,
    classify_style,
    render_style,
    sample_style,
    score_lenmix,
)
from lgrpo_bench.tracking.provenance import provenance_tags

__all__ = [
    "LENMIX_RECIPE",
    "LENMIX_RECIPE_VERSION",
    "TASK_WARM_STARTS",
    "LenmixRecipe",
    "build_tiny_for_task",
    "continue_sft",
    "lenmix_cache_key",
    "lenmix_sampled_stats",
    "lenmix_sft_examples",
]

LENMIX_RECIPE_VERSION = 1
TASK_WARM_STARTS = ("arith", "lenmix")
"""Tasks with a tiny warm start: arith = :func:`~lgrpo_bench.models.tiny.build_tiny`, lenmix = its continuation."""
EVAL_MAX_NEW_TOKENS = 48
"""Sampling budget of the base's statistics (the longest ramble is 37 tokens + eos)."""


@dataclass(frozen=True)
class LenmixRecipe:
    """The continued SFT that turns an arith warm start into a lenmix base (module docstring)."""

    steps: int = 300
    lr: float = 1e-3
    warmup_steps: int = 20
    final_lr_fraction: float = 0.1
    batch_size: int = 64
    style_mix: tuple[tuple[str, float], ...] = tuple(LENMIX_STYLE_MIX.items())
    max_repeats: int = LENMIX_MAX_REPEATS
    digits: tuple[int, ...] = ARITH_DEFAULT_DIGITS

    def digest(self) -> str:
        """Short SHA-256 of every field (the cache key's recipe part)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


LENMIX_RECIPE = LenmixRecipe()


def _lr_factor(step: int, recipe: LenmixRecipe) -> float:
    """Multiplier of ``recipe.lr`` at 0-based ``step``: linear warm-up to 1, then cosine to ``final_lr_fraction``."""
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    span = max(1, recipe.steps - recipe.warmup_steps)
    progress = min(1.0, (step - recipe.warmup_steps) / span)
    floor = recipe.final_lr_fraction
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def lenmix_sft_examples(tokenizer, recipe: LenmixRecipe, seed: int) -> tuple[list[list[int]], list[int], list[str]]:
    """Token ids of ``steps × batch_size`` continued-SFT examples, each prompt's length, and each example's style."""
    _, test = train_test_split(ARITH_SPLIT_SEED, 0, ARITH_N_TEST, ARITH_DEFAULT_DIGITS)
    excluded = {p.problem for p in test} | {p.problem for p in validation_problems()}
    problems = generate_problems(recipe.steps * recipe.batch_size, seed=seed, digits=recipe.digits,
                                 exclude=excluded, id_prefix="lenmix-sft")
    rng = random.Random(f"lenmix-style|{seed}")
    mix = dict(recipe.style_mix)
    styles, completions = [], []
    for p in problems:
        style, repeats = sample_style(rng, mix, recipe.max_repeats)
        styles.append(style)
        completions.append(render_style(p, style, repeats) + EOS_TOKEN)
    prompt_ids = tokenizer([render_arith_prompt(p) for p in problems], add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    return [p + c for p, c in zip(prompt_ids, completion_ids)], [len(p) for p in prompt_ids], styles


def continue_sft(model, tokenizer, recipe: LenmixRecipe, seed: int, preset_name: str) -> list[float]:
    """Train ``model`` in place for ``recipe.steps`` steps (module docstring); returns the loss per step."""
    spec = get_preset(preset_name)
    examples, prompt_lens, _ = lenmix_sft_examples(tokenizer, recipe, seed)
    pad_id = tokenizer.pad_token_id
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr, betas=spec.betas, foreach=False,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, recipe))
    losses = []
    model.train()
    for step in range(recipe.steps):
        batch = list(range(step * recipe.batch_size, (step + 1) * recipe.batch_size))
        optimizer.zero_grad(set_to_none=True)
        total = batch_loss_backward(model, examples, prompt_lens, batch, pad_id)
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(total)
    model.eval()
    return losses


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of ``values``; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def _length_reward_corr(lengths: list[float], rewards: list[float], group_size: int) -> float:
    from lgrpo_bench.algorithms.length_stats import length_advantage_corr

    if group_size < 2:
        return float("nan")
    corr = length_advantage_corr(torch.tensor(lengths), torch.tensor(rewards), group_size)
    return float("nan") if corr is None else corr


def lenmix_sampled_stats(model, tokenizer, problems: Sequence[ArithProblem], *, group_size: int = 8,
                         temperature: float = 1.0, seed: int = 0,
                         max_new_tokens: int = EVAL_MAX_NEW_TOKENS) -> dict[str, Any]:
    """Statistics of ``group_size`` samples per problem at ``temperature`` (top-k off, top-p 1), seeded by ``seed``
    (the caller's RNG state kept): ``acc``, ``mixed_group_fraction``, completion length (tokens, eos included)
    ``length_mean``/``length_std``/``length_p10``/``length_p90``, ``incorrect_length_mean``/``correct_length_mean``,
    ``length_reward_corr`` (mean within-group Pearson correlation of length and reward over groups where both vary:
    the sign ``train/length_advantage_corr`` starts RL with, as advantages are increasing affine maps of rewards
    within a group; NaN when no group qualifies),
    and per style of :data:`~lgrpo_bench.tasks.lenmix.STYLES` ``share_<style>`` and ``acc_<style>`` (NaN if none),
    plus ``acc_<d>digit`` per operand length."""
    prompts = [render_arith_prompt(p) for p in problems for _ in range(group_size)]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.random.fork_rng(devices=[]), torch_threads(1):
            torch.manual_seed(seed)
            completions = generate_completions(model, tokenizer, prompts, batch_size=512,
                                               max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature)
    finally:
        model.train(was_training)
    answers = [p.answer for p in problems for _ in range(group_size)]
    digits = [n_digits(p) for p in problems for _ in range(group_size)]
    rewards = [score_lenmix(t, a) for t, a in zip(completions.texts, answers)]
    styles = [classify_style(t) for t in completions.texts]
    lengths = [float(n) for n in completions.lengths]
    groups = [rewards[i: i + group_size] for i in range(0, len(rewards), group_size)]
    mean = _mean(lengths)
    out: dict[str, Any] = {
        "acc": _mean(rewards),
        "mixed_group_fraction": _mean([float(len(set(g)) > 1) for g in groups]),
        "length_mean": mean,
        "length_std": math.sqrt(_mean([(x - mean) ** 2 for x in lengths])) if lengths else float("nan"),
        "length_p10": _quantile(lengths, 0.1),
        "length_p90": _quantile(lengths, 0.9),
        "length_reward_corr": _length_reward_corr(lengths, rewards, group_size),
        "incorrect_length_mean": _mean([n for n, r in zip(lengths, rewards) if r == 0]),
        "correct_length_mean": _mean([n for n, r in zip(lengths, rewards) if r > 0]),
        "n_prompts": len(problems),
        "group_size": group_size,
    }
    for style in STYLES:
        out[f"share_{style}"] = _mean([float(s == style) for s in styles])
        out[f"acc_{style}"] = _mean([r for r, s in zip(rewards, styles) if s == style])
    for d in sorted(set(digits)):
        out[f"acc_{d}digit"] = _mean([r for r, dd in zip(rewards, digits) if dd == d])
    return out


# ------------------------------------------------------------------------------------------------ cache


def _build_lenmix_into(folder: Path, parent: _tiny.TinyBuildResult, preset_name: str, seed: int,
                       recipe: LenmixRecipe, eval_problems: int, sampled_prompts: int) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(parent.path), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(parent.path), dtype=torch.float32)
    with torch_threads(1):
        started, started_cpu = time.perf_counter(), time.process_time()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            losses = continue_sft(model, tokenizer, recipe, seed, preset_name)
        sft_seconds, sft_cpu = time.perf_counter() - started, time.process_time() - started_cpu
        started = time.perf_counter()
        test = heldout_problems(max(eval_problems, sampled_prompts))
        greedy = greedy_accuracy_of(model, tokenizer, [render_arith_prompt(p) for p in test[:eval_problems]],
                                    [p.answer for p in test[:eval_problems]], score_lenmix,
                                    max_new_tokens=EVAL_MAX_NEW_TOKENS, num_threads=1)
        sampled = lenmix_sampled_stats(model, tokenizer, test[:sampled_prompts], seed=seed)
        eval_seconds = time.perf_counter() - started
    greedy_styles = [classify_style(t) for t in greedy.texts]
    metrics: dict[str, Any] = {
        "preset": preset_name,
        "task": "lenmix",
        "seed": seed,
        "recipe": asdict(recipe),
        "recipe_version": LENMIX_RECIPE_VERSION,
        "parent_key": parent.path.name,
        "parent_model_hash": parent.model_hash,
        "parent_greedy_acc": parent.metrics.get("greedy_acc"),
        "n_params": parent.metrics.get("n_params"),
        "sft_steps": recipe.steps,
        "sft_seconds": round(sft_seconds, 2),
        "sft_cpu_seconds": round(sft_cpu, 2),
        "eval_seconds": round(eval_seconds, 2),
        "final_loss": _mean(losses[-20:]),
        "greedy_acc": greedy.acc,
        "greedy_mean_length": greedy.mean_length,
        **{f"greedy_share_{s}": _mean([float(g == s) for g in greedy_styles]) for s in STYLES},
        **{f"sampled_{k}": v for k, v in sampled.items()},
        "heldout": {"split_seed": ARITH_SPLIT_SEED, "n_test": ARITH_N_TEST, "digits": list(ARITH_DEFAULT_DIGITS)},
        "torch_version": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "provenance": provenance_tags(use_cuda=False),
    }
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    metrics[_tiny.FILES_KEY] = _tiny._file_records(folder)
    text = json.dumps(_tiny._nan_to_none(metrics), indent=2, sort_keys=True, allow_nan=False)
    (folder / _tiny.METRICS_FILE).write_text(text)
    return json.loads(text)


def lenmix_cache_key(parent_key: str, recipe: LenmixRecipe = LENMIX_RECIPE) -> str:
    """``<parent key>-lenmix-v<LENMIX_RECIPE_VERSION>-<recipe digest>``."""
    return f"{parent_key}-lenmix-v{LENMIX_RECIPE_VERSION}-{recipe.digest()}"


def build_tiny_for_task(
    preset: str,
    task: str,
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    sft_steps: int | None = None,
    progress: _tiny.ProgressFn | None = None,
    emit: _tiny.EmitFn | None = None,
    recipe: LenmixRecipe = LENMIX_RECIPE,
    eval_problems: int = ARITH_N_TEST,
    sampled_prompts: int = _tiny.SAMPLED_EVAL_PROMPTS,
    use_shipped: bool = True,
) -> _tiny.TinyBuildResult:
    """The tiny warm start of ``(preset, seed)`` for ``task``: arith → :func:`~lgrpo_bench.models.tiny.build_tiny`
    itself; lenmix → that build continued by ``recipe`` (module docstring), cached and verified like it.

    ``sft_steps``, ``progress`` and ``emit`` go to the parent's build (``emit`` also gets the lenmix build's line);
    ``eval_problems``/``sampled_prompts`` size the lenmix base's own evaluation (non-default sizes get their own
    key). ``use_shipped=False`` ignores the bases shipped in the package (the parent and so the lenmix base beside
    it: the build path). Raises ``ValueError`` for a task without a tiny warm start and
    :class:`~lgrpo_bench.models.tiny.WarmStartCacheError` when the base is missing from a read-only cache.
    """
    if task not in TASK_WARM_STARTS:
        raise ValueError(f"no tiny warm start for task {task!r}; tasks with one: {', '.join(TASK_WARM_STARTS)}")
    parent = _tiny.build_tiny(preset, cache_dir=cache_dir, seed=seed, sft_steps=sft_steps, progress=progress,
                              emit=emit, use_shipped=use_shipped)
    if task == "arith":
        return parent
    if not 1 <= eval_problems <= ARITH_N_TEST or not 1 <= sampled_prompts <= ARITH_N_TEST:
        raise ValueError(f"eval_problems and sampled_prompts must be in 1..{ARITH_N_TEST}")
    preset_name = get_preset(preset).name
    key = lenmix_cache_key(parent.path.name, recipe)
    if (eval_problems, sampled_prompts) != (ARITH_N_TEST, _tiny.SAMPLED_EVAL_PROMPTS):
        key += f"-eval{eval_problems}x{sampled_prompts}"
    # the parent may come from a read-only (shipped) folder: the lenmix base is looked up beside it first, then in
    # the user cache, where it is built
    root = Path(cache_dir) if cache_dir is not None else _tiny.default_cache_dir()
    for folder in dict.fromkeys([parent.path.parent / key, root / key]):
        state, metrics, _ = _tiny._inspect(folder)
        if state == "ok" and metrics.get("parent_model_hash") == parent.model_hash:
            shipped = folder.parent == getattr(_tiny, "SHIPPED_DIR", None)
            return _tiny.TinyBuildResult(path=folder, metrics={**metrics, "cached": True,
                                                               "source": "shipped" if shipped else "cache"})
    final = root / key
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f".{key}.lock", "a+")
    except OSError as error:
        raise _tiny._read_only_error(root, key, None, error) from None
    _tiny._say(f"preparing warm start {preset_name} (seed {seed}): its {task} base, building it or waiting for the "
               "process that builds it", emit, logging.INFO)
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            state, metrics, problem = _tiny._inspect(final)
            _tiny._remove_stale_tmp(root, key, emit)
            if state == "ok" and metrics.get("parent_model_hash") == parent.model_hash:
                return _tiny.TinyBuildResult(path=final, metrics={**metrics, "cached": True, "source": "cache"})
            if state != "missing":
                why = problem or "built from another parent (its parent_model_hash differs)"
                _tiny._say(f"cached lenmix base {key} is unusable ({why}); rebuilding", emit)
            tmp = _tiny._make_tmp(root, key)
            try:
                built = _build_lenmix_into(tmp, parent, preset_name, seed, recipe, eval_problems, sampled_prompts)
                _tiny._publish(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    m = built
    _tiny._say(f"lenmix base {preset_name} seed {seed}: {recipe.steps} continued-SFT steps in {m['sft_seconds']:.0f} s; "
               f"held-out greedy {m['greedy_acc']:.3f} (arith parent {m['parent_greedy_acc']:.3f}), sampled T=1 "
               f"{m['sampled_acc']:.3f}, length {m['sampled_length_mean']:.1f} ± {m['sampled_length_std']:.1f}",
               emit, 20)
    return _tiny.TinyBuildResult(path=final, metrics={**built, "cached": False, "source": "built"})
