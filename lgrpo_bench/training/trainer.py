"""TRL ``GRPOTrainer`` with the unified GRPO-family loss and a learnable λ.

The loss of a micro-batch is ``Σ_{i∈mb} w_i Σ_t ℓ_{i,t}`` with ``w_i`` from
:mod:`lgrpo_bench.algorithms`, computed from statistics of the *whole* generation batch:

- TRL shuffles every generation batch and splits it into micro-batches (gradient accumulation,
  ``steps_per_generation``) and across processes, so the G completions of a prompt are not together at loss
  time. Group statistics are therefore computed in ``_generate_and_score_completions``, where the batch is
  complete, after gathering the completion lengths across processes (exactly as TRL gathers rewards), and
  each row carries what its weight needs: the lengths of its whole group, its index in the group, N and
  Σ_j|o_j| (the global token count, TRL's ``num_items_in_batch``).
- The micro-batch loss is multiplied by ``P · steps_per_generation / gradient_accumulation_steps``
  (P = processes) because DDP averages gradients over processes and one optimizer step consumes
  ``GA/spg`` of a generation batch; the accumulated gradient is then that of ``L`` whatever the split.

λ (``lambda_grpo``) is an ``nn.Parameter`` outside the model: its own optimizer param group (Adam, no
weight decay, lr ``lambda_lr``, same LR schedule), its gradient averaged across processes and cleared
after every optimizer step (``Trainer`` only calls ``model.zero_grad()``), not covered by gradient
clipping, saved beside each checkpoint (``lambda_state.json``; its Adam moments are in ``optimizer.pt``)
and restored on resume.

Departures from TRL's ``_compute_loss``: only token-level importance sampling and the clipped surrogate
(the TRL options sapo/cispo/vespo/luspo, sequence-level IS, entropy bonus, off-policy masks and MoE aux
loss are refused at construction); the KL term is inside ℓ_{i,t} and weighted like the policy term.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from lgrpo_bench.algorithms import AlgorithmSpec, WeightInputs, relative_token_weight
from lgrpo_bench.tracking.record import LAMBDA_STATE_FILE, RunLayout, write_checkpoint_manifest


def row_group_statistics(
    all_lengths: torch.Tensor,
    group_size: int,
    *,
    start: int = 0,
    n_rows: int | None = None,
    all_advantages: torch.Tensor | None = None,
) -> dict[str, Any]:
    """What rows ``start .. start+n_rows`` of a generation batch carry to the loss.

    Args:
        all_lengths: (N,) lengths of every completion of the generation batch (all processes, in the
            order TRL gathers rewards: groups of ``group_size`` consecutive rows).
        all_advantages: (N,) advantages; when given, groups whose advantages are all 0 (rewards all equal)
            get keep = 0 (dynamic sampling) and ``frac_groups_dropped`` is returned too.
    Returns:
        ``lgrpo_lengths`` (R,), ``lgrpo_group_lengths`` (R, G), ``lgrpo_index_in_group`` (R,), ``lgrpo_keep``
        (R,) and the 0-d tensors ``lgrpo_num_completions`` (N kept) and ``lgrpo_num_tokens`` (Σ kept |o|).
    """
    n_rows = all_lengths.numel() - start if n_rows is None else n_rows
    keep = torch.ones_like(all_lengths)
    statistics: dict[str, Any] = {}
    if all_advantages is not None:
        zero = torch.isclose(all_advantages.view(-1, group_size), torch.zeros_like(all_advantages[:1]), atol=1e-6)
        keep = (~zero.all(dim=1)).repeat_interleave(group_size).to(all_lengths.dtype)
        statistics["frac_groups_dropped"] = 1.0 - keep.mean().item()
    rows = torch.arange(start, start + n_rows, device=all_lengths.device)
    statistics.update(
        lgrpo_lengths=all_lengths[rows],
        lgrpo_group_lengths=all_lengths.view(-1, group_size)[rows // group_size],
        lgrpo_index_in_group=rows % group_size,
        lgrpo_keep=keep[rows],
        lgrpo_num_completions=keep.sum(),
        lgrpo_num_tokens=(all_lengths * keep).sum(),
    )
    return statistics


class UnifiedLossGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose loss is ``Σ_i w_i Σ_t ℓ_{i,t}`` for a registered algorithm.

    Args (beyond GRPOTrainer's):
        algorithm: the spec (``lgrpo_bench.algorithms.ALGORITHMS[name]``).
        lam_init: initial λ (used when ``algorithm.uses_lambda``).
        lambda_lr: Adam learning rate of λ.
        lambda_learnable: False freezes λ at ``lam_init``.
        r: λ-GRPO's z scale.
    """

    def __init__(
        self,
        *args: Any,
        algorithm: AlgorithmSpec,
        lam_init: float = 0.0,
        lambda_lr: float = 1e-2,
        lambda_learnable: bool = True,
        r: float = 1 / 9,
        **kwargs: Any,
    ):
        self.algorithm = algorithm
        self.lambda_lr = lambda_lr
        self.lambda_learnable = bool(algorithm.uses_lambda and lambda_learnable)
        self.r = r
        self.lam = torch.nn.Parameter(torch.tensor(float(lam_init)), requires_grad=self.lambda_learnable)
        self._lam_before_step = float(lam_init)
        #: (step, completion length, weight per token relative to DAPO) of the rows of every micro-batch.
        self.token_weight_records: list[tuple[int, int, float]] = []
        super().__init__(*args, **kwargs)
        self._refuse_unsupported_options()
        self.lam.data = self.lam.data.to(self.accelerator.device)

    # -- set-up -------------------------------------------------------------------------------------
    def _refuse_unsupported_options(self) -> None:
        args = self.args
        unsupported = {
            "importance_sampling_level": (args.importance_sampling_level, "token"),
            "top_entropy_quantile": (args.top_entropy_quantile, 1.0),
            "off_policy_mask_threshold": (args.off_policy_mask_threshold, None),
            "entropy bonus (entropy_coef)": (bool(getattr(self, "_entropy_bonus_enabled", False)), False),
            "MoE aux loss": (bool(self.aux_loss_enabled), False),
        }
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(f"UnifiedLossGRPOTrainer does not support {name}={value!r} (needs {supported!r})")
        if self.tools or self.environment_factories is not None:
            raise ValueError("UnifiedLossGRPOTrainer does not support tools or environments")

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.lambda_learnable and not any(self.lam is p for g in optimizer.param_groups for p in g["params"]):
            optimizer.add_param_group({"params": [self.lam], "lr": self.lambda_lr, "weight_decay": 0.0})
            optimizer.register_step_pre_hook(self._before_optimizer_step)
            optimizer.register_step_post_hook(self._after_optimizer_step)
        return optimizer

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self.lam.grad is not None and self.accelerator.num_processes > 1:
            self.lam.grad = self.accelerator.reduce(self.lam.grad, reduction="mean")
        self._lam_before_step = float(self.lam.detach())
        grad = 0.0 if self.lam.grad is None else float(self.lam.grad)
        self._metrics["train"]["lambda_grad"].append(grad)

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        self.lam.grad = None
        value = float(self.lam.detach())
        self._metrics["train"]["lambda"].append(value)
        self._metrics["train"]["dlambda"].append(value - self._lam_before_step)

    # -- generation: group statistics while the batch is complete ---------------------------------
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval

        loss_mask = output["completion_mask"]
        if "tool_mask" in output:
            loss_mask = loss_mask * output["tool_mask"]
        local_lengths = loss_mask.sum(dim=1).to(torch.float32)
        all_lengths = self.accelerator.gather(local_lengths)
        all_advantages = None
        if self.algorithm.drop_uniform_reward_groups:
            all_advantages = self.accelerator.gather(output["advantages"].to(torch.float32))
        statistics = row_group_statistics(
            all_lengths, group_size, start=self.accelerator.process_index * local_lengths.numel(),
            n_rows=local_lengths.numel(), all_advantages=all_advantages,
        )
        if all_advantages is not None:
            self._metrics[mode]["frac_groups_dropped"].append(statistics.pop("frac_groups_dropped"))
        output.update(statistics)
        return output

    # -- loss -------------------------------------------------------------------------------------
    def completion_weights_for(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, WeightInputs]:
        """w_i for the rows of ``inputs`` (differentiable in λ), and the inputs they were computed from."""
        weight_inputs = WeightInputs(
            lengths=inputs["lgrpo_lengths"],
            group_lengths=inputs["lgrpo_group_lengths"],
            index_in_group=inputs["lgrpo_index_in_group"],
            num_completions=inputs["lgrpo_num_completions"],
            num_tokens=inputs["lgrpo_num_tokens"],
            max_completion_length=self.max_completion_length,
        )
        lam = self.lam if self.algorithm.uses_lambda else None
        weights = self.algorithm.weight(weight_inputs, lam, self.r) * inputs["lgrpo_keep"]
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
        advantages = inputs["advantages"]
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1)
        old_per_token_logps = inputs.get("old_per_token_logps")
        if old_per_token_logps is None:
            old_per_token_logps = per_token_logps.detach()

        ratio = torch.exp(per_token_logps - old_per_token_logps)
        clipped_ratio = torch.clamp(ratio, 1 - self.epsilon_low, 1 + self.epsilon_high)
        policy_ratio = ratio if self.args.delta is None else torch.clamp(ratio, max=self.args.delta)
        per_token_loss = -torch.min(policy_ratio * advantages, clipped_ratio * advantages)
        if self.use_vllm and self.vllm_importance_sampling_correction:
            per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]
        if self.beta != 0.0:
            ref_logps = inputs["ref_per_token_logps"]
            per_token_kl = torch.exp(ref_logps - per_token_logps) - (ref_logps - per_token_logps) - 1
            if self.args.use_bias_correction_kl:
                per_token_kl = per_token_kl * ratio
            per_token_loss = per_token_loss + self.beta * per_token_kl

        completion_loss = (per_token_loss * mask).sum(dim=1)  # Σ_t ℓ_{i,t}
        weights, weight_inputs = self.completion_weights_for(inputs)
        loss = (weights * completion_loss).sum() * self.loss_scale(mode)

        self._log_loss_metrics(mode, inputs, weights, weight_inputs, ratio, advantages, mask, entropies,
                               per_token_kl if self.beta != 0.0 else None)
        return loss

    @torch.no_grad()
    def _log_loss_metrics(self, mode, inputs, weights, weight_inputs, ratio, advantages, mask, entropies, per_token_kl):
        def global_masked_mean(values: torch.Tensor) -> float:
            totals = self.accelerator.reduce(torch.stack([(values * mask).sum(), mask.sum().float()]), reduction="sum")
            return (totals[0] / totals[1].clamp(min=1.0)).item()

        metrics = self._metrics[mode]
        metrics["entropy"].append(global_masked_mean(entropies))
        if per_token_kl is not None:
            metrics["kl"].append(global_masked_mean(per_token_kl))
        low = (ratio < 1 - self.epsilon_low) & (advantages < 0)
        high = (ratio > 1 + self.epsilon_high) & (advantages > 0)
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
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = RunLayout(Path(self._get_output_dir(trial=trial))).checkpoint_dir(self.state.global_step)
            with open(os.path.join(folder, LAMBDA_STATE_FILE), "w") as handle:
                json.dump({"lambda": float(self.lam.detach()), "learnable": self.lambda_learnable}, handle)
            write_checkpoint_manifest(folder)  # last: a checkpoint without it is incomplete (never resumed from)

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is not None:
            path = os.path.join(checkpoint, LAMBDA_STATE_FILE)
            if os.path.exists(path):
                with open(path) as handle:
                    self.lam.data.fill_(json.load(handle)["lambda"])
        super()._load_optimizer_and_scheduler(checkpoint)
