"""GMPO (Zhao et al. 2025, "Geometric-Mean Policy Optimization", arXiv:2507.20673 §3): the geometric mean of the
token ratios of a sequence, each clipped in log space, instead of their arithmetic mean.

    c_{i,t} = min(log ρ_{i,t}, clip(log ρ_{i,t}, −ε, ε))   if A_i > 0
              max(log ρ_{i,t}, clip(log ρ_{i,t}, −ε, ε))   otherwise       (PPO's pessimistic min, in log space)
    s_i = exp( (1/|o_i|) Σ_t c_{i,t} ) = (Π_t clipped ρ_{i,t})^{1/|o_i|}
    ℓ_i = −s_i · A_i                                                       (the same for every token of o_i)

The geometric mean is less sensitive to outlier token ratios than GRPO's arithmetic token mean, so the paper uses a
wider range, ε = 0.4 (ratios in (e^−0.4, e^0.4)). Sequence level like GSPO, and like it meant with the sequence mean
(aggregation ``seq_mean_token_mean``). Departure: one symmetric ε (the paper's and TRL's default); TRL 1.16 has it
as ``trl.experimental.gmpo.GMPOTrainer`` (``epsilon``/``epsilon_high`` in log space), not as a GRPOTrainer loss_type.
"""

from lgrpo_bench.algorithms.hyperparameter import Hyperparameter
from lgrpo_bench.algorithms.surrogate.output import SurrogateOutput

NAME = "gmpo"
SUMMARY = ("ℓ = −s·A, s_i = exp(mean_t c_{i,t}), c = log ρ clipped to [−ε, ε] on the pessimistic side "
           "(GMPO, arXiv 2507.20673)")
SEQUENCE_LEVEL = True
HYPERPARAMETERS = (
    Hyperparameter("gmpo_epsilon", 0.4, "clip range ε of the token log-ratios (ratios in (e^−ε, e^ε)) before their "
                   "geometric mean", gt=0, default_text="0.4, the paper's"),
)


def loss(per_token_logps, old_per_token_logps, advantages, mask, params) -> SurrogateOutput:
    log_ratio = per_token_logps - old_per_token_logps
    epsilon = params.gmpo_epsilon
    clamped = log_ratio.clamp(-epsilon, epsilon)
    positive = advantages > 0
    clipped = log_ratio.minimum(clamped).where(positive, log_ratio.maximum(clamped))
    sequence_log_ratio = (clipped * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1.0)
    ratio = sequence_log_ratio.exp()
    low = (log_ratio < -epsilon) & ~positive
    high = (log_ratio > epsilon) & positive
    return SurrogateOutput(-ratio * advantages, ratio, low, high)
