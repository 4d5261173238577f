"""DAPO's token-level mean (Yu et al. 2025, arXiv:2503.14476 §3.3) over the whole accumulated batch.

    w_i = 1 / Σ_j |o_j|      (j over every completion of the generation batch, on every process)

Every token of the batch weighs the same. TRL ``loss_type="dapo"`` (its default) and ``"cispo"``: TRL divides by
``num_items_in_batch``, the token count gathered over processes; verl ``loss_agg_mode="token-mean"`` (verl #2776
asks whether the mean is per group or per batch: here, per batch). λ-GRPO with λ = 0 is exactly this.
"""

import torch

from lgrpo_bench.algorithms.base import WeightInputs, as_float, as_like

NAME = "token_mean"


def weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    lengths = as_float(inputs.lengths)
    return torch.ones_like(lengths) / as_like(inputs.num_tokens, lengths).clamp(min=1.0)
