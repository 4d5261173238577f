"""The unified GRPO-family loss: one formula, one choice per axis.

For a batch of N completions o_1..o_N (groups of G consecutive completions share a prompt) every algorithm
minimises

    L = Σ_i w_i · Σ_t ℓ_{i,t}

with the per-completion weight w_i from an *aggregation* (``aggregation/``), the per-token loss ℓ_{i,t} from a
*surrogate* of the ratio ρ_{i,t} = π_θ/π_old and the advantage A_i (``surrogate/``), A_i from an *advantage*
estimator (``advantage/``), and the groups of the batch chosen by a *group filter* (``group_filter/``).

Weights are computed from completion lengths |o_i| (tokens that enter the loss) and are constants, except λ-GRPO's,
which are differentiable in the learnable scalar λ. The functions are pure torch: no I/O, no trainer state. They
work on *rows*: each row carries the lengths of every member of its group (``group_lengths``), its position in the
group and the batch-level totals, so a trainer that shuffles and splits a generation batch into micro-batches (and
processes) can weight any subset of rows exactly as if the whole batch were present.
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
    """What an aggregation needs for a set of rows.

    Attributes:
        lengths: (R,) |o_i| in tokens for the rows being weighted.
        group_lengths: (R, G) the lengths of all G members of each row's group.
        index_in_group: (R,) the position of each row inside its group (0..G-1).
        num_completions: N, completions of the accumulated batch (all processes) that enter the loss.
        num_tokens: Σ_j |o_j| over those completions.
        max_completion_length: L_max, the generation cap in tokens (Dr. GRPO's constant).
        num_groups: P, prompts (groups) that enter the loss; None = N / G.
        local_num_tokens: Σ|o_j| over the kept rows of this micro-batch (local token mean); None = num_tokens.
        num_micro_batches: M, micro-batches the generation batch is split into over all processes (local token mean).
    """

    lengths: torch.Tensor
    group_lengths: torch.Tensor
    index_in_group: torch.Tensor
    num_completions: float | torch.Tensor
    num_tokens: float | torch.Tensor
    max_completion_length: int
    num_groups: float | torch.Tensor | None = None
    local_num_tokens: float | torch.Tensor | None = None
    num_micro_batches: int = 1


WeightFn = Callable[[WeightInputs, "torch.Tensor | None", float], torch.Tensor]


def as_float(values: torch.Tensor) -> torch.Tensor:
    """``values`` as a floating tensor (float32 unless already floating, so float64 checks stay float64)."""
    return values if values.is_floating_point() else values.to(torch.float32)


def as_like(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar (float or 0-d tensor) on ``like``'s dtype and device."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


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


def relative_token_weight(weights: torch.Tensor, inputs: WeightInputs) -> torch.Tensor:
    """w_i · Σ_j|o_j|: the weight per token relative to DAPO's token mean (DAPO ≡ 1)."""
    return weights * as_like(inputs.num_tokens, weights)


__all__ = ["H_MIN", "LENGTH_STD_EPS", "WeightFn", "WeightInputs", "as_float", "as_like", "lambda_preferences",
           "length_zscores", "relative_token_weight"]
