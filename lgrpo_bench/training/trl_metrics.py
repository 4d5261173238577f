"""TRL's log keys onto our metric names: the ``GRPOTrainer`` (and ``transformers.Trainer``) log dict, renamed.

The names themselves (``train/...``, ``eval/<benchmark>/...``) are the schema's (:mod:`lgrpo_bench.tracking.schema`);
this module only knows which TRL key each one is, so it lives next to the trainer and changes with the TRL version.

* :data:`TRL_TO_SCHEMA` — TRL/transformers log key → schema name;
* :func:`map_trl_key` — one key: the table, else the generic rule (``train/<key>`` with characters MLflow would
  reject replaced by ``_``, see :func:`~lgrpo_bench.tracking.schema.strict_metric_name`); keys that already start
  with ``train/`` or ``eval/`` pass through; keys of the trainer's in-loop evaluation (``eval_<key>``) become
  ``eval/trainer_eval/<mapped key without train/>``;
* :func:`map_trl_logs` — a whole log dict, refusing two keys that map to one name.

Standard library and the schema only (no TRL import): the MLflow callback
(:class:`lgrpo_bench.tracking.callback.MlflowStepCallback`) and the pruning callback get :func:`map_trl_key` from
:mod:`lgrpo_bench.training.run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lgrpo_bench.tracking.schema import (
    EVAL_PREFIX,
    TRAIN_CLIP_FRACTION,
    TRAIN_COMPLETION_LENGTH_MAX,
    TRAIN_COMPLETION_LENGTH_MEAN,
    TRAIN_COMPLETION_LENGTH_MIN,
    TRAIN_DLAMBDA,
    TRAIN_ENTROPY,
    TRAIN_FRAC_ZERO_STD_GROUPS,
    TRAIN_GRAD_NORM,
    TRAIN_KL,
    TRAIN_LAMBDA,
    TRAIN_LEARNING_RATE,
    TRAIN_LOSS,
    TRAIN_PREFIX,
    TRAIN_REWARD_MEAN,
    TRAIN_REWARD_STD,
    TRAIN_STEP_S,
    TRAIN_TOKENS_PER_S,
    TRAIN_WEIGHT_MAX,
    TRAIN_WEIGHT_MEAN,
    TRAIN_WEIGHT_MIN,
    TRAINER_EVAL_BENCHMARK,
    eval_metric,
    sanitize_metric_name,
    train_metric,
)

__all__ = ["TRL_TO_SCHEMA", "map_trl_key", "map_trl_logs"]

TRL_TO_SCHEMA: dict[str, str] = {
    # transformers.Trainer._maybe_log_save_evaluate / Trainer.log
    "loss": TRAIN_LOSS,
    "grad_norm": TRAIN_GRAD_NORM,
    "learning_rate": TRAIN_LEARNING_RATE,
    "epoch": "train/epoch",
    "num_input_tokens_seen": "train/num_input_tokens_seen",
    "train_tokens_per_second": TRAIN_TOKENS_PER_S,
    # transformers.Trainer._finalize_training: one summary log at the end of train()
    "train_runtime": "train/runtime_s",
    "train_samples_per_second": "train/samples_per_s",
    "train_steps_per_second": "train/steps_per_s",
    "train_loss": "train/loss_run_mean",
    "total_flos": "train/total_flos",
    # trl GRPOTrainer._generate_and_score_completions
    "num_tokens": "train/num_tokens",
    "completions/mean_length": TRAIN_COMPLETION_LENGTH_MEAN,
    "completions/min_length": TRAIN_COMPLETION_LENGTH_MIN,
    "completions/max_length": TRAIN_COMPLETION_LENGTH_MAX,
    # "clipped" here means cut off at max_completion_length (no EOS), not PPO ratio clipping
    "completions/clipped_ratio": "train/completion_truncated_frac",
    "completions/mean_terminated_length": "train/terminated_length_mean",
    "completions/min_terminated_length": "train/terminated_length_min",
    "completions/max_terminated_length": "train/terminated_length_max",
    "tools/call_frequency": "train/tool_call_frequency",
    "tools/failure_frequency": "train/tool_failure_frequency",
    "reward": TRAIN_REWARD_MEAN,
    "reward_std": TRAIN_REWARD_STD,
    "frac_reward_zero_std": TRAIN_FRAC_ZERO_STD_GROUPS,
    # per reward function: "rewards/<func_name>/mean|std" -> "train/rewards/<func_name>/mean|std" (generic rule)
    "sampling/sampling_logp_difference/mean": "train/sampling_logp_diff_mean",
    "sampling/sampling_logp_difference/max": "train/sampling_logp_diff_max",
    "sampling/importance_sampling_ratio/min": "train/sampling_is_ratio_min",
    "sampling/importance_sampling_ratio/mean": "train/sampling_is_ratio_mean",
    "sampling/importance_sampling_ratio/max": "train/sampling_is_ratio_max",
    # trl GRPOTrainer._compute_loss
    "policy_loss": "train/policy_loss",
    "entropy_coef": "train/entropy_coef",
    "aux_loss": "train/aux_loss",
    "kl": TRAIN_KL,
    "entropy": TRAIN_ENTROPY,
    "clip_ratio/region_mean": TRAIN_CLIP_FRACTION,
    "clip_ratio/low_mean": "train/clip_fraction_low",
    "clip_ratio/high_mean": "train/clip_fraction_high",
    "clip_ratio/low_min": "train/clip_fraction_low_min",
    "clip_ratio/high_max": "train/clip_fraction_high_max",
    "cispo_clip_ratio": "train/cispo_clip_fraction",
    "vespo/phi_seq_mean": "train/vespo_phi_seq_mean",
    # trl GRPOTrainer.training_step (time of one optimizer step, summed over gradient accumulation)
    "step_time": TRAIN_STEP_S,
    # lgrpo_bench.training.trainer (our GRPOTrainer subclass) adds these to the same log dict
    "lambda": TRAIN_LAMBDA,
    "dlambda": TRAIN_DLAMBDA,
    "lambda_grad": "train/lambda_grad",
    "weight_mean": TRAIN_WEIGHT_MEAN,
    "weight_min": TRAIN_WEIGHT_MIN,
    "weight_max": TRAIN_WEIGHT_MAX,
    "frac_groups_dropped": "train/frac_groups_dropped",
}
"""TRL 1.16 ``GRPOTrainer`` (and ``transformers.Trainer``) log keys and the schema names they are stored under.

