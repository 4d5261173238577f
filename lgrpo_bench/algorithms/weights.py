"""w_i for a whole batch whose groups are consecutive (tests, reports, benchmarks; the trainer weights rows)."""

from __future__ import annotations

import torch

from lgrpo_bench.algorithms.aggregation import AGGREGATIONS
from lgrpo_bench.algorithms.base import WeightInputs, as_float
from lgrpo_bench.algorithms.presets import HYPERPARAMETERS, PRESETS, AlgorithmError


def batch_weight_inputs(
    lengths: torch.Tensor,
    group_size: int,
    max_completion_length: int,
    keep: torch.Tensor | None = None,
) -> WeightInputs:
    """Row inputs for a whole batch whose groups are consecutive (N = n_groups·G), as one micro-batch.

    ``keep`` (N,) marks the completions that enter the loss; the others get weight 0 elsewhere and do not
    count in N, Σ|o| or P.
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
        num_groups=keep_f.sum() / group_size,
    )


def aggregation_of(name: str) -> str:
    """The aggregation a name stands for: an aggregation name, or a preset's aggregation."""
    if name in AGGREGATIONS:
        return name
    if name in PRESETS:
        return PRESETS[name].aggregation
    raise AlgorithmError(f"unknown algorithm {name!r}: choose one of {', '.join(PRESETS)} "
                         f"(presets) or {', '.join(AGGREGATIONS)} (aggregations)")


def completion_weights(
    name: str,
    lengths: torch.Tensor,
    *,
    group_size: int,
    lam: torch.Tensor | float | None = None,
    r: float = HYPERPARAMETERS["r"].default,
    max_completion_length: int | None = None,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """w_i for every completion of a batch (groups of ``group_size`` consecutive completions).

    Args:
        name: an aggregation (``token_mean``, ``lambda``, …) or a preset (``grpo``, …: its aggregation).
        lengths: (N,) completion lengths in tokens.
        group_size: G, completions per prompt (≥ 2).
        lam: λ for the ``lambda`` aggregation (default 0.0); a tensor with requires_grad gives d w / d λ.
        r: λ-GRPO's z scale, > 0.
        max_completion_length: L_max, needed by ``constant`` (defaults to max(lengths) otherwise).
        keep: optional (N,) mask of completions that enter the loss.
    Returns:
        (N,) weights; the loss is Σ_i w_i Σ_t ℓ_{i,t}.
    """
    spec = AGGREGATIONS[aggregation_of(name)]
    if spec.uses_lambda and r <= 0:
        raise ValueError(f"r must be > 0 for {name}, got r={r}")
    if max_completion_length is None:
        if spec.name == "constant":
            raise ValueError(f"{name} needs max_completion_length (L_max)")
        max_completion_length = int(lengths.max().item()) if lengths.numel() else 1
    inputs = batch_weight_inputs(lengths, group_size, max_completion_length, keep)
    if spec.uses_lambda and lam is None:
        lam = 0.0
    weights = spec.weight(inputs, torch.as_tensor(lam) if lam is not None else None, r)
    return weights if keep is None else weights * keep.to(weights.dtype)


__all__ = ["aggregation_of", "batch_weight_inputs", "completion_weights"]
