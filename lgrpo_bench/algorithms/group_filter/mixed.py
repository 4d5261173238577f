"""Which groups carry a signal about correctness: their accuracies are not all equal. The registry
(``group_filter/__init__``) and the filters that keep only mixed groups (``drop``, ``resample``) import this from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is needed only where a filter computes
    import torch

#: Two accuracies closer than this count as equal (binary rewards differ by 1).
ACCURACY_TOLERANCE = 1e-6


def mixed_accuracy_groups(accuracy: torch.Tensor) -> torch.Tensor:
    """(n_groups,) True where the G accuracies of a group are not all equal (NaN, an unscored completion, counts as 0)."""
    values = accuracy.float().nan_to_num(nan=0.0)
    return (values.max(dim=1).values - values.min(dim=1).values) > ACCURACY_TOLERANCE


__all__ = ["ACCURACY_TOLERANCE", "mixed_accuracy_groups"]
