"""DAPO's token-level mean (Yu et al. 2025, arXiv:2503.14476 §3.3) over the whole accumulated batch.

    w_i = 1 / Σ_j |o_j|      (j over every completion of the generation batch, on every process)

Every token of the batch weighs the same. TRL ``loss_type="dapo"`` (its default) and ``"cispo"``: TRL divides by
``num_items_in_batch``, the token count gathered over processes; verl ``loss_agg_mode="token-mean"`` (verl #2776
asks whether the mean is per group or per batch: here, per batch). λ-GRPO with λ = 0 is exactly this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a weight is computed: the presets read this module without it
    import torch

    from lgrpo_bench.algorithms.base import WeightInputs


NAME = "token_mean"
SUMMARY = "w_i = 1/Σ_j|o_j| over the accumulated batch, all processes (DAPO, arXiv 2503.14476)"


def weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    import torch
    from lgrpo_bench.algorithms.base import as_float, as_like

    lengths = as_float(inputs.lengths)
    return torch.ones_like(lengths) / as_like(inputs.num_tokens, lengths).clamp(min=1.0)
