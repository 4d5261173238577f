"""The group-filter axis: which generated groups enter the loss (DAPO's dynamic sampling, arXiv:2503.14476 §3.2).

One module per value; :data:`GROUP_FILTERS` is the registry. ``keep_groups(accuracy (n_groups, G)) -> (n_groups,)``
decides on the **accuracy** (the correctness reward), as DAPO does, not on the shaped total reward: a group all
correct but partly length-penalised carries no signal about correctness and is filtered. ``refills`` says whether the
trainer generates more groups to replace the filtered ones (``resample``) or lets the batch shrink (``drop``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

#: Two accuracies closer than this count as equal (binary rewards differ by 1).
ACCURACY_TOLERANCE = 1e-6


def mixed_accuracy_groups(accuracy: torch.Tensor) -> torch.Tensor:
    """(n_groups,) True where the G accuracies of a group are not all equal (NaN, an unscored completion, counts as 0)."""
    values = torch.nan_to_num(accuracy.float(), nan=0.0)
    return (values.max(dim=1).values - values.min(dim=1).values) > ACCURACY_TOLERANCE


@dataclass(frozen=True)
class GroupFilterSpec:
    name: str
    keep_groups: Callable[[torch.Tensor], torch.Tensor]
    refills: bool = False


from lgrpo_bench.algorithms.group_filter import drop, none, resample  # noqa: E402

_MODULES = (none, drop, resample)

#: Registry: group filter name -> spec.
GROUP_FILTERS: dict[str, GroupFilterSpec] = {
    module.NAME: GroupFilterSpec(module.NAME, module.keep_groups, getattr(module, "REFILLS", False)) for module in _MODULES
}

__all__ = ["ACCURACY_TOLERANCE", "GROUP_FILTERS", "GroupFilterSpec", "mixed_accuracy_groups"]
