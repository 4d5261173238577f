"""DAPO's token-level loss only (what the λ-GRPO paper and TRL call "DAPO").

    w_i = 1 / Σ_j |o_j|,   A_i as in GRPO

Every token of the batch weighs the same. None of DAPO's other ingredients (clip-higher, dynamic
sampling, overlong shaping) is applied: that is ``dapo_full``. TRL: ``loss_type="dapo"`` (its default);
verl: ``loss_agg_mode="token-mean"``. λ-GRPO with λ = 0 is exactly this.
"""

import torch

from lgrpo_bench.algorithms.base import AlgorithmSpec, WeightInputs, as_float


def token_mean_weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    lengths = as_float(inputs.lengths)
    total = torch.as_tensor(inputs.num_tokens, dtype=lengths.dtype, device=lengths.device).clamp(min=1.0)
    return torch.ones_like(lengths) / total


SPEC = AlgorithmSpec(
    name="dapo",
    summary="DAPO token-level mean over the whole batch (aggregation only, as the λ-GRPO paper uses it)",
    reference="Yu et al. 2025, DAPO, arXiv:2503.14476, §3.3 (token-level policy gradient loss)",
    weight=token_mean_weight,
)
