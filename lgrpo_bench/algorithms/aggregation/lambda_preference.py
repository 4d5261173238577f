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

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lgrpo_bench.algorithms.hyperparameter import Hyperparameter

if TYPE_CHECKING:  # torch only where a weight is computed: the presets read this module without it
    import torch

    from lgrpo_bench.algorithms.base import WeightInputs


NAME = "lambda"
SUMMARY = "w_i = f_i/Σ_j|o_j|, f = G·softmax_g(h^λ), h = max(1 + r·z(|o|), 1e-6), λ learned or frozen (λ-GRPO, arXiv 2510.06870)"
USES_LAMBDA = True
HYPERPARAMETERS = (
    Hyperparameter("r", 1 / 9, "scale of the length z-score in h = 1 + r·z (the paper's 1/9); must stay below "
                   "1/sqrt(G-1)", gt=0, in_every_run_id=True, default_text="1/9, the paper's"),
    Hyperparameter("lam_init", 0.0, "initial λ (0 = DAPO's token mean; the paper does not state it)",
                   in_every_run_id=True),
    Hyperparameter("lambda_learnable", True, "learn λ; false freezes it at lam_init (ablations)", in_every_run_id=True),
    Hyperparameter("lambda_lr", 1e-2, "learning rate of λ (follows the policy's LR schedule)", gt=0,
                   in_every_run_id=True, only_if=("lambda_learnable", True)),
    Hyperparameter("lambda_optimizer", "adam", "λ's optimizer. adam (λ's own Adam, stepped after the policy's "
                   "optimizer with the policy's betas and eps, no weight decay): while its gradient keeps one sign "
                   "λ moves by about lambda_lr per step whatever the gradient's size (train/lambda_rate_limited says "
                   "when); sgd: λ moves by lambda_lr × schedule × gradient, so its value shows how strongly the data "
                   "pulls it", in_every_run_id=True,
                   choices=("adam", "sgd"), only_if=("lambda_learnable", True)),
)


def max_safe_r(group_size: int) -> float:
    """The largest r for which 1 + r·z > 0 in every group: min z = −sqrt(G−1) (population std of the lengths)."""
    return 1.0 / math.sqrt(group_size - 1)


def check(values: dict, *, num_generations: int, **_) -> str | None:
    """Why these resolved hyperparameters are refused for groups of ``num_generations`` (None when they are not):
    r ≥ 1/sqrt(G−1) lets h = 1 + r·z reach 0."""
    r = values["r"]
    if r >= max_safe_r(num_generations):
        return (f"algorithm.r={r:g} is too large for train.num_generations={num_generations}: "
                f"1 + r·z reaches 1 - r·sqrt(G-1) = {1 - r * math.sqrt(num_generations - 1):.3f} ≤ 0; "
                f"use r < {max_safe_r(num_generations):.4f}")
    return None


def weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    from lgrpo_bench.algorithms.aggregation.token_mean import weight as token_mean_weight
    from lgrpo_bench.algorithms.base import lambda_preferences

    if lam is None:
        raise ValueError("the lambda aggregation needs a value of λ (algorithm.lam_init)")
    preferences = lambda_preferences(inputs.group_lengths, lam, r)  # (R, G)
    row_preference = preferences.gather(1, inputs.index_in_group.long().unsqueeze(1)).squeeze(1)
    return row_preference * token_mean_weight(inputs, None, r)
