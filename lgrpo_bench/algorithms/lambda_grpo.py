"""λ-GRPO (arXiv:2510.06870): DAPO's token mean, re-weighted per completion by a learned preference.

    z_j = (|o_j| - mean_g|o|) / (std_g|o| + 1e-8)      (population std, within the group)
    h_j = max(1 + r·z_j, 1e-6)                          (r = 1/9 in the paper)
    f_i = G · softmax_{j∈g}(h_j^λ)_i
    w_i = f_i / Σ_j |o_j|,   A_i as in GRPO

λ is one learnable scalar (λ = 0: f = 1, exactly DAPO; λ > 0 favours longer completions of a group,
λ < 0 shorter ones). Departure from the paper's text: h is clamped at 1e-6 because h^λ is undefined for
1 + r·z ≤ 0; configs reject r ≥ 1/sqrt(G-1), where that can happen.
"""

import torch

from lgrpo_bench.algorithms.base import AlgorithmSpec, WeightInputs, lambda_preferences
from lgrpo_bench.algorithms.dapo import token_mean_weight


def lambda_weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    if lam is None:
        raise ValueError("lambda_grpo needs a value of λ (algorithm.lam_init)")
    preferences = lambda_preferences(inputs.group_lengths, lam, r)  # (R, G)
    row_preference = preferences.gather(1, inputs.index_in_group.long().unsqueeze(1)).squeeze(1)
    return row_preference * token_mean_weight(inputs, None, r)


SPEC = AlgorithmSpec(
    name="lambda_grpo",
    summary="λ-GRPO: token mean re-weighted by f_i = G·softmax(h^λ), h = 1 + r·z(length), λ learned",
    reference="λ-GRPO, arXiv:2510.06870, §3 (learnable token preferences)",
    weight=lambda_weight,
    uses_lambda=True,
)
