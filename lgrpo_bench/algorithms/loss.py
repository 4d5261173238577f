"""The unified loss of one micro-batch: L_mb = Σ_{i∈mb} w_i Σ_t ℓ_{i,t} (+ β·KL inside ℓ), pure torch.

    ℓ_{i,t} = surrogate(ρ_{i,t}, A_i) · c_{i,t} + β · KL_{i,t} · (s_{i,t} if the KL bias correction is on)

c is vLLM's importance-sampling correction (1 without vLLM), KL the k3 estimator exp(ref−logπ) − (ref−logπ) − 1
(GRPO, DeepSeekMath §4.1), s the surrogate's importance weight (ρ per token, GSPO's s_i per sequence). This is
the order of TRL 1.16's ``_compute_loss``; the KL term is weighted by w_i like the policy term, as in TRL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lgrpo_bench.algorithms.surrogate import SURROGATES, SurrogateOutput, SurrogateParams


@dataclass(frozen=True)
class LossTerms:
    """``loss``: Σ_i w_i Σ_t ℓ_{i,t} over the rows given (not scaled for accumulation or processes); ``surrogate``:
    the surrogate's output (for clip metrics); ``per_token_kl``: KL_{i,t} (None when β = 0)."""

    loss: torch.Tensor
    surrogate: SurrogateOutput
    per_token_kl: torch.Tensor | None


def unified_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    *,
    surrogate: str,
    params: SurrogateParams,
    beta: float = 0.0,
    ref_per_token_logps: torch.Tensor | None = None,
    kl_importance_correction: bool = False,
    importance_sampling_ratio: torch.Tensor | None = None,
) -> LossTerms:
    """Σ_i w_i Σ_t ℓ_{i,t} for rows with log-probabilities (B, T), advantages (B,) or (B, 1), mask (B, T), w (B,)."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    output = SURROGATES[surrogate].loss(per_token_logps, old_per_token_logps, advantages, mask, params)
    per_token_loss = output.per_token_loss
    if importance_sampling_ratio is not None:
        per_token_loss = per_token_loss * importance_sampling_ratio
    per_token_kl = None
    if beta != 0.0:
        if ref_per_token_logps is None:
            raise ValueError("beta > 0 needs ref_per_token_logps")
        difference = ref_per_token_logps - per_token_logps
        per_token_kl = torch.exp(difference) - difference - 1
        if kl_importance_correction:
            per_token_kl = per_token_kl * output.importance_weight
        per_token_loss = per_token_loss + beta * per_token_kl
    completion_loss = (per_token_loss * mask).sum(dim=-1)  # Σ_t ℓ_{i,t}; a (B, 1) loss counts |o_i| times
    return LossTerms((weights * completion_loss).sum(), output, per_token_kl)


__all__ = ["LossTerms", "unified_loss"]
