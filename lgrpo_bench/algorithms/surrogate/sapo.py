"""SAPO ("Soft Adaptive Policy Optimization", arXiv:2511.20347): a smooth, temperature-controlled
gate instead of the hard clip.

    τ_i = τ_pos if A_i > 0 else τ_neg
    ℓ_{i,t} = −(4/τ_i) · σ(τ_i (ρ_{i,t} − 1)) · A_i

At ρ = 1 the gradient equals the clipped surrogate's (d/dρ of (4/τ)σ(τ(ρ−1)) is 1 there) and it decays smoothly
as ρ leaves 1, faster for negative advantages (τ_neg 1.05 > τ_pos 1.0, TRL's defaults). TRL ``loss_type="sapo"``
(sequence-mean aggregation).
"""

from lgrpo_bench.algorithms.hyperparameter import Hyperparameter
from lgrpo_bench.algorithms.surrogate.output import SurrogateOutput

NAME = "sapo"
SUMMARY = "ℓ = −(4/τ)·σ(τ(ρ−1))·A, τ = τ_pos if A > 0 else τ_neg (SAPO, arXiv 2511.20347)"
HYPERPARAMETERS = (
    Hyperparameter("sapo_temperature_pos", 1.0, "gate temperature τ for A > 0", gt=0, in_every_run_id=True,
                   default_text="1.0, TRL's default"),
    Hyperparameter("sapo_temperature_neg", 1.05, "gate temperature τ for A ≤ 0", gt=0, in_every_run_id=True,
                   default_text="1.05, TRL's default"),
)
TRL_OPTIONS = {"sapo_temperature_pos": "sapo_temperature_pos", "sapo_temperature_neg": "sapo_temperature_neg"}


def loss(per_token_logps, old_per_token_logps, advantages, mask, params) -> SurrogateOutput:
    import torch

    ratio = (per_token_logps - old_per_token_logps).exp()
    positive, negative = (torch.tensor(t, dtype=ratio.dtype, device=ratio.device)
                          for t in (params.sapo_temperature_pos, params.sapo_temperature_neg))
    temperatures = torch.where(advantages > 0, positive, negative)
    gate = torch.sigmoid(temperatures * (ratio - 1)) * 4 / temperatures
    return SurrogateOutput(-gate * advantages, ratio)
