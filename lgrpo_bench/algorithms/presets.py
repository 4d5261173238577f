"""The GRPO design space as four orthogonal axes, the named presets, and the rules for combining them.

An algorithm is four choices (one small module per value, in ``aggregation/``, ``surrogate/``, ``advantage/``,
``group_filter/``) plus the hyperparameters those choices use:

    L = Σ_i w_i Σ_t ℓ_{i,t}          w_i: aggregation,  ℓ_{i,t}: surrogate of the ratio ρ and the advantage A_i,
                                      A_i: advantage,    which groups enter the batch: group filter.

A preset (``algorithm.name``) fixes all four and their hyperparameters; every field of a preset can be overridden
(``{name: cispo, aggregation: lambda}`` is λ-weighted CISPO). :func:`resolve_algorithm` turns a config's
``algorithm`` section into a :class:`ResolvedAlgorithm` (every axis value and every hyperparameter the chosen
values use; the others are None), refuses combinations that make no sense with the reason, and attaches a
one-line note to combinations that are legal but easy to misread (TRL warns about some of them).

This module is pure Python on purpose: config validation, ``lgrpo-bench plan`` and ``config show`` use it
without importing torch. The equations live in the axis modules' docstrings; here is plain data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Axis name -> {value: one-line description (equation and source)}. The order is the order of listings.
AXES: dict[str, dict[str, str]] = {
    "aggregation": {
        "seq_mean_token_mean": "w_i = 1/(N·|o_i|): token mean per completion, mean over completions (GRPO, arXiv 2402.03300)",
        "token_mean": "w_i = 1/Σ_j|o_j| over the accumulated batch, all processes (DAPO, arXiv 2503.14476)",
        "constant": "w_i = 1/(N·L_max) (Dr. GRPO, arXiv 2503.20783)",
        "local_token_mean": "w_i = 1/(M·Σ_{j∈mb}|o_j|): token mean of each micro-batch, mean over the M micro-batches (TRL bnpo)",
        "prompt_mean": "w_i = 1/(P·Σ_{j∈g(i)}|o_j|): token mean inside each prompt's group, mean over prompts (ScaleRL, arXiv 2510.13786)",
        "lambda": "w_i = f_i/Σ_j|o_j|, f = G·softmax_g(h^λ), h = max(1 + r·z(|o|), 1e-6), λ learned or frozen (λ-GRPO, arXiv 2510.06870)",
    },
    "surrogate": {
        "clip": "ℓ = −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A), ρ per token (PPO; GRPO; DAPO's clip-higher ε_high 0.28)",
        "cispo": "ℓ = −sg(min(ρ, ε_max))·A·log π_θ (MiniMax-M1, arXiv 2506.13585; ε_max as in ScaleRL and TRL)",
        "sapo": "ℓ = −(4/τ)·σ(τ(ρ−1))·A, τ = τ_pos if A > 0 else τ_neg (SAPO, arXiv 2511.20347)",
        "gspo": "ℓ = −min(sA, clip(s, 1−ε_low, 1+ε_high)A), s_i = exp(mean_t log ρ_{i,t}) per sequence (GSPO, arXiv 2507.18071)",
    },
    "advantage": {
        "group_std": "A_i = (R_i − mean_g R)/(std_g R + 1e-4), sample std (GRPO; TRL scale_rewards=group)",
        "group_mean": "A_i = R_i − mean_g R (Dr. GRPO, arXiv 2503.20783; TRL scale_rewards=none)",
        "batch_std": "A_i = (R_i − mean_g R)/(std_batch R + 1e-4), sample std over the groups in the loss (PPO-Lite, arXiv 2508.08221; TRL scale_rewards=batch)",
    },
    "group_filter": {
        "none": "every generated group enters the loss",
        "drop": "groups whose accuracy is uniform (all correct or all wrong) leave the loss and its normaliser; the batch shrinks",
        "resample": "keep generating groups from new prompts until the batch holds prompts_per_step mixed-accuracy groups, "
                    "at most max_generation_batches rounds (DAPO's dynamic sampling, arXiv 2503.14476 §3.2; verl filter_groups)",
    },
}
AXIS_NAMES: tuple[str, ...] = tuple(AXES)

#: Aggregations whose per-token weight makes a sequence-level ratio count |o_i| times (TRL warns about these).
TOKEN_LEVEL_AGGREGATIONS = ("token_mean", "constant", "local_token_mean", "prompt_mean", "lambda")

#: Default number of generation rounds a ``resample`` step may use (verl's DAPO recipe: max_num_gen_batches 10).
DEFAULT_MAX_GENERATION_BATCHES = 10
#: CISPO's cap on the importance weight (TRL's recommended ``epsilon_high`` for ``loss_type="cispo"``; ScaleRL 4–5).
DEFAULT_CISPO_EPSILON_MAX = 5.0


@dataclass(frozen=True)
class Preset:
    """A named algorithm: its four axis values and the hyperparameters it fixes (``algorithm.name``)."""

    name: str
    summary: str
    reference: str
    aggregation: str
    surrogate: str
    advantage: str
    group_filter: str
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    cispo_epsilon_max: float = DEFAULT_CISPO_EPSILON_MAX
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05
    mask_truncated_completions: bool = False
    overlong_penalty: bool = False
    max_generation_batches: int = DEFAULT_MAX_GENERATION_BATCHES

    @property
    def uses_lambda(self) -> bool:
        return self.aggregation == "lambda"


_PRESET_LIST = (
    Preset("grpo", "GRPO: per-completion token mean, std-scaled advantages",
           "Shao et al. 2024, DeepSeekMath, arXiv:2402.03300 §4.1", "seq_mean_token_mean", "clip", "group_std", "none"),
    Preset("dapo", "DAPO's token-level mean only (what the λ-GRPO paper and TRL call DAPO)",
           "Yu et al. 2025, DAPO, arXiv:2503.14476 §3.3", "token_mean", "clip", "group_std", "none"),
    Preset("dr_grpo", "Dr. GRPO: token sum / (N·L_max), advantages not scaled by the std",
           "Liu et al. 2025, arXiv:2503.20783 §3", "constant", "clip", "group_mean", "none"),
    Preset("lambda_grpo", "λ-GRPO: token mean re-weighted by a learned length preference f = G·softmax(h^λ)",
           "λ-GRPO, arXiv:2510.06870 §3", "lambda", "clip", "group_std", "none"),
    Preset("dapo_full", "Full DAPO: token mean, clip-higher 0.2/0.28, overlong shaping, truncation mask, "
           "dynamic sampling with re-sampling", "Yu et al. 2025, DAPO, arXiv:2503.14476 §3.1-3.4",
           "token_mean", "clip", "group_std", "resample", epsilon_high=0.28, mask_truncated_completions=True,
           overlong_penalty=True),
    Preset("gspo", "GSPO: sequence-level ratio clipped per sequence (ε 3e-4/4e-4), sequence mean",
           "Zheng et al. 2025, GSPO, arXiv:2507.18071 §4", "seq_mean_token_mean", "gspo", "group_std", "none",
           epsilon_low=3e-4, epsilon_high=4e-4),
    Preset("cispo", "CISPO: clipped, stop-gradient importance weight times A·log π; token mean",
           "MiniMax-M1, arXiv:2506.13585 §3.1", "token_mean", "cispo", "group_std", "none"),
    Preset("sapo", "SAPO: soft sigmoid gate instead of the hard clip (τ_pos 1.0, τ_neg 1.05); sequence mean",
           "SAPO, Soft Adaptive Policy Optimization, arXiv:2511.20347", "seq_mean_token_mean", "sapo", "group_std", "none"),
    Preset("bnpo", "BNPO as TRL implements it: token mean of each local micro-batch",
           "TRL 1.16 loss_type=bnpo (trl/trainer/grpo_config.py)", "local_token_mean", "clip", "group_std", "none"),
)

#: Registry: preset name -> :class:`Preset`. Also exported as ``lgrpo_bench.algorithms.ALGORITHMS``.
PRESETS: dict[str, Preset] = {preset.name: preset for preset in _PRESET_LIST}


class AlgorithmError(ValueError):
    """A refused algorithm config. ``key`` is the dotted config key at fault (None for a combination of keys)."""

    def __init__(self, message: str, key: str | None = None, value: Any = None):
        super().__init__(message)
        self.key = key
        self.value = value


def get_preset(name: str) -> Preset:
    """The preset registered under ``name``; an :class:`AlgorithmError` listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise AlgorithmError(f"unknown algorithm {name!r}: choose one of {', '.join(PRESETS)}", "algorithm.name", name) from None


