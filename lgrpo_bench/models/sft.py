"""The warm-start SFT loop of the tiny presets and its stopping rule.

Data: arith training problems of the preset's ``digits`` drawn from ``seed``, excluding the canonical test
split and the whole canonical validation split (:func:`lgrpo_bench.tasks.arith.validation_problems`); each
completion is worked with probability ``worked_fraction`` (else direct) and ends with ``<|endoftext|>``.
Loss: token mean over the completion tokens of the batch. Optimiser: AdamW (β, weight decay on matrices
only), ``warmup_steps`` of linear warm-up, then the constant peak ``lr`` (constant, so that where the
stopping rule stops does not depend on the step budget), gradient clipping ``grad_clip``.

The stopping rule (:func:`stop_decision`) is evaluated after every check step of the preset's
:class:`~lgrpo_bench.models.presets.StopRule`; the weights of the chosen check are the result.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase, Qwen2ForCausalLM

from lgrpo_bench.models.presets import StopRule, TinyPreset
from lgrpo_bench.models.tokenizer import EOS_TOKEN
from lgrpo_bench.tasks.arith import (
    ARITH_DEFAULT_DIGITS,
    ARITH_N_TEST,
    ARITH_SPLIT_SEED,
    direct_solution,
    generate_problems,
    render_arith_prompt,
    train_test_split,
    validation_problems,
    worked_solution,
)

__all__ = ["SftOutcome", "StopDecision", "lr_factor", "run_sft", "sft_problems", "stop_decision"]

ProgressFn = Callable[[int, int, float], None]
"""``progress(step, max_steps, loss)`` after each SFT step."""
ValidateFn = Callable[[], float]
"""Validation greedy accuracy of the model being trained, as it is now."""

StopReason = Literal["in_target", "overshoot", "budget"]


# ---------------------------------------------------------------------------------------------- stop rule


@dataclass(frozen=True)
class StopDecision:
    """Stop now and keep the weights of the check at ``step`` (validation accuracy ``acc``)."""

    step: int
    acc: float
    reason: StopReason


def _distance(acc: float, rule: StopRule) -> float:
    """How far ``acc`` lies outside ``[target_low, target_high]`` (0 inside)."""
    return max(rule.target_low - acc, acc - rule.target_high, 0.0)


def stop_decision(checks: Sequence[tuple[int, float]], rule: StopRule, max_steps: int) -> StopDecision | None:
    """Whether to stop after the latest of ``checks`` (``(step, validation accuracy)`` in step order).

    - latest accuracy in ``[target_low, target_high]`` → stop, keep it (``in_target``);
    - latest accuracy above ``target_high`` (it jumped over the target between two checks) → stop, keep the
      check closest to the target, distance ``max(low − acc, acc − high, 0)`` (``overshoot``);
    - latest check at ``max_steps`` → stop, keep the closest check (``budget``);
    - otherwise ``None``: train on.

    Ties in distance go to the later check. Pure; the SFT loop calls it after every check.
    """
    if not checks:
        return None
    step, acc = checks[-1]
    if rule.target_low <= acc <= rule.target_high:
        return StopDecision(step, acc, "in_target")
    if acc > rule.target_high or step >= max_steps:
        best_step, best_acc = min(reversed(checks), key=lambda check: _distance(check[1], rule))
        return StopDecision(best_step, best_acc, "overshoot" if acc > rule.target_high else "budget")
    return None


# ------------------------------------------------------------------------------------------------- data


def sft_problems(spec: TinyPreset, n: int, seed: int):
    """The first ``n`` problems of the SFT stream of ``seed`` (test and validation splits excluded)."""
    _, test = train_test_split(ARITH_SPLIT_SEED, 0, ARITH_N_TEST, ARITH_DEFAULT_DIGITS)
    excluded = {p.problem for p in test} | {p.problem for p in validation_problems()}
    return generate_problems(n, seed=seed, digits=spec.digits, exclude=excluded, id_prefix="sft")


def _sft_examples(
    tokenizer: PreTrainedTokenizerBase, spec: TinyPreset, steps: int, seed: int
) -> tuple[list[list[int]], list[int]]:
    """Token ids of ``steps * batch_size`` SFT examples and, per example, the prompt length."""
    problems = sft_problems(spec, steps * spec.batch_size, seed)
    style_rng = random.Random(f"sft-style|{seed}")
    prompts = [render_arith_prompt(p) for p in problems]
    completions = [
        (worked_solution(p) if style_rng.random() < spec.worked_fraction else direct_solution(p)) + EOS_TOKEN
        for p in problems
    ]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    examples = [p + c for p, c in zip(prompt_ids, completion_ids)]
    return examples, [len(p) for p in prompt_ids]


def _batch_tensors(
    examples: Sequence[list[int]], prompt_lens: Sequence[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``labels`` (-100 on prompt and padding)."""
    width = max(len(e) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(zip(examples, prompt_lens)):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = input_ids[row, n_prompt : len(ids)]
    return input_ids, labels


def _length_buckets(items: Sequence[int], lengths: Sequence[int]) -> list[list[int]]:
    """Split ``items`` into at most two groups (by length) minimising the padded area ``sum(n * max_len)``."""
    order = sorted(range(len(items)), key=lambda k: (lengths[k], k))
    best_cut, best_area = len(order), len(order) * lengths[order[-1]]
    for cut in range(1, len(order)):
        area = cut * lengths[order[cut - 1]] + (len(order) - cut) * lengths[order[-1]]
        if area < best_area:
            best_cut, best_area = cut, area
    groups = [order[:best_cut], order[best_cut:]]
    return [[items[k] for k in group] for group in groups if group]


def batch_loss_backward(model: torch.nn.Module, examples: Sequence[Sequence[int]], prompt_lens: Sequence[int],
                        batch: Sequence[int], pad_id: int) -> float:
    """Backpropagate the SFT loss of the examples ``batch`` indexes and return it: the token mean of the
    cross-entropy over every completion token of the batch, L = Σ_tokens CE / n_targets (prompt tokens are not
    targets). Direct and worked completions differ ~3x in length: two length buckets halve the padded compute; the
    loss is the token mean over the whole batch either way (each bucket's sum is divided by the batch's count)."""
    n_targets = sum(len(examples[i]) - prompt_lens[i] for i in batch)
    total = 0.0
    for part in _length_buckets(batch, [len(examples[i]) for i in batch]):
        input_ids, labels = _batch_tensors([examples[i] for i in part], [prompt_lens[i] for i in part], pad_id)
        # Right padding + causal attention: padded tail positions never influence real ones, so no mask.
        logits = model(input_ids=input_ids, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)).float(),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
            reduction="sum",
        ) / n_targets
        loss.backward()
        total += loss.item()
    return total


