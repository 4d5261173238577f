"""The unified GRPO-family loss: one formula, one per-completion weight per algorithm.

For a batch of N completions o_1..o_N (groups of G consecutive completions share a prompt) and the
per-token surrogate

    ℓ_{i,t} = -min(ρ_{i,t} A_i, clip(ρ_{i,t}, 1-ε_low, 1+ε_high) A_i) + β·KL_{i,t},

every algorithm minimises

    L = Σ_i w_i · Σ_t ℓ_{i,t},

and differs only in the completion weight w_i (and in how A_i is scaled). Weights are computed from
completion lengths |o_i| (tokens that enter the loss) and are constants, except λ-GRPO's, which are
differentiable in the learnable scalar λ.

The functions here are pure torch: no I/O, no trainer state. They work on *rows*: each row carries the
lengths of every member of its group (``group_lengths``), its position in the group and the batch-level
totals N and Σ_j |o_j|. A trainer that shuffles and splits a generation batch into micro-batches can
therefore weight any subset of rows exactly as if the whole batch were present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

#: Added to the population std of the lengths before dividing (λ-GRPO's z-score), as in the paper's code.
LENGTH_STD_EPS = 1e-8
#: Lower clamp for h = 1 + r·z: h^λ is undefined for h ≤ 0 (a concern the paper's reviewers raised).
H_MIN = 1e-6


@dataclass(frozen=True)
class WeightInputs:
    """What a weighting needs for a set of rows.

    Attributes:
        lengths: (R,) |o_i| in tokens for the rows being weighted.
        group_lengths: (R, G) the lengths of all G members of each row's group.
        index_in_group: (R,) the position of each row inside its group (0..G-1).
        num_completions: N, completions of the accumulated batch that enter the loss.
        num_tokens: Σ_j |o_j| over those completions.
        max_completion_length: L_max, the generation cap in tokens (Dr. GRPO's constant).
    """

    lengths: torch.Tensor
    group_lengths: torch.Tensor
    index_in_group: torch.Tensor
    num_completions: float | torch.Tensor
    num_tokens: float | torch.Tensor
    max_completion_length: int


WeightFn = Callable[[WeightInputs, "torch.Tensor | None", float], torch.Tensor]


@dataclass(frozen=True)
class AlgorithmSpec:
    """Everything that distinguishes one GRPO-family algorithm from another.

    Attributes:
        name: registry key (used in configs, MLflow tags, reports).
        summary: one line for ``--help`` and reports.
        reference: the paper (and section) the weighting follows.
        weight: w_i as a function of :class:`WeightInputs`, λ (None for λ-free algorithms) and r.
        scale_advantages: A_i = (R_i - mean_g) / (std_g + eps) when True, R_i - mean_g when False.
        epsilon_low, epsilon_high: the clip range 1-ε_low .. 1+ε_high of the ratio ρ.
        uses_lambda: the algorithm has a λ (learnable unless frozen by config).
        mask_truncated_completions: completions that hit L_max get no loss (DAPO).
        drop_uniform_reward_groups: groups whose G rewards all agree leave the loss and the normaliser
            (DAPO's dynamic sampling, without the re-sampling that refills the batch).
        overlong_penalty: add DAPO's soft overlong punishment to the reward.
    """

    name: str
    summary: str
    reference: str
    weight: WeightFn
    scale_advantages: bool = True
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    uses_lambda: bool = False
    mask_truncated_completions: bool = False
    drop_uniform_reward_groups: bool = False
    overlong_penalty: bool = False


def as_float(values: torch.Tensor) -> torch.Tensor:
    """``values`` as a floating tensor (float32 unless already floating, so float64 checks stay float64)."""
    return values if values.is_floating_point() else values.to(torch.float32)


def length_zscores(group_lengths: torch.Tensor) -> torch.Tensor:
    """z_j = (|o_j| - mean_g|o|) / (std_g|o| + 1e-8), population std, along the last dimension."""
    lengths = as_float(group_lengths)
    mean = lengths.mean(dim=-1, keepdim=True)
    std = lengths.std(dim=-1, unbiased=False, keepdim=True)
    return (lengths - mean) / (std + LENGTH_STD_EPS)


def lambda_preferences(group_lengths: torch.Tensor, lam: torch.Tensor | float, r: float) -> torch.Tensor:
    """λ-GRPO's per-completion factor for every member of every group.

    f_i = G · softmax_{j∈g}(h_j^λ)_i with h_j = max(1 + r·z_j, 1e-6).  Note the softmax is taken over
    the values g_j = h_j^λ themselves (the paper's definition), so λ = 0 gives g = 1 and f = 1 (DAPO).

    Args:
        group_lengths: (..., G) completion lengths of each group.
        lam: scalar λ (a tensor to get gradients).
        r: the scale of z inside h (paper: 1/9).
    Returns:
        (..., G) factors that sum to G along the last dimension.
    """
    group_size = group_lengths.shape[-1]
    h = torch.clamp(1.0 + r * length_zscores(group_lengths), min=H_MIN)
    lam = lam.to(dtype=h.dtype, device=h.device) if isinstance(lam, torch.Tensor) else torch.tensor(lam, dtype=h.dtype)
    g = torch.exp(lam * torch.log(h))
    return group_size * torch.softmax(g, dim=-1)


def max_safe_r(group_size: int) -> float:
    """The largest r for which 1 + r·z > 0 for every possible group: min z = -sqrt(G-1) (population std)."""
    return 1.0 / (group_size - 1) ** 0.5


def relative_token_weight(weights: torch.Tensor, inputs: WeightInputs) -> torch.Tensor:
    """w_i · Σ_j|o_j|: the weight per token relative to DAPO's token mean (DAPO ≡ 1)."""
    return weights * torch.as_tensor(inputs.num_tokens, dtype=weights.dtype, device=weights.device)
