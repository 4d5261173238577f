"""Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): no length or std normalisation.

    w_i = 1 / (N · L_max),   A_i = R_i - mean_g R  (no division by the group std)

The constant N·L_max replaces the per-completion length, so every token weighs the same, like DAPO up to
a batch-dependent constant. TRL: ``loss_type="dr_grpo"`` with ``scale_rewards="none"``; verl uses the padded
length as the constant (``seq-mean-token-sum-norm``).
"""

import torch

from lgrpo_bench.algorithms.base import AlgorithmSpec, WeightInputs, as_float


def constant_length_weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    lengths = as_float(inputs.lengths)
    constant = torch.as_tensor(inputs.num_completions, dtype=lengths.dtype, device=lengths.device)
    return torch.ones_like(lengths) / (constant * inputs.max_completion_length)


SPEC = AlgorithmSpec(
    name="dr_grpo",
    summary="Dr. GRPO: token sum divided by N·L_max; advantages not scaled by the group std",
    reference="Liu et al. 2025, Understanding R1-Zero-Like Training, arXiv:2503.20783, §3",
    weight=constant_length_weight,
    scale_advantages=False,
)