def lr_factor(step: int, warmup: int) -> float:
    """Multiplier of the peak lr at 0-based ``step``: ``(step + 1) / warmup`` during warm-up, then 1."""
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


# ------------------------------------------------------------------------------------------------- loop


@dataclass
class SftOutcome:
    """What the SFT did: loss per step run, the validation checks, the decision and the steps run."""

    losses: list[float]
    checks: list[tuple[int, float]] = field(default_factory=list)
    decision: StopDecision | None = None

    @property
    def steps_run(self) -> int:
        return len(self.losses)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def run_sft(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    spec: TinyPreset,
    max_steps: int,
    seed: int,
    *,
    validate: ValidateFn,
    progress: ProgressFn | None = None,
) -> SftOutcome:
    """Train ``model`` in place for at most ``max_steps`` steps, stopping by ``spec.stop``; see the module docstring.

    ``validate()`` is called at each check step; when the rule stops on an earlier check than the current
    step (overshoot or budget), the weights of that check are restored, so the model ends as it was at
    ``outcome.decision.step``.
    """
    examples, prompt_lens = _sft_examples(tokenizer, spec, max_steps, seed)
    pad_id = tokenizer.pad_token_id
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=spec.betas,
        foreach=False,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, spec.warmup_steps))
    outcome = SftOutcome(losses=[])
    best: tuple[int, dict[str, torch.Tensor]] | None = None  # (step, weights) of the check closest to the target
    best_acc = float("nan")
    model.train()
    for step in range(1, max_steps + 1):
        lo = (step - 1) * spec.batch_size
        batch = list(range(lo, lo + spec.batch_size))
        optimizer.zero_grad(set_to_none=True)
        total = batch_loss_backward(model, examples, prompt_lens, batch, pad_id)
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()
        scheduler.step()
        outcome.losses.append(total)
        if progress is not None:
            progress(step, max_steps, total)
        if not spec.stop.is_check_step(step, max_steps):
            continue
        accuracy = float(validate())
        model.train()
        outcome.checks.append((step, accuracy))
        decision = stop_decision(outcome.checks, spec.stop, max_steps)
        if decision is not None and decision.step == step:
            outcome.decision = decision
            break
        if decision is not None:  # an earlier check is closer to the target: go back to it
            if best is None or best[0] != decision.step:
                raise RuntimeError(f"SFT stop rule chose step {decision.step} but kept no weights for it")
            model.load_state_dict(best[1])
            outcome.decision = decision
            break
        if best is None or _distance(accuracy, spec.stop) <= _distance(best_acc, spec.stop):
            best, best_acc = (step, _snapshot(model)), accuracy
    model.eval()
    return outcome
