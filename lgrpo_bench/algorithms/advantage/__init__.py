"""The advantage axis: A_i from the total rewards R of the generation batch (all processes).

One module per value, each with its equation and reference; :data:`ADVANTAGES` is the registry. An estimator takes
rewards (N,) in groups of G consecutive rows and ``keep`` (N,) marking the completions that enter the loss (a group
filter's choice), and returns A (N,). NaN rewards (a completion every reward function declined to score) are left
out of the statistics and get A = 0, as in TRL 1.16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

#: Added to the std before dividing (TRL 1.16; verl uses 1e-6).
ADVANTAGE_STD_EPS = 1e-4

AdvantageFn = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


def nanstd(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sample std (ddof 1) ignoring NaNs, NaN with fewer than two values (as ``trl.trainer.utils.nanstd``)."""
    mean = torch.nanmean(values, dim=dim, keepdim=True)
    variance = torch.nanmean((values - mean) ** 2, dim=dim, keepdim=True)
    count = (~torch.isnan(values)).sum(dim=dim, keepdim=True)
    variance = variance * torch.where(count > 1, count / (count - 1).clamp(min=1), torch.full_like(variance, float("nan")))
    return torch.sqrt(variance).squeeze(dim) if dim is not None else torch.sqrt(variance).reshape(())


def group_means(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """mean_g R for every row (NaNs ignored)."""
    return torch.nanmean(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size)


@dataclass(frozen=True)
class AdvantageSpec:
    name: str
    compute: AdvantageFn


from lgrpo_bench.algorithms.advantage import batch_std, group_mean, group_std  # noqa: E402

_MODULES = (group_std, group_mean, batch_std)

#: Registry: advantage name -> spec.
ADVANTAGES: dict[str, AdvantageSpec] = {module.NAME: AdvantageSpec(module.NAME, module.compute) for module in _MODULES}

__all__ = ["ADVANTAGES", "ADVANTAGE_STD_EPS", "AdvantageSpec", "group_means", "nanstd"]
