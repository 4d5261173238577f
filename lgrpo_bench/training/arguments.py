"""TRL ``GRPOConfig`` from a :class:`~lgrpo_bench.config.RunConfig`.

TRL's defaults assume a GPU and a particular recipe (bf16 on, gradient checkpointing on, lr 1e-6,
512-token completions, loss ``dapo``, vLLM importance-sampling correction on): every option that matters
is set here explicitly from our config, so a run means the same thing on a laptop and on a cluster.
"""

from __future__ import annotations

from pathlib import Path

import torch
from trl import GRPOConfig

from lgrpo_bench.algorithms.presets import (
    ResolvedAlgorithm,
    trl_loss_options,
    trl_loss_type,
    trl_scale_rewards,
)
from lgrpo_bench.config import RunConfig


def completions_per_micro_batch(config: RunConfig) -> int:
    """Completions per process per micro-batch: prompts_per_step · G / gradient_accumulation_steps."""
    train = config.train
    return train.prompts_per_step * train.num_generations // train.gradient_accumulation_steps


def grpo_config(config: RunConfig, output_dir: str | Path, *, algorithm: ResolvedAlgorithm,
                cuda: bool | None = None) -> GRPOConfig:
    """The TRL arguments of one run (one process; multi-GPU runs go through ``accelerate launch``).

    The loss options are set to the algorithm's values where TRL has them (``loss_type`` where TRL has an equivalent,
    else its default; the trainer computes the loss from the resolved algorithm either way), so a reader of the
    GRPOConfig sees what the run does and the trainer's consistency check passes. ``algorithm``: the run's, as its prepared
    config states it (``stored_algorithm``: resolved once, when the run was prepared). The surrogate's hyperparameters go to the TRL options its
    module names (``TRL_OPTIONS``); TRL's defaults stand for the rest."""
    train = config.train
    cuda = torch.cuda.is_available() if cuda is None else cuda
    bf16 = cuda if train.bf16 is None else train.bf16
    return GRPOConfig(
        output_dir=str(output_dir),
        seed=train.seed,
        data_seed=train.seed,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        adam_beta1=0.9,
        adam_beta2=0.999,
        per_device_train_batch_size=completions_per_micro_batch(config),
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        steps_per_generation=train.gradient_accumulation_steps,
        num_generations=train.num_generations,
        num_iterations=train.num_iterations,
        max_completion_length=train.max_completion_length,
        temperature=train.temperature,
        top_p=train.top_p,
        top_k=train.top_k,
        beta=train.beta,
        use_bias_correction_kl=train.kl_importance_correction,
        **trl_loss_options(algorithm),
        importance_sampling_level="sequence" if algorithm.surrogate == "gspo" else "token",
        scale_rewards=trl_scale_rewards(algorithm.advantage),
        mask_truncated_completions=algorithm.mask_truncated_completions,
        loss_type=trl_loss_type(algorithm.aggregation, algorithm.surrogate) or "dapo",
        use_vllm=train.use_vllm,
        vllm_importance_sampling_correction=train.vllm_importance_sampling_correction,
        vllm_mode="colocate",
        bf16=bf16,
        fp16=False,
        use_cpu=not cuda,
        activation_checkpointing=train.gradient_checkpointing,
        logging_steps=1,
        save_strategy="steps" if train.save_every else "no",
        save_steps=train.save_every or 10**9,
        save_only_model=False,
        report_to="none",
        disable_tqdm=True,
        log_completions=False,
        shuffle_dataset=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
