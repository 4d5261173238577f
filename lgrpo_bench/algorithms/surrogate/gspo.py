"""GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv:2507.18071 §4): the clip applied to one
length-normalised ratio per sequence.

    s_i = exp( (1/|o_i|) Σ_t log ρ_{i,t} )
    ℓ_i = −min(s_i A_i, clip(s_i, 1−ε_low, 1+ε_high) A_i)          (the same for every token of o_i)

The paper's ε is tiny (3e-4 / 4e-4) because s_i stays close to 1, and its loss is the mean over sequences
(aggregation ``seq_mean_token_mean``). TRL ``importance_sampling_level="sequence"`` with ``loss_type="grpo"``; with a
token-level aggregation TRL warns that each sequence then counts |o_i| times (allowed here, with that note).
"""

import torch

from lgrpo_bench.algorithms.surrogate import SurrogateOutput, SurrogateParams
from lgrpo_bench.algorithms.surrogate.clip import clipped_objective

NAME = "gspo"
SEQUENCE_LEVEL = True


def loss(per_token_logps, old_per_token_logps, advantages, mask, params: SurrogateParams) -> SurrogateOutput:
    log_ratio = per_token_logps - old_per_token_logps
    sequence_log_ratio = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return clipped_objective(torch.exp(sequence_log_ratio).unsqueeze(-1), advantages, params)
