"""What the advantage estimators share: NaN-aware group statistics of the rewards (TRL 1.16's ``nanstd``) and the
ε added to a std before dividing. The registry (``advantage/__init__``) and every value module import these from here.
"""

from __future__ import annotations

import torch

#: Added to the std before dividing (TRL 1.16; verl uses 1e-6).
ADVANTAGE_STD_EPS = 1e-4

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


__all__ = ["ADVANTAGE_STD_EPS", "group_means", "nanstd"]
