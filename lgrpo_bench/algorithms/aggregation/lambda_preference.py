"""λ-GRPO's aggregation (arXiv:2510.06870 §3): DAPO's token mean re-weighted per completion by a learned preference.

    z_j = (|o_j| - mean_g|o|) / (std_g|o| + 1e-8)      (population std, within the group)
    h_j = max(1 + r·z_j, 1e-6)                          (r = 1/9 in the paper)
    f_i = G · softmax_{j∈g}(h_j^λ)_i
    w_i = f_i / Σ_j |o_j|

λ is one scalar (learnable, or frozen at ``lam_init``): λ = 0 gives f = 1, exactly ``token_mean``; λ > 0 favours the
longer completions of a group, λ < 0 the shorter ones. It is an aggregation, so it composes with every surrogate.
Departure from the paper's text: h is clamped at 1e-6 because h^λ is undefined for 1 + r·z ≤ 0; configs refuse
r ≥ 1/sqrt(G-1), where that can happen. Registered as ``lambda``.
"""

import torch

from lgrpo_bench.algorithms.aggregation.token_mean import weight as token_mean_weight
from lgrpo_bench.algorithms.base import WeightInputs, lambda_preferences

NAME = "lambda"
USES_LAMBDA = True


def weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    if lam is None:
        raise ValueError("the lambda aggregation needs a value of λ (algorithm.lam_init)")
    preferences = lambda_preferences(inputs.group_lengths, lam, r)  # (R, G)
    row_preference = preferences.gather(1, inputs.index_in_group.long().unsqueeze(1)).squeeze(1)
    return row_preference * token_mean_weight(inputs, None, r)