Read off ``trl/trainer/grpo_trainer.py`` (``_generate_and_score_completions``, ``_calculate_rewards``,
``_compute_loss``, ``training_step``, ``log``) and ``transformers/trainer.py`` (``log``,
``_maybe_log_save_evaluate``, ``_finalize_training``). Keys not listed are still kept, by the generic rule
of :func:`map_trl_key`.
"""


def map_trl_key(key: str) -> str:
    """The schema metric name for one TRL/transformers log key.

    * ``train/...`` and ``eval/...`` keys pass through (sanitized only if MLflow would reject them);
    * keys in :data:`TRL_TO_SCHEMA` map as listed;
    * ``eval_<key>`` (the trainer's in-loop evaluation) maps ``<key>`` as above and moves it from ``train/``
      to ``eval/trainer_eval/``: ``eval_reward -> eval/trainer_eval/reward_mean``;
    * anything else becomes ``train/<key>`` with characters outside ``[A-Za-z0-9_/.-]`` replaced by ``_``
      (``rewards/accuracy_reward/mean -> train/rewards/accuracy_reward/mean``).
    """
    if key.startswith((TRAIN_PREFIX, EVAL_PREFIX)):
        return sanitize_metric_name(key)
    if key in TRL_TO_SCHEMA:
        return TRL_TO_SCHEMA[key]
    if key.startswith("eval_") and len(key) > len("eval_"):
        as_train = map_trl_key(key[len("eval_") :])
        suffix = as_train[len(TRAIN_PREFIX) :] if as_train.startswith(TRAIN_PREFIX) else as_train
        return eval_metric(TRAINER_EVAL_BENCHMARK, suffix)
    return train_metric(key)


def map_trl_logs(logs: Mapping[str, Any]) -> dict[str, Any]:
    """``logs`` with every key renamed by :func:`map_trl_key`; values untouched.

    Raises ``ValueError`` when two keys map to the same name (keeping either would silently drop the other).
    """
    mapped: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in logs.items():
        name = map_trl_key(str(key))
        if name in mapped:
            raise ValueError(
                f"log keys {sources[name]!r} and {key!r} both map to metric {name!r}; rename one of them "
                f"(or add an explicit entry to lgrpo_bench.training.trl_metrics.TRL_TO_SCHEMA)"
            )
        mapped[name] = value
        sources[name] = str(key)
    return mapped
