"""The clipped surrogate of PPO (Schulman et al. 2017, arXiv:1707.06347) as GRPO uses it, per token.

    ρ_{i,t} = π_θ(o_{i,t}|·) / π_old(o_{i,t}|·)
    ℓ_{i,t} = −min(ρ A_i, clip(ρ, 1−ε_low, 1+ε_high) A_i)

DAPO's clip-higher (arXiv:2503.14476 §3.1) is ε_high 0.28. With TRL's ``delta`` (INTELLECT-2) the unclipped ρ is
also capped at δ. TRL ``loss_type`` grpo / dapo / dr_grpo / bnpo with ``importance_sampling_level="token"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lgrpo_bench.algorithms.hyperparameter import Hyperparameter
from lgrpo_bench.algorithms.surrogate.output import SurrogateOutput

if TYPE_CHECKING:
    import torch

NAME = "clip"
SUMMARY = "ℓ = −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A), ρ per token (PPO; GRPO; DAPO's clip-higher ε_high 0.28)"
HYPERPARAMETERS = (
    Hyperparameter("epsilon_low", 0.2, "lower clip ε_low", gt=0, lt=1, in_every_run_id=True),
    Hyperparameter("epsilon_high", 0.2, "upper clip ε_high (DAPO's clip-higher: 0.28)", gt=0, in_every_run_id=True),
)
TRL_OPTIONS = {"epsilon": "epsilon_low", "epsilon_high": "epsilon_high"}


def clipped_objective(ratio: torch.Tensor, advantages: torch.Tensor, params) -> SurrogateOutput:
    """−min(ρA, clip(ρ)A) for a ratio per token (B, T) or per sequence (B, 1)."""
    import torch

    clipped = torch.clamp(ratio, 1 - params.epsilon_low, 1 + params.epsilon_high)
    unclipped = ratio if params.delta is None else torch.clamp(ratio, max=params.delta)
    per_token_loss = -torch.min(unclipped * advantages, clipped * advantages)
    low = (ratio < 1 - params.epsilon_low) & (advantages < 0)
    high = (ratio > 1 + params.epsilon_high) & (advantages > 0)
    return SurrogateOutput(per_token_loss, ratio, low, high)


def loss(per_token_logps, old_per_token_logps, advantages, mask, params) -> SurrogateOutput:
    return clipped_objective((per_token_logps - old_per_token_logps).exp(), advantages, params)
