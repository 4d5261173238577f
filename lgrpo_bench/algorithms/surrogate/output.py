"""What a surrogate returns (:class:`SurrogateOutput`) and the signature of a surrogate's loss. The registry
(``surrogate/__init__``) and every value module import these from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SurrogateOutput:
    """ℓ (B, T) or (B, 1); the importance weight the KL term is multiplied by when its bias correction is on
    (TRL's ``coef_1``: ρ per token, s_i per sequence); masks of the tokens (sequences) the surrogate clipped below
    and above (None where the notion does not apply)."""

    per_token_loss: torch.Tensor
    importance_weight: torch.Tensor
    clipped_low: torch.Tensor | None = None
    clipped_high: torch.Tensor | None = None


SurrogateFn = Callable[..., SurrogateOutput]
"""(per_token_logps, old_per_token_logps, advantages, mask, :class:`SurrogateParams`) -> :class:`SurrogateOutput`."""


__all__ = ["SurrogateFn", "SurrogateOutput"]
