"""CISPO (MiniMax-M1, arXiv:2506.13585 §3.1): clip the importance-sampling weight, not the update, and keep every
token's gradient.

    ℓ_{i,t} = −sg(min(ρ_{i,t}, ε_max)) · A_i · log π_θ(o_{i,t}|·)

sg is the stop-gradient, so ∇ℓ = −min(ρ, ε_max)·A·∇log π: tokens beyond the cap still get a (capped) gradient,
where the clipped surrogate would give none. ε_max is an absolute cap on ρ (ScaleRL's and TRL's form; TRL reads
it from ``epsilon_high``, recommended 5.0); MiniMax-M1 writes it as 1 + ε_high^IS and sets no lower bound.
TRL ``loss_type="cispo"`` (token mean aggregation).
"""

from lgrpo_bench.algorithms.hyperparameter import Hyperparameter
from lgrpo_bench.algorithms.surrogate.output import SurrogateOutput

NAME = "cispo"
SUMMARY = "ℓ = −sg(min(ρ, ε_max))·A·log π_θ (MiniMax-M1, arXiv 2506.13585; ε_max as in ScaleRL and TRL)"
HYPERPARAMETERS = (
    Hyperparameter("cispo_epsilon_max", 5.0, "cap ε_max on the importance weight ρ (absolute, as in ScaleRL and TRL's "
                   "epsilon_high for cispo; must be ≥ 1)", gt=0, in_every_run_id=True,
                   default_text="5.0, TRL's recommendation"),
)
TRL_OPTIONS = {"epsilon_high": "cispo_epsilon_max"}


def check(values: dict, **_) -> str | None:
    """Why these resolved hyperparameters are refused (None when they are not): a cap below 1 caps the on-policy ratio."""
    cap = values["cispo_epsilon_max"]
    if cap < 1:
        return (f"algorithm.cispo_epsilon_max={cap:g} caps the importance weight below 1, so even on-policy tokens "
                f"(ρ = 1) get weight {cap:g}: every gradient is scaled down (TRL's cispo with its default epsilon_high "
                f"0.2 does this silently); use a cap ≥ 1 (ScaleRL and TRL: 4-5)")
    return None


def loss(per_token_logps, old_per_token_logps, advantages, mask, params) -> SurrogateOutput:
    ratio = (per_token_logps - old_per_token_logps).exp()
    capped = ratio.clamp(max=params.cispo_epsilon_max).detach()
    per_token_loss = -capped * advantages * per_token_logps
    return SurrogateOutput(per_token_loss, ratio, None, ratio > params.cispo_epsilon_max)
