"""The group-filter axis: which generated groups enter the loss (DAPO's dynamic sampling, arXiv:2503.14476 §3.2).

One module per value; :data:`GROUP_FILTERS` is the registry. ``keep_groups(accuracy (n_groups, G)) -> (n_groups,)``
decides on the **accuracy** (the correctness reward), as DAPO does, not on the shaped total reward: a group all
correct but partly length-penalised carries no signal about correctness and is filtered. ``refills`` says whether the
trainer generates more groups to replace the filtered ones (``resample``) or lets the batch shrink (``drop``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from lgrpo_bench.algorithms.hyperparameter import Hyperparameter

if TYPE_CHECKING:  # the package and its modules import torch only where they compute (the presets read them)
    import torch

#: Two accuracies closer than this count as equal (binary rewards differ by 1).
ACCURACY_TOLERANCE = 1e-6


def mixed_accuracy_groups(accuracy: torch.Tensor) -> torch.Tensor:
    """(n_groups,) True where the G accuracies of a group are not all equal (NaN, an unscored completion, counts as 0)."""
    values = accuracy.float().nan_to_num(nan=0.0)
    return (values.max(dim=1).values - values.min(dim=1).values) > ACCURACY_TOLERANCE


@dataclass(frozen=True)
class GroupFilterSpec:
    name: str
    keep_groups: Callable[[torch.Tensor], torch.Tensor]
    refills: bool = False
    hyperparameters: tuple[Hyperparameter, ...] = ()


from lgrpo_bench.algorithms.group_filter import drop, none, resample  # noqa: E402

_MODULES = (none, drop, resample)

#: Registry: group filter name -> spec.
GROUP_FILTERS: dict[str, GroupFilterSpec] = {
    module.NAME: GroupFilterSpec(module.NAME, module.keep_groups, getattr(module, "REFILLS", False),
                                 tuple(getattr(module, "HYPERPARAMETERS", ())))
    for module in _MODULES
}

__all__ = ["ACCURACY_TOLERANCE", "GROUP_FILTERS", "GroupFilterSpec", "mixed_accuracy_groups"]
