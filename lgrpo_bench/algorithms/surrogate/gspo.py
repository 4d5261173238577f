"""GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv:2507.18071 §4): the clip applied to one
length-normalised ratio per sequence.

    s_i = exp( (1/|o_i|) Σ_t log ρ_{i,t} )
    ℓ_i = −min(s_i A_i, clip(s_i, 1−ε_low, 1+ε_high) A_i)          (the same for every token of o_i)

The paper's ε is tiny (3e-4 / 4e-4) because s_i stays close to 1, and its loss is the mean over sequences
(aggregation ``seq_mean_token_mean``). TRL ``importance_sampling_level="sequence"`` with ``loss_type="grpo"``; with a
token-level aggregation TRL warns that each sequence then counts |o_i| times (allowed here, with that note).
"""

from lgrpo_bench.algorithms.surrogate import clip
from lgrpo_bench.algorithms.surrogate.output import SurrogateOutput
from lgrpo_bench.algorithms.surrogate.clip import clipped_objective

NAME = "gspo"
SUMMARY = ("ℓ = −min(sA, clip(s, 1−ε_low, 1+ε_high)A), s_i = exp(mean_t log ρ_{i,t}) per sequence "
           "(GSPO, arXiv 2507.18071)")
SEQUENCE_LEVEL = True
HYPERPARAMETERS = clip.HYPERPARAMETERS  # the same ε_low, ε_high (one declaration)
TRL_OPTIONS = clip.TRL_OPTIONS


def loss(per_token_logps, old_per_token_logps, advantages, mask, params) -> SurrogateOutput:
    log_ratio = per_token_logps - old_per_token_logps
    sequence_log_ratio = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return clipped_objective(sequence_log_ratio.exp().unsqueeze(-1), advantages, params)
