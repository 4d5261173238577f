"""CISPO (MiniMax-M1, arXiv:2506.13585 §3.1): clip the importance-sampling weight, not the update, and keep every
token's gradient.

    ℓ_{i,t} = −sg(min(ρ_{i,t}, ε_max)) · A_i · log π_θ(o_{i,t}|·)

sg is the stop-gradient, so ∇ℓ = −min(ρ, ε_max)·A·∇log π: tokens beyond the cap still get a (capped) gradient,
where the clipped surrogate would give none. ε_max is an absolute cap on ρ (ScaleRL's and TRL's form; TRL reads
it from ``epsilon_high``, recommended 5.0); MiniMax-M1 writes it as 1 + ε_high^IS and sets no lower bound.
TRL ``loss_type="cispo"`` (token mean aggregation).
"""

import torch

from lgrpo_bench.algorithms.surrogate import SurrogateOutput, SurrogateParams

NAME = "cispo"


def loss(per_token_logps, old_per_token_logps, advantages, mask, params: SurrogateParams) -> SurrogateOutput:
    ratio = torch.exp(per_token_logps - old_per_token_logps)
    capped = torch.clamp(ratio, max=params.cispo_epsilon_max).detach()
    per_token_loss = -capped * advantages * per_token_logps
    return SurrogateOutput(per_token_loss, ratio, None, ratio > params.cispo_epsilon_max)