def max_safe_r(group_size: int) -> float:
    """The largest r for which 1 + r·z > 0 in every group: min z = −sqrt(G−1) (population std of the lengths)."""
    return 1.0 / math.sqrt(group_size - 1)


@dataclass(frozen=True)
class ResolvedAlgorithm:
    """Every axis value and hyperparameter one run trains with. Hyperparameters its axis values do not use are None.

    ``notes`` are one-line explanations of legal but easy-to-misread combinations (not part of the identity).
    """

    name: str
    aggregation: str
    surrogate: str
    advantage: str
    group_filter: str
    epsilon_low: float | None = None
    epsilon_high: float | None = None
    cispo_epsilon_max: float | None = None
    sapo_temperature_pos: float | None = None
    sapo_temperature_neg: float | None = None
    r: float | None = None
    lam_init: float | None = None
    lambda_learnable: bool | None = None
    lambda_lr: float | None = None
    lambda_optimizer: str | None = None
    mask_truncated_completions: bool = False
    overlong_penalty: bool = False
    overlong_buffer_tokens: int | None = None
    max_generation_batches: int | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def uses_lambda(self) -> bool:
        return self.aggregation == "lambda"

    @property
    def axes(self) -> dict[str, str]:
        return {axis: getattr(self, axis) for axis in AXIS_NAMES}

    def identity(self) -> dict[str, Any]:
        """What makes two runs train identically, plus the preset name (reports group rows by it): the run id's
        ``algorithm`` section. Unused hyperparameters are None, so they never split a run id."""
        data = asdict(self)
        data.pop("notes")
        return data


