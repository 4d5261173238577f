"""TRL ``GRPOTrainer`` with the unified GRPO-family loss, a learnable λ and DAPO's dynamic sampling.

The loss of a micro-batch is ``Σ_{i∈mb} w_i Σ_t ℓ_{i,t}`` (:func:`lgrpo_bench.algorithms.loss.unified_loss`) for one
:class:`~lgrpo_bench.algorithms.presets.ResolvedAlgorithm`: aggregation (w_i), surrogate (ℓ), advantage (A_i) and
group filter, each from its registry.

- TRL shuffles every generation batch and splits it into micro-batches (gradient accumulation,
  ``steps_per_generation``) and across processes, so the G completions of a prompt are not together at loss
  time. Everything that needs the whole batch is computed in ``_generate_and_score_completions``, where the batch
  is complete, after gathering lengths, total rewards and accuracies across processes: the group filter's keep
  mask (decided on **accuracy**, the first reward function, as DAPO does), the advantages (recomputed by the
  advantage axis over the groups that enter the loss), and per row what its weight needs (its group's lengths,
  its index in the group, N, Σ_j|o_j| and P over the kept groups of all processes).
- The micro-batch loss is multiplied by ``P · steps_per_generation / gradient_accumulation_steps`` (P = processes)
  because DDP averages gradients over processes and one optimizer step consumes ``GA/spg`` of a generation batch;
  the accumulated gradient is then that of ``L`` whatever the split (the local token mean excepted, by definition).
- ``group_filter: resample`` generates further rounds from new prompts (``max_generation_batches`` at most) until
  every process holds ``prompts_per_step`` mixed-accuracy groups, then trains on exactly that many
  (:mod:`lgrpo_bench.algorithms.group_filter.resample`); each step logs ``train/generation_batches``,
  ``train/groups_filtered_frac`` and, for resample, ``train/group_filter_cap_reached``.

λ (the ``lambda`` aggregation) is an ``nn.Parameter`` outside the model, its gradient averaged across processes and
cleared after every optimizer step (``Trainer`` only calls ``model.zero_grad()``), not covered by gradient clipping,
following the policy's LR schedule, saved in each checkpoint (``lambda_state.json``) and restored on resume.
It has its own optimizer (Adam with the policy's betas/eps and no weight decay, or SGD; its state is in
``lambda_state.json``), stepped after the policy's at ``lambda_lr × schedule``, so the policy optimizer holds model
parameters only, as FSDP2 requires (:mod:`lgrpo_bench.training.lambda_optimizer`). Each step logs whether λ moved at
its optimizer's rate limit (:mod:`lgrpo_bench.training.lambda_rate`).

Departures from TRL's ``_compute_loss``: the advantages are recomputed here (equal to TRL's ``scale_rewards`` when
no group is filtered); GRPOConfig options this trainer does not implement (entropy bonus and masks, off-policy
masks, MoE aux loss, tools, images, other reward aggregations, a loss option contradicting the algorithm) are
refused at construction.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

import dataclasses

import torch
from trl import GRPOConfig, GRPOTrainer

from lgrpo_bench.algorithms.advantage import ADVANTAGES
from lgrpo_bench.algorithms.aggregation import AGGREGATIONS
from lgrpo_bench.algorithms.base import WeightInputs, relative_token_weight
from lgrpo_bench.algorithms.group_filter import GROUP_FILTERS, mixed_accuracy_groups
from lgrpo_bench.algorithms.group_filter.resample import needs_another_round, round_prompt_indices, select_groups
from lgrpo_bench.algorithms.loss import unified_loss
from lgrpo_bench.algorithms.presets import (
    TRL_LOSS_OPTIONS,
    ResolvedAlgorithm,
    trl_loss_options,
    trl_loss_type,
    trl_scale_rewards,
)
from lgrpo_bench.algorithms.surrogate import SURROGATES, SurrogateParams
from lgrpo_bench.tracking.schema import (
    TRAIN_GENERATION_BATCHES,
    TRAIN_GROUP_FILTER_CAP_REACHED,
    TRAIN_GROUPS_FILTERED_FRAC,
    TRAIN_CORRECT_LENGTH_MEAN,
    TRAIN_INCORRECT_LENGTH_MEAN,
    TRAIN_LAMBDA_RATE_LIMITED,
    TRAIN_LENGTH_ADVANTAGE_CORR,
    TRAIN_STYLE_SHARE_PREFIX,
)
from lgrpo_bench.training.lambda_optimizer import (
    lambda_optimizer_state,
    load_lambda_optimizer_state,
    make_lambda_optimizer,
    scheduled_lambda_lr,
)
from lgrpo_bench.algorithms.length_stats import length_advantage_corr, length_by_correctness
from lgrpo_bench.training.lambda_rate import lambda_rate_limited, rate_limited_fraction
from lgrpo_bench.training.seeding import PerRowSeededLLM, request_seed, seeded_vllm_engine

from lgrpo_bench.tracking.record import (
    CHECKPOINT_MANIFEST,
    LAMBDA_STATE_FILE,
    RunLayout,
    disk_full_as_error,
    write_checkpoint_manifest,
)

# TRL 1.16 reads transformers' deprecated ``is_gradient_checkpointing`` property at every generation and save (a
# FutureWarning repeated in each run log) that a user of lgrpo-bench cannot act on, so it is not shown.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

#: Generation outputs the re-sampling rounds know how to merge: key -> (pad side, pad value; None = the pad token).
_MERGEABLE = {
    "prompt_ids": ("left", None), "prompt_mask": ("left", 0), "completion_ids": ("right", None),
    "completion_mask": ("right", 0), "old_per_token_logps": ("right", 0.0), "ref_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0), "importance_sampling_ratio": ("right", 1.0), "advantages": (None, None),
}


def row_group_statistics(
    all_lengths: torch.Tensor,
    group_size: int,
    *,
    start: int = 0,
    n_rows: int | None = None,
    all_keep: torch.Tensor | None = None,
) -> dict[str, Any]:
    """What rows ``start .. start+n_rows`` of a generation batch carry to the loss.

    Args:
        all_lengths: (N,) lengths of every completion of the generation batch (all processes, in the order TRL
            gathers rewards: groups of ``group_size`` consecutive rows).
        all_keep: (N,) 1 for completions that enter the loss (the group filter's choice), 0 otherwise; None = all.
    Returns:
        ``lgrpo_lengths`` (R,), ``lgrpo_group_lengths`` (R, G), ``lgrpo_index_in_group`` (R,), ``lgrpo_keep`` (R,) and
        the 0-d tensors ``lgrpo_num_completions`` (N kept), ``lgrpo_num_tokens`` (Σ kept |o|), ``lgrpo_num_groups``
        (P kept).
    """
    n_rows = all_lengths.numel() - start if n_rows is None else n_rows
    keep = torch.ones_like(all_lengths) if all_keep is None else all_keep.to(all_lengths.dtype)
    rows = torch.arange(start, start + n_rows, device=all_lengths.device)
    return dict(
        lgrpo_lengths=all_lengths[rows],
        lgrpo_group_lengths=all_lengths.view(-1, group_size)[rows // group_size],
        lgrpo_index_in_group=rows % group_size,
        lgrpo_keep=keep[rows],
        lgrpo_num_completions=keep.sum(),
        lgrpo_num_tokens=(all_lengths * keep).sum(),
        lgrpo_num_groups=keep.sum() / group_size,
    )


def merge_generation_outputs(outputs: list[dict[str, Any]], rows: torch.Tensor, pad_token_id: int) -> dict[str, Any]:
    """Rows ``rows`` of the concatenation of several generation outputs (re-sampling rounds), padded to one width.

    Prompts are left-padded, completions and per-token tensors right-padded (masks with 0, so padding never
    enters a loss). Raises ValueError for an output key it cannot merge (multimodal inputs, tool masks).
    """
    merged: dict[str, Any] = {}
    for key in outputs[0]:
        if key == "num_items_in_batch":
            continue
        if key not in _MERGEABLE:
            raise ValueError(f"group_filter resample cannot merge the generation output {key!r} across rounds")
        side, value = _MERGEABLE[key]
        parts = [output[key] for output in outputs]
        if side is not None and parts[0].dim() == 2:
            width = max(part.size(1) for part in parts)
            fill = pad_token_id if value is None else value
            padded = []
            for part in parts:
                extra = part.new_full((part.size(0), width - part.size(1)), fill)
                padded.append(torch.cat([extra, part] if side == "left" else [part, extra], dim=1))
            parts = padded
        merged[key] = torch.cat(parts, dim=0)[rows]
    return merged


def model_card_identity(algorithm: ResolvedAlgorithm) -> tuple[str, dict[str, str | None]]:
    """The trainer name and paper TRL writes into a run's model card (``README.md``): the preset and its four axis
    values, and the preset's paper (title and arXiv id, from its reference)."""
    import re

    from lgrpo_bench.algorithms.presets import get_preset

    preset = get_preset(algorithm.name)
    axes = ", ".join(f"{axis} {value}" for axis, value in algorithm.axes.items())
    found = re.search(r"arXiv[: ](\d{4}\.\d{4,5})", preset.reference)
    return (f"{algorithm.name} ({axes}; lgrpo-bench's unified loss on TRL)",
            {"title": preset.reference, "id": found.group(1) if found else None, "citation": None})


#: TRL's default of each GRPOConfig option a surrogate carries a hyperparameter in (epsilon 0.2, epsilon_high None, ...).
_TRL_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(GRPOConfig) if f.name in TRL_LOSS_OPTIONS}
#: The config keys that set each of those options (``epsilon_high``: "epsilon_high / cispo_epsilon_max").
_TRL_OPTION_KEYS: dict[str, str] = {
    option: " / ".join(dict.fromkeys(spec.trl_options[option] for spec in SURROGATES.values() if option in spec.trl_options))
    for option in TRL_LOSS_OPTIONS
}


class UnifiedLossGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose loss is ``Σ_i w_i Σ_t ℓ_{i,t}`` for a resolved algorithm (see the module docstring).

    Args (beyond GRPOTrainer's):
        algorithm: every axis value and hyperparameter (``lgrpo_bench.algorithms.resolve_algorithm``).
        accuracy_reward_index: which reward function is the correctness reward the group filter decides on.
        style_of: maps a completion's text to its answer style (lenmix: ``classify_style``); when given, the share
            of each style among the generated completions is logged as ``train/style_share/<style>``.
    """

    def __init__(self, *args: Any, algorithm: ResolvedAlgorithm, accuracy_reward_index: int = 0,
                 style_of: Callable[[str], str] | None = None, **kwargs: Any):
        self.algorithm = algorithm
        self.aggregation = AGGREGATIONS[algorithm.aggregation]
        self.advantage_estimator = ADVANTAGES[algorithm.advantage]
        self.group_filter = GROUP_FILTERS[algorithm.group_filter]
        self.accuracy_reward_index = accuracy_reward_index
        self.lambda_learnable = bool(algorithm.uses_lambda and algorithm.lambda_learnable)
        self.lambda_optimizer_name = algorithm.lambda_optimizer if self.lambda_learnable else None
        self.lam = torch.nn.Parameter(torch.tensor(float(algorithm.lam_init or 0.0)), requires_grad=self.lambda_learnable)
        self._lam_before_step = float(self.lam.detach())
        #: λ's own optimizer (built with the policy's, in create_optimizer); None when λ is not learned.
        self.lambda_optimizer: torch.optim.Optimizer | None = None
        #: One flag per optimizer step: λ moved at its optimizer's rate limit (see lgrpo_bench.training.lambda_rate).
        self.lambda_rate_limited_flags: list[bool] = []
        #: (step, completion length, weight per token relative to DAPO) of the rows of every micro-batch.
        self.token_weight_records: list[tuple[int, int, float]] = []
        self._rewards_per_func: torch.Tensor | None = None
        self.style_of = style_of
        self._styles: list[str] = []  # styles of this process's completions generated since the last batch finished
        self._name, self._paper = model_card_identity(algorithm)  # TRL's model card would say "GRPO" for every run
        grpo_args = kwargs.get("args", args[2] if len(args) > 2 else None)
        if grpo_args is not None and grpo_args.use_vllm and grpo_args.vllm_mode == "colocate":
            with seeded_vllm_engine(grpo_args.seed):  # TRL seeds its engine with the process index only
                super().__init__(*args, **kwargs)
        else:
            super().__init__(*args, **kwargs)
        self._seed_generation_sources()
        self._refuse_unsupported_options()
        self.mask_truncated_completions = algorithm.mask_truncated_completions
        # TRL's ε for surrogates without their own (its metrics read them), the declared defaults, then this surrogate's
        self.surrogate_params = SurrogateParams(**{"epsilon_low": self.epsilon_low, "epsilon_high": self.epsilon_high,
                                                   **algorithm.values_of("surrogate"), "delta": self.args.delta})
        self.epsilon_low, self.epsilon_high = self.surrogate_params.epsilon_low, self.surrogate_params.epsilon_high
        self.lam.data = self.lam.data.to(self.accelerator.device)

    # -- set-up -------------------------------------------------------------------------------------
    def _refuse_unsupported_options(self) -> None:
        """Refuse GRPOConfig options this trainer would otherwise silently ignore (issue 13 §4)."""
        args, algorithm = self.args, self.algorithm
        own_options = trl_loss_options(algorithm)
        loss_options = {  # option: (TRL's default, the value that states this algorithm, the config key to use)
            "loss_type": ("dapo", trl_loss_type(algorithm.aggregation, algorithm.surrogate), "aggregation/surrogate"),
            "importance_sampling_level": ("token", "sequence" if algorithm.surrogate == "gspo" else "token", "surrogate"),
            "scale_rewards": ("group", trl_scale_rewards(algorithm.advantage), "advantage"),
            **{option: (_TRL_DEFAULTS[option], own_options.get(option), _TRL_OPTION_KEYS[option])
               for option in TRL_LOSS_OPTIONS},
            "mask_truncated_completions": (False, algorithm.mask_truncated_completions, "mask_truncated_completions"),
        }
        for option, (default, own, key) in loss_options.items():
            value = getattr(args, option)
            if value != default and value != own:
                raise ValueError(
                    f"UnifiedLossGRPOTrainer computes the loss of its algorithm ({algorithm.name}: {algorithm.axes}); "
                    f"GRPOConfig {option}={value!r} contradicts it (the algorithm's value is {own!r}): set algorithm.{key} "
                    f"in the run config instead")
        unsupported = {
            "top_entropy_quantile": (args.top_entropy_quantile, 1.0),
            "off_policy_mask_threshold": (args.off_policy_mask_threshold, None),
            "multi_objective_aggregation": (args.multi_objective_aggregation, "sum_then_normalize"),
            "entropy bonus (entropy_coef)": (bool(getattr(self, "_entropy_bonus_enabled", False)), False),
            "MoE aux loss": (bool(self.aux_loss_enabled), False),
        }
        if algorithm.surrogate not in ("clip", "gspo"):
            unsupported["delta (two-sided clip, clip and gspo only)"] = (args.delta, None)
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(f"UnifiedLossGRPOTrainer does not support {name}={value!r} (needs {supported!r})")
        if self.tools or self.environment_factories is not None:
            raise ValueError("UnifiedLossGRPOTrainer does not support tools or environments")
        columns = getattr(self.train_dataset, "column_names", None) or []
        if {"image", "images"} & set(columns):
            raise ValueError("UnifiedLossGRPOTrainer does not support image inputs (dataset column image/images)")

    def _seed_generation_sources(self) -> None:
        """After TRL's construction: the process RNGs and every vLLM request follow ``args.seed``
        (:mod:`lgrpo_bench.training.seeding`; the engine seed was set while TRL built it)."""
        self._generation_seed = request_seed(self.args.seed, self._generation_rank(), 0)
        if self.use_vllm and self.vllm_mode == "colocate":
            from accelerate.utils import set_seed

            set_seed(self.args.seed, device_specific=True)  # vLLM's worker re-seeded them with its engine seed
            self.vllm_generation.llm = PerRowSeededLLM(self.vllm_generation.llm, lambda: self._generation_seed)

    def _generation_rank(self) -> int:
        """The data-parallel rank whose seeds a generation call uses: the colocated engine's (TP ranks share it);
        0 in server mode, where the main process sends every request."""
        if self.use_vllm and self.vllm_mode == "server":
            return 0
        return self.accelerator.process_index // max(1, int(getattr(self.args, "vllm_tensor_parallel_size", 1) or 1))

    def _seed_next_generation(self, mode: str, round_index: int = 0) -> None:
        """The seed of the next generation call: :func:`~lgrpo_bench.training.seeding.request_seed` of (train seed,
        rank, step, round, mode); colocated rows add their index, the server gets it in ``generation_kwargs``."""
        self._generation_seed = request_seed(self.args.seed, self._generation_rank(), self.state.global_step,
                                             round_index, mode)
        if self.use_vllm and self.vllm_mode == "server":
            self.vllm_generation.generation_kwargs = {**(self.args.generation_kwargs or {}), "seed": self._generation_seed}

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.lambda_learnable and not getattr(optimizer, "_lgrpo_lambda_hooks", False):
            if self.lambda_optimizer is None:
                self.lambda_optimizer = make_lambda_optimizer(
                    self.lambda_optimizer_name, self.lam, self.algorithm.lambda_lr,
                    betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon,
                    fused=optimizer.defaults.get("fused"))
            optimizer.register_step_pre_hook(self._before_optimizer_step)
            optimizer.register_step_post_hook(self._after_optimizer_step)
            optimizer._lgrpo_lambda_hooks = True
        return optimizer

    def _lambda_lr(self, optimizer) -> float:
        """λ's learning rate this step: lambda_lr × the policy schedule's factor."""
        return scheduled_lambda_lr(self.algorithm.lambda_lr, float(optimizer.param_groups[0]["lr"]), self.args.learning_rate)

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self.lam.grad is not None and self.accelerator.num_processes > 1:
            self.lam.grad = self.accelerator.reduce(self.lam.grad, reduction="mean")
        self._lam_before_step = float(self.lam.detach())
        grad = 0.0 if self.lam.grad is None else float(self.lam.grad)
        self._metrics["train"]["lambda_grad"].append(grad)

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        lr = self._lambda_lr(optimizer)
        self.lambda_optimizer.param_groups[0]["lr"] = lr
        self.lambda_optimizer.step()
        self.lam.grad = None
        value = float(self.lam.detach())
        delta = value - self._lam_before_step
        limited = lambda_rate_limited(delta, lr, self.lambda_optimizer_name)
        self.lambda_rate_limited_flags.append(limited)
        metrics = self._metrics["train"]
        metrics["lambda"].append(value)
        metrics["dlambda"].append(delta)
        metrics[TRAIN_LAMBDA_RATE_LIMITED].append(float(limited))

    @property
    def lambda_rate_limited_fraction(self) -> float | None:
        """Share of optimizer steps in which λ moved at its rate limit (None when λ is not learned)."""
        return rate_limited_fraction(self.lambda_rate_limited_flags) if self.lambda_learnable else None

    # -- generation: filter, advantages and group statistics while the batch is complete ----------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rewards_per_func = rewards_per_func
        if self.style_of is not None:
            from lgrpo_bench.tasks.rewards import completion_text

            self._styles.extend(self.style_of(completion_text(c)) for c in completions)  # (rows of all processes, reward functions)
        return rewards_per_func

    def _local_rewards(self, n_local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Total reward (TRL's weighted sum; NaN where no function scored) and accuracy of this process's rows."""
        per_func = self._rewards_per_func
        total = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(per_func).all(dim=1)] = torch.nan
        accuracy = per_func[:, self.accuracy_reward_index]
        local = slice(self.accelerator.process_index * n_local, (self.accelerator.process_index + 1) * n_local)
        return total[local].float(), accuracy[local].float()

    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        if mode == "train" and self.group_filter.refills:
            return self._generate_with_resampling(inputs, group_size)
        self._seed_next_generation(mode)
        output = super()._generate_and_score_completions(inputs)
        rewards, accuracy = self._local_rewards(len(inputs))
        return self._finish_generation_batch(output, rewards, accuracy, group_size, mode, rounds=1)

    def _generate_with_resampling(self, inputs, group_size: int):
        """DAPO's dynamic sampling: rounds of generation until every process holds its target of mixed groups."""
        n_local = len(inputs)
        if n_local % group_size:
            raise ValueError(f"group_filter resample needs whole groups on each process: {n_local} rows per process "
                             f"is not a multiple of num_generations={group_size}")
        target = n_local // group_size
        max_rounds = self.algorithm.max_generation_batches
        outputs, rewards, accuracies, mixed_by_round = [], [], [], []
        round_inputs = inputs
        while True:
            self._seed_next_generation("train", round_index=len(outputs))
            outputs.append(super()._generate_and_score_completions(round_inputs))
            round_rewards, round_accuracy = self._local_rewards(n_local)
            rewards.append(round_rewards)
            accuracies.append(round_accuracy)
            mixed_by_round.append(mixed_accuracy_groups(round_accuracy.view(-1, group_size)))
            held = torch.tensor([float(sum(int(m.sum()) for m in mixed_by_round))], device=self.accelerator.device)
            counts = [int(c) for c in self.accelerator.gather(held).tolist()]
            if not needs_another_round(counts, target, len(outputs), max_rounds):
                break
            round_inputs = self._extra_round_inputs(len(outputs), target, group_size)
        chosen = select_groups(mixed_by_round, target)
        rows = torch.tensor([k * n_local + g * group_size + j for k, g, _ in chosen for j in range(group_size)],
                            device=self.accelerator.device)
        output = merge_generation_outputs(outputs, rows, self._tokenizer.pad_token_id)
        loss_mask = output["completion_mask"] * output.get("tool_mask", 1)
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return self._finish_generation_batch(
            output, torch.cat(rewards)[rows], torch.cat(accuracies)[rows], group_size, "train", rounds=len(outputs),
            cap_reached=min(counts) < target)

    def _extra_round_inputs(self, round_index: int, n_prompts: int, group_size: int) -> list[dict[str, Any]]:
        indices = round_prompt_indices(
            len(self.train_dataset), seed=self.args.seed, step=self.state.global_step, round_index=round_index,
            num_processes=self.accelerator.num_processes, process_index=self.accelerator.process_index,
            per_process=n_prompts)
        return [self.train_dataset[i] for i in indices for _ in range(group_size)]

    def _finish_generation_batch(self, output, local_rewards, local_accuracy, group_size: int, mode: str, *,
                                 rounds: int, cap_reached: bool | None = None):
        """Gather lengths, rewards and accuracies; apply the group filter; recompute advantages; add row statistics."""
        loss_mask = output["completion_mask"]
        if "tool_mask" in output:
            loss_mask = loss_mask * output["tool_mask"]
        local_lengths = loss_mask.sum(dim=1).to(torch.float32)
        n_local = local_lengths.numel()
        gathered = self.accelerator.gather(torch.stack([local_lengths, local_rewards.to(local_lengths.device),
                                                        local_accuracy.to(local_lengths.device)], dim=1))
        all_lengths, all_rewards, all_accuracy = gathered.unbind(dim=1)
        keep_groups = self.group_filter.keep_groups(all_accuracy.view(-1, group_size))
        all_keep = keep_groups.repeat_interleave(group_size).to(all_lengths.dtype)
        advantages = self.advantage_estimator.compute(all_rewards, group_size, all_keep)
        start = self.accelerator.process_index * n_local
        output["advantages"] = advantages[start : start + n_local].to(output["advantages"].dtype)
        output.update(row_group_statistics(all_lengths, group_size, start=start, n_rows=n_local, all_keep=all_keep))

        metrics = self._metrics[mode]
        generated_groups = rounds * all_lengths.numel() // group_size
        metrics[TRAIN_GENERATION_BATCHES].append(float(rounds))
        metrics[TRAIN_GROUPS_FILTERED_FRAC].append(1.0 - float(keep_groups.sum()) / generated_groups)
        if cap_reached is not None:
            metrics[TRAIN_GROUP_FILTER_CAP_REACHED].append(float(cap_reached))
        # findings (DAPO dynamic sampling): share of the batch's groups that are mixed and kept, i.e. carry a gradient
        batch_mixed = mixed_accuracy_groups(all_accuracy.view(-1, group_size)) & keep_groups.bool()
        metrics["loss_batch_mixed_frac"].append(float(batch_mixed.sum()) / max(1, batch_mixed.numel()))
        self._log_length_metrics(metrics, all_lengths, all_accuracy, advantages, group_size)
        return output

    def _log_length_metrics(self, metrics, all_lengths, all_accuracy, advantages, group_size: int) -> None:
        """Length vs correctness and vs advantage (lgrpo_bench.algorithms.length_stats) and, with ``style_of``, the
        style shares; a statistic without data this batch is not appended (no NaN)."""
        by_correctness = length_by_correctness(all_lengths.cpu(), all_accuracy.cpu())
        if "incorrect" in by_correctness:
            metrics[TRAIN_INCORRECT_LENGTH_MEAN].append(by_correctness["incorrect"])
        if "correct" in by_correctness:
            metrics[TRAIN_CORRECT_LENGTH_MEAN].append(by_correctness["correct"])
        if group_size >= 2:
            corr = length_advantage_corr(all_lengths.cpu(), advantages.detach().cpu().float(), group_size)
            if corr is not None:
                metrics[TRAIN_LENGTH_ADVANTAGE_CORR].append(corr)
        if self.style_of is not None and self._styles:
            from lgrpo_bench.tasks.lenmix import STYLES

            styles, self._styles = self._styles, []
            for style in dict.fromkeys([*STYLES, *styles]):
                metrics[f"{TRAIN_STYLE_SHARE_PREFIX}{style}"].append(styles.count(style) / len(styles))

    # -- loss -------------------------------------------------------------------------------------
    def completion_weights_for(self, inputs: dict[str, torch.Tensor], mode: str = "train") -> tuple[torch.Tensor, WeightInputs]:
        """w_i for the rows of ``inputs`` (differentiable in λ), and the inputs they were computed from."""
        keep = inputs["lgrpo_keep"]
        micro_batches = self.accelerator.num_processes * (self.args.steps_per_generation if mode == "train" else 1)
        weight_inputs = WeightInputs(
            lengths=inputs["lgrpo_lengths"],
            group_lengths=inputs["lgrpo_group_lengths"],
            index_in_group=inputs["lgrpo_index_in_group"],
            num_completions=inputs["lgrpo_num_completions"],
            num_tokens=inputs["lgrpo_num_tokens"],
            max_completion_length=self.max_completion_length,
            num_groups=inputs["lgrpo_num_groups"],
            local_num_tokens=(inputs["lgrpo_lengths"] * keep).sum(),
            num_micro_batches=micro_batches,
        )
        lam = self.lam if self.aggregation.uses_lambda else None
        weights = self.aggregation.weight(weight_inputs, lam, self.algorithm.r or 0.0) * keep
        return weights, weight_inputs

    def loss_scale(self, mode: str) -> float:
        """P · spg / GA in training (see module docstring), P in evaluation."""
        scale = float(self.accelerator.num_processes)
        if mode == "train":
            scale *= self.args.steps_per_generation / self.current_gradient_accumulation_steps
        return scale

    def _compute_loss(self, model, inputs):
        mode = "train" if self.model.training else "eval"
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]

        per_token_logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True
        )
        old_per_token_logps = inputs.get("old_per_token_logps")
        if old_per_token_logps is None:
            old_per_token_logps = per_token_logps.detach()
        weights, weight_inputs = self.completion_weights_for(inputs, mode)
        use_is_correction = self.use_vllm and self.vllm_importance_sampling_correction
        terms = unified_loss(
            per_token_logps, old_per_token_logps, inputs["advantages"], mask, weights,
            surrogate=self.algorithm.surrogate, params=self.surrogate_params, beta=self.beta,
            ref_per_token_logps=inputs.get("ref_per_token_logps"),
            kl_importance_correction=self.args.use_bias_correction_kl,
            importance_sampling_ratio=inputs["importance_sampling_ratio"] if use_is_correction else None,
        )
        self._log_loss_metrics(mode, inputs, weights, weight_inputs, terms, mask, entropies)
        return terms.loss * self.loss_scale(mode)

    @torch.no_grad()
    def _log_loss_metrics(self, mode, inputs, weights, weight_inputs, terms, mask, entropies):
        def global_masked_mean(values: torch.Tensor) -> float:
            if values.shape[1] == 1:  # one value per sequence (GSPO), as TRL counts it
                local = torch.stack([values.sum(), torch.tensor(float(values.shape[0]), device=values.device)])
            else:
                local = torch.stack([(values * mask).sum(), mask.sum().float()])
            totals = self.accelerator.reduce(local, reduction="sum")
            return (totals[0] / totals[1].clamp(min=1.0)).item()

        metrics = self._metrics[mode]
        metrics["entropy"].append(global_masked_mean(entropies))
        if terms.per_token_kl is not None:
            metrics["kl"].append(global_masked_mean(terms.per_token_kl))
        low, high = terms.surrogate.clipped_low, terms.surrogate.clipped_high
        if self.algorithm.surrogate == "cispo":
            metrics["cispo_clip_ratio"].append(global_masked_mean(high.float()))
        elif low is not None:
            metrics["clip_ratio/low_mean"].append(global_masked_mean(low.float()))
            metrics["clip_ratio/high_mean"].append(global_masked_mean(high.float()))
            metrics["clip_ratio/region_mean"].append(global_masked_mean((low | high).float()))

        if self.algorithm.uses_lambda and not self.lambda_learnable:
            metrics["lambda"].append(float(self.lam.detach()))
        kept = inputs["lgrpo_keep"] > 0
        relative = relative_token_weight(weights.detach(), weight_inputs)[kept]
        if relative.numel():
            metrics["weight_mean"].append(relative.mean().item())
            metrics["weight_min"].append(relative.min().item())
            metrics["weight_max"].append(relative.max().item())
        if mode == "train" and self.accelerator.is_main_process:
            step = self.state.global_step
            lengths = inputs["lgrpo_lengths"][kept].tolist()
            self.token_weight_records.extend(
                (step, int(length), float(value)) for length, value in zip(lengths, relative.tolist())
            )

    # -- checkpoints --------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, then ``lambda_state.json``, then the manifest (last: a checkpoint without it is
        incomplete and never resumed from). A stale manifest in the folder is removed first, so a folder written
        again is never taken for complete midway; a full disk raises :class:`~lgrpo_bench.tracking.record.DiskFullError`
        naming the path and the space left (the folder keeps no manifest)."""
        folder = RunLayout(Path(self._get_output_dir(trial=trial))).checkpoint_dir(self.state.global_step)
        if self.args.should_save:
            (folder / CHECKPOINT_MANIFEST).unlink(missing_ok=True)
        with disk_full_as_error(folder):
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                with open(folder / LAMBDA_STATE_FILE, "w", encoding="utf-8") as handle:
                    json.dump({"lambda": float(self.lam.detach()), "learnable": self.lambda_learnable,
                               "rate_limited": self.lambda_rate_limited_flags,
                               "optimizer": None if self.lambda_optimizer is None else lambda_optimizer_state(self.lambda_optimizer)},
                              handle)
                write_checkpoint_manifest(folder)

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          tags: str | list[str] | None = None):
        """TRL's model card (``README.md`` in the run folder), naming the base model's folder where TRL names a hub
        id only: a base loaded from a local folder (every tiny warm start) would read "fine-tuned version of
        [None](https://huggingface.co/None)", and its quick start ``pipeline(model="None")``."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        card = Path(self.args.output_dir) / "README.md"
        base = str(getattr(self.model.config, "_name_or_path", "") or "")
        if not self.is_world_process_zero() or not card.is_file() or not base or not Path(base).is_dir():
            return
        text = card.read_text(encoding="utf-8")
        text = text.replace("[None](https://huggingface.co/None)", f"the local base model `{base}`")
        text = text.replace('model="None"', f'model="{RunLayout(Path(self.args.output_dir)).final_dir}"')
        card.write_text(text, encoding="utf-8")

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Trainer's ``save_model`` (the final model, and the weights of each checkpoint); a full disk raises
        :class:`~lgrpo_bench.tracking.record.DiskFullError` instead of torch's or safetensors' own words."""
        with disk_full_as_error(output_dir or self.args.output_dir):
            return super().save_model(output_dir, _internal_call)

    def _read_lambda_state(self, checkpoint: str) -> dict[str, Any] | None:
        """``lambda_state.json`` of ``checkpoint`` checked (None when the file is absent); anything unreadable or
        invalid raises ValueError naming the file and the checkpoint. (The checkpoint's manifest hashes this file,
        so :meth:`RunLayout.resume_point` should have passed a corrupt one over already.)"""
        import math

        path = Path(checkpoint) / LAMBDA_STATE_FILE
        if not path.exists():
            return None

        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(state, dict):
                raise ValueError(f"a JSON {type(state).__name__}, not an object")
            if not number(state.get("lambda")):
                raise ValueError(f"'lambda' is {state.get('lambda')!r}, not a finite number")
            flags = state.get("rate_limited", [])
            if not (isinstance(flags, list) and all(isinstance(flag, bool) for flag in flags)):
                raise ValueError("'rate_limited' is not a list of true/false")
            saved = state.get("optimizer")
            if saved is not None and not (isinstance(saved, dict) and all(
                    isinstance(key, str) and (value is None or number(value)) for key, value in saved.items())):
                raise ValueError("'optimizer' is not an object of numbers")
        except (OSError, ValueError) as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(
                f"checkpoint {checkpoint}: {path} is unreadable or invalid ({error}); move the checkpoint folder aside "
                f"to resume from the one before it, or start the run afresh") from error
        return state

    def _load_optimizer_and_scheduler(self, checkpoint):
        """Restore λ (value, its optimizer's state, rate-limit flags) with the policy's optimizer and scheduler.

        A checkpoint of a λ run without ``lambda_state.json``, or of an Adam-learned λ without its optimizer's state
        (written before λ had its own optimizer, when its moments were in ``optimizer.pt``), is refused: resuming it would
        restart λ or its moments; so is an unreadable or invalid ``lambda_state.json`` (:meth:`_read_lambda_state`).
        (A checkpoint whose write was cut short has no manifest, which lists and hashes this file, and is never chosen
        by :meth:`RunLayout.resume_point`.)"""
        if checkpoint is not None:
            state = self._read_lambda_state(checkpoint)
            if state is not None:
                if self.lambda_optimizer is not None:
                    saved = state.get("optimizer")
                    if saved is None and self.lambda_optimizer_name == "adam":
                        raise ValueError(
                            f"checkpoint {checkpoint}: {LAMBDA_STATE_FILE} has no state of λ's optimizer (written by an "
                            f"older lgrpo-bench, which kept λ's Adam moments in optimizer.pt): start the run afresh")
                    try:
                        load_lambda_optimizer_state(self.lambda_optimizer, saved or {})
                    except (ValueError, KeyError, TypeError, RuntimeError) as error:
                        raise ValueError(
                            f"checkpoint {checkpoint}: the λ optimizer state in {Path(checkpoint) / LAMBDA_STATE_FILE} "
                            f"does not fit λ's {self.lambda_optimizer_name} optimizer ({error})") from error
                self.lam.data.fill_(float(state["lambda"]))
                self.lambda_rate_limited_flags = list(state.get("rate_limited", []))
            elif self.algorithm.uses_lambda:
                raise ValueError(
                    f"checkpoint {checkpoint} has no {LAMBDA_STATE_FILE}, so λ cannot be restored with its optimizer "
                    f"state: resume from a checkpoint written by lgrpo-bench's trainer, or start the run afresh")
        super()._load_optimizer_and_scheduler(checkpoint)
