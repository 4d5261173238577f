"""GRPO (Shao et al. 2024, DeepSeekMath §4.1): mean over completions of each completion's token mean.

    w_i = 1 / (N · |o_i|),   A_i = (R_i - mean_g R) / (std_g R + eps)

Each completion counts equally whatever its length, so a token of a short completion weighs more than a
token of a long one (the length bias that Dr. GRPO and λ-GRPO discuss). TRL: ``loss_type="grpo"``;
verl: ``loss_agg_mode="seq-mean-token-mean"``.
"""

import torch

from lgrpo_bench.algorithms.base import AlgorithmSpec, WeightInputs, as_float


def grpo_weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    lengths = as_float(inputs.lengths).clamp(min=1.0)  # an empty completion has no tokens to weight
    return 1.0 / (torch.as_tensor(inputs.num_completions, dtype=lengths.dtype) * lengths)


SPEC = AlgorithmSpec(
    name="grpo",
    summary="GRPO: per-completion token mean, then mean over completions; std-scaled advantages",
    reference="Shao et al. 2024, DeepSeekMath, arXiv:2402.03300, §4.1",
    weight=grpo_weight,
)