def _value(section: Mapping[str, Any], key: str, default: Any) -> Any:
    value = section.get(key)
    return default if value is None else value


def _choice(section: Mapping[str, Any], axis: str, preset: Preset) -> str:
    value = section.get(axis)
    if value is None:
        return getattr(preset, axis)
    if value not in AXES[axis]:
        raise AlgorithmError(f"unknown {axis} {value!r}: choose one of {', '.join(AXES[axis])}", f"algorithm.{axis}", value)
    return value


def resolve_algorithm(
    section: Mapping[str, Any],
    *,
    num_generations: int,
    max_completion_length: int,
    num_iterations: int = 1,
) -> ResolvedAlgorithm:
    """Expand ``algorithm.name`` into its preset, apply the section's overrides, check the combination.

    Args:
        section: the config's ``algorithm`` section as a mapping (``AlgorithmConfig.model_dump()``); None values
            mean "the preset's".
        num_generations: G (λ's r must keep 1 + r·z > 0 for every group of G).
        max_completion_length: L_max (the overlong buffer must fit inside it).
        num_iterations: passes over each generation batch (1 = on-policy: ρ ≡ 1, noted for non-clip surrogates).
    Raises:
        AlgorithmError: an unknown name or axis value (``key`` names it), or a refused combination (``key`` None).

    Rules (README, "The unified loss"):
      refused — λ's r ≥ 1/sqrt(G−1) (h = 1 + r·z would reach 0); CISPO's ε_max < 1 (it would cap the on-policy
      ratio 1 and scale every gradient down); an overlong buffer longer than L_max;
      noted — GSPO's sequence ratio with a token-level aggregation; any non-clip surrogate on-policy; the
      local (micro-batch) token mean; ``drop`` (the batch shrinks);
      ignored — hyperparameters the chosen values do not use (they are None in the result and not in the run id).
    """
    preset = get_preset(section.get("name") or "lambda_grpo")
    aggregation = _choice(section, "aggregation", preset)
    surrogate = _choice(section, "surrogate", preset)
    advantage = _choice(section, "advantage", preset)
    group_filter = _choice(section, "group_filter", preset)
    values: dict[str, Any] = {}
    notes: list[str] = []

    if surrogate in ("clip", "gspo"):
        values["epsilon_low"] = _value(section, "epsilon_low", preset.epsilon_low)
        values["epsilon_high"] = _value(section, "epsilon_high", preset.epsilon_high)
    if surrogate == "cispo":
        cap = _value(section, "cispo_epsilon_max", preset.cispo_epsilon_max)
        if cap < 1:
            raise AlgorithmError(
                f"algorithm.cispo_epsilon_max={cap:g} caps the importance weight below 1, so even on-policy tokens "
                f"(ρ = 1) get weight {cap:g}: every gradient is scaled down (TRL's cispo with its default epsilon_high "
                f"0.2 does this silently); use a cap ≥ 1 (ScaleRL and TRL: 4-5)")
        values["cispo_epsilon_max"] = cap
    if surrogate == "sapo":
        values["sapo_temperature_pos"] = _value(section, "sapo_temperature_pos", preset.sapo_temperature_pos)
        values["sapo_temperature_neg"] = _value(section, "sapo_temperature_neg", preset.sapo_temperature_neg)
    if aggregation == "lambda":
        r = _value(section, "r", 1 / 9)
        if r >= max_safe_r(num_generations):
            raise AlgorithmError(
                f"algorithm.r={r:g} is too large for train.num_generations={num_generations}: "
                f"1 + r·z reaches 1 - r·sqrt(G-1) = {1 - r * math.sqrt(num_generations - 1):.3f} ≤ 0; "
                f"use r < {max_safe_r(num_generations):.4f}")
        learnable = bool(_value(section, "lambda_learnable", True))
        values.update(r=r, lam_init=float(_value(section, "lam_init", 0.0)), lambda_learnable=learnable)
        if learnable:
            values.update(lambda_lr=_value(section, "lambda_lr", 1e-2),
                          lambda_optimizer=_value(section, "lambda_optimizer", "adam"))
    mask_truncated = bool(_value(section, "mask_truncated_completions", preset.mask_truncated_completions))
    overlong = bool(_value(section, "overlong_penalty", preset.overlong_penalty))
    values.update(mask_truncated_completions=mask_truncated, overlong_penalty=overlong)
    if overlong:
        buffer = _value(section, "overlong_buffer_tokens", max(1, max_completion_length // 5))
        if buffer > max_completion_length:
            raise AlgorithmError(
                f"algorithm.overlong_buffer_tokens={buffer} is longer than train.max_completion_length="
                f"{max_completion_length}: the soft overlong penalty would start before the first token; use at most "
                f"{max_completion_length} (DAPO: 4,096 of 20,480)")
        values["overlong_buffer_tokens"] = buffer
    if group_filter == "resample":
        values["max_generation_batches"] = _value(section, "max_generation_batches", preset.max_generation_batches)

    if surrogate == "gspo" and aggregation in TOKEN_LEVEL_AGGREGATIONS:
        notes.append(f"gspo with aggregation {aggregation}: the sequence-level loss is summed over tokens, so each "
                     f"completion counts |o_i| times (longer ones weigh more); the GSPO paper uses seq_mean_token_mean "
                     f"(TRL warns about this combination)")
    if surrogate != "clip" and num_iterations == 1:
        notes.append(f"{surrogate} on-policy (train.num_iterations 1): ρ ≡ 1, so its gradient equals clip's; set "
                     f"train.num_iterations > 1 for the surrogates to differ")
    if aggregation == "local_token_mean":
        notes.append("local_token_mean normalises by each micro-batch's tokens: results depend on "
                     "gradient_accumulation_steps and the number of processes (as TRL's bnpo docs say)")
    if group_filter == "drop":
        notes.append("group_filter drop: uniform-accuracy groups leave the loss and the batch shrinks step to step; "
                     "resample refills it")
    return ResolvedAlgorithm(name=preset.name, aggregation=aggregation, surrogate=surrogate, advantage=advantage,
                             group_filter=group_filter, notes=tuple(notes), **values)


@functools.lru_cache(maxsize=4096)
def _resolve_cached(section_items: tuple, num_generations: int, max_completion_length: int,
                    num_iterations: int) -> ResolvedAlgorithm:
    return resolve_algorithm(dict(section_items), num_generations=num_generations,
                             max_completion_length=max_completion_length, num_iterations=num_iterations)


def algorithm_of(config) -> ResolvedAlgorithm:
    """The algorithm a run config (:class:`~lgrpo_bench.config.RunConfig`) trains with; :class:`AlgorithmError` when
    it is refused. Cached by the algorithm section and the train options it depends on (grids of 10,000 points
    share a handful of algorithm sections)."""
    section = tuple(sorted(config.algorithm.model_dump().items()))
    return _resolve_cached(section, config.train.num_generations, config.train.max_completion_length,
                           config.train.num_iterations)


def preset_algorithm(name: str, *, num_generations: int = 8, max_completion_length: int = 512,
                     num_iterations: int = 1, **overrides: Any) -> ResolvedAlgorithm:
    """``resolve_algorithm({"name": name, **overrides}, ...)``: a shortcut for scripts and tests."""
    return resolve_algorithm({"name": name, **overrides}, num_generations=num_generations,
                             max_completion_length=max_completion_length, num_iterations=num_iterations)


#: TRL 1.16 loss_type that reproduces (aggregation, surrogate); GSPO adds importance_sampling_level="sequence".
_TRL_LOSS_TYPES: dict[tuple[str, str], str] = {
    ("seq_mean_token_mean", "clip"): "grpo",
    ("token_mean", "clip"): "dapo",
    ("constant", "clip"): "dr_grpo",
    ("local_token_mean", "clip"): "bnpo",
    ("token_mean", "cispo"): "cispo",
    ("seq_mean_token_mean", "sapo"): "sapo",
    ("seq_mean_token_mean", "gspo"): "grpo",
    ("token_mean", "gspo"): "dapo",
    ("constant", "gspo"): "dr_grpo",
    ("local_token_mean", "gspo"): "bnpo",
}
_TRL_SCALE_REWARDS = {"group_std": "group", "group_mean": "none", "batch_std": "batch"}


def trl_equivalent(algorithm: ResolvedAlgorithm) -> dict[str, Any] | None:
    """The TRL 1.16 ``GRPOConfig`` options whose built-in loss equals this combination's, or None.

    Covers the loss (``loss_type``, ``importance_sampling_level``, ``epsilon``/``epsilon_high``,
    ``sapo_temperature_*``) and the advantages (``scale_rewards``); TRL has no λ, no prompt mean and no group filter.
    """
    loss_type = trl_loss_type(algorithm.aggregation, algorithm.surrogate)
    if loss_type is None or algorithm.group_filter != "none":
        return None
    options: dict[str, Any] = {
        "loss_type": loss_type,
        "importance_sampling_level": "sequence" if algorithm.surrogate == "gspo" else "token",
        "scale_rewards": _TRL_SCALE_REWARDS[algorithm.advantage],
        "mask_truncated_completions": algorithm.mask_truncated_completions,
    }
    if algorithm.surrogate in ("clip", "gspo"):
        options.update(epsilon=algorithm.epsilon_low, epsilon_high=algorithm.epsilon_high)
    elif algorithm.surrogate == "cispo":
        options["epsilon_high"] = algorithm.cispo_epsilon_max
    else:
        options.update(sapo_temperature_pos=algorithm.sapo_temperature_pos,
                       sapo_temperature_neg=algorithm.sapo_temperature_neg)
    return options


def trl_loss_type(aggregation: str, surrogate: str) -> str | None:
    """TRL 1.16's ``loss_type`` whose normaliser and per-token loss match (aggregation, surrogate), or None."""
    return _TRL_LOSS_TYPES.get((aggregation, surrogate))


def trl_scale_rewards(advantage: str) -> str:
    """TRL's ``scale_rewards`` value for an advantage axis value (every one has an equivalent)."""
    return _TRL_SCALE_REWARDS[advantage]


__all__ = [
    "AXES", "AXIS_NAMES", "AlgorithmError", "DEFAULT_CISPO_EPSILON_MAX", "DEFAULT_MAX_GENERATION_BATCHES", "PRESETS",
    "Preset", "ResolvedAlgorithm", "TOKEN_LEVEL_AGGREGATIONS", "get_preset", "max_safe_r", "preset_algorithm",
    "resolve_algorithm", "trl_equivalent", "trl_loss_type", "trl_scale_rewards",
]
