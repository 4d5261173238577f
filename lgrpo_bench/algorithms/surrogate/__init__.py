"""The surrogate axis: the per-token loss ℓ_{i,t} of the ratio ρ_{i,t} = π_θ/π_old and the advantage A_i.

One module per value, each with its equation and reference; :data:`SURROGATES` is the registry. A surrogate takes
(per_token_logps, old_per_token_logps, advantages (B, 1), mask (B, T), :class:`SurrogateParams`) and returns a
:class:`SurrogateOutput`. Sequence-level surrogates (GSPO) return (B, 1) tensors, which broadcast over tokens: the
aggregation then sums them over the |o_i| tokens of each completion, exactly as TRL does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lgrpo_bench.algorithms.presets import DEFAULT_CISPO_EPSILON_MAX


@dataclass(frozen=True)
class SurrogateParams:
    """Hyperparameters of the surrogates (each uses its own; see ``ResolvedAlgorithm``).

    ``delta``: TRL's two-sided clip (INTELLECT-2, arXiv 2505.07291) of the unclipped ratio, clip and gspo only.
    """

    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    delta: float | None = None
    cispo_epsilon_max: float = DEFAULT_CISPO_EPSILON_MAX
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05


@dataclass(frozen=True)
class SurrogateOutput:
    """ℓ (B, T) or (B, 1); the importance weight the KL term is multiplied by when its bias correction is on
    (TRL's ``coef_1``: ρ per token, s_i per sequence); masks of the tokens (sequences) the surrogate clipped below
    and above (None where the notion does not apply)."""

    per_token_loss: torch.Tensor
    importance_weight: torch.Tensor
    clipped_low: torch.Tensor | None = None
    clipped_high: torch.Tensor | None = None


SurrogateFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, SurrogateParams], SurrogateOutput]


@dataclass(frozen=True)
class SurrogateSpec:
    name: str
    loss: SurrogateFn
    sequence_level: bool = False


from lgrpo_bench.algorithms.surrogate import cispo, clip, gspo, sapo  # noqa: E402  (the modules use the types above)

_MODULES = (clip, cispo, sapo, gspo)

#: Registry: surrogate name -> spec.
SURROGATES: dict[str, SurrogateSpec] = {
    module.NAME: SurrogateSpec(module.NAME, module.loss, getattr(module, "SEQUENCE_LEVEL", False)) for module in _MODULES
}

__all__ = ["SURROGATES", "SurrogateOutput", "SurrogateParams", "SurrogateSpec"]
