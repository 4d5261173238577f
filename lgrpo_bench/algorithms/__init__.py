"""GRPO-family algorithms as one weighted loss (see :mod:`lgrpo_bench.algorithms.base`).

Adding an algorithm: write a module with a ``SPEC = AlgorithmSpec(...)`` and add it to ``_MODULES``.

    from lgrpo_bench.algorithms import ALGORITHMS, completion_weights
    w = completion_weights("lambda_grpo", lengths, group_size=8, lam=torch.tensor(0.3), r=1/9,
                           max_completion_length=512)
"""

from __future__ import annotations

import torch

from lgrpo_bench.algorithms import dapo, dapo_full, dr_grpo, grpo, lambda_grpo
from lgrpo_bench.algorithms.base import (
    AlgorithmSpec,
    WeightInputs,
    as_float,
    lambda_preferences,
    length_zscores,
    max_safe_r,
    relative_token_weight,
)

_MODULES = (grpo, dapo, dr_grpo, lambda_grpo, dapo_full)

#: Registry: algorithm name -> spec. The one place an algorithm is registered.
ALGORITHMS: dict[str, AlgorithmSpec] = {module.SPEC.name: module.SPEC for module in _MODULES}


def get_algorithm(name: str) -> AlgorithmSpec:
    """The spec registered under ``name``; a ValueError listing the valid names otherwise."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}: choose one of {', '.join(ALGORITHMS)}") from None


def batch_weight_inputs(
    lengths: torch.Tensor,
    group_size: int,
    max_completion_length: int,
    keep: torch.Tensor | None = None,
) -> WeightInputs:
    """Row inputs for a whole batch whose groups are consecutive (N = n_groups·G).

    ``keep`` (N,) marks the completions that enter the loss; the others get weight 0 elsewhere and do not
    count in N or Σ|o|.
    """
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be a 1-D tensor (N,), got shape {tuple(lengths.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size (num_generations) must be at least 2, got {group_size}")
    if lengths.numel() % group_size != 0:
        raise ValueError(f"len(lengths)={lengths.numel()} is not a multiple of group_size={group_size}")
    lengths = as_float(lengths)
    keep_f = torch.ones_like(lengths) if keep is None else keep.to(lengths.dtype)
    row = torch.arange(lengths.numel(), device=lengths.device)
    return WeightInputs(
        lengths=lengths,
        group_lengths=lengths.view(-1, group_size)[row // group_size],
        index_in_group=row % group_size,
        num_completions=keep_f.sum(),
        num_tokens=(lengths * keep_f).sum(),
        max_completion_length=max_completion_length,
    )


def completion_weights(
    name: str,
    lengths: torch.Tensor,
    *,
    group_size: int,
    lam: torch.Tensor | float | None = None,
    r: float = 1 / 9,
    max_completion_length: int | None = None,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """w_i for every completion of a batch (groups of ``group_size`` consecutive completions).

    Args:
        name: a key of :data:`ALGORITHMS`.
        lengths: (N,) completion lengths in tokens.
        group_size: G, completions per prompt (≥ 2).
        lam: λ for ``lambda_grpo`` (default 0.0); a tensor with requires_grad gives d w / d λ.
        r: λ-GRPO's z scale, > 0.
        max_completion_length: L_max, needed by ``dr_grpo`` (defaults to max(lengths) otherwise).
        keep: optional (N,) mask of completions that enter the loss.
    Returns:
        (N,) weights; the loss is Σ_i w_i Σ_t ℓ_{i,t}.
    """
    spec = get_algorithm(name)
    if spec.uses_lambda and r <= 0:
        raise ValueError(f"r must be > 0 for {name}, got r={r}")
    if max_completion_length is None:
        if name == "dr_grpo":
            raise ValueError("dr_grpo needs max_completion_length (L_max)")
        max_completion_length = int(lengths.max().item()) if lengths.numel() else 1
    inputs = batch_weight_inputs(lengths, group_size, max_completion_length, keep)
    if spec.uses_lambda and lam is None:
        lam = 0.0
    weights = spec.weight(inputs, torch.as_tensor(lam) if lam is not None else None, r)
    return weights if keep is None else weights * keep.to(weights.dtype)


__all__ = [
    "ALGORITHMS",
    "AlgorithmSpec",
    "WeightInputs",
    "batch_weight_inputs",
    "completion_weights",
    "get_algorithm",
    "lambda_preferences",
    "length_zscores",
    "max_safe_r",
    "relative_token_weight",
]
