"""The group-filter axis: which generated groups enter the loss (DAPO's dynamic sampling, arXiv:2503.14476 §3.2).

One module per value; :data:`GROUP_FILTERS` is the registry. ``keep_groups(accuracy (n_groups, G)) -> (n_groups,)``
decides on the **accuracy** (the correctness reward), as DAPO does, not on the shaped total reward: a group all
correct but partly length-penalised carries no signal about correctness and is filtered. ``refills`` says whether the
trainer generates more groups to replace the filtered ones (``resample``) or lets the batch shrink (``drop``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from lgrpo_bench.algorithms.group_filter import drop, none, resample
from lgrpo_bench.algorithms.group_filter.mixed import ACCURACY_TOLERANCE, mixed_accuracy_groups
from lgrpo_bench.algorithms.hyperparameter import Hyperparameter

if TYPE_CHECKING:  # the package and its modules import torch only where they compute (the presets read them)
    import torch

@dataclass(frozen=True)
class GroupFilterSpec:
    name: str
    keep_groups: Callable[[torch.Tensor], torch.Tensor]
    refills: bool = False
    hyperparameters: tuple[Hyperparameter, ...] = ()
    summary: str = ""


_MODULES = (none, drop, resample)

#: Registry: group filter name -> spec.
GROUP_FILTERS: dict[str, GroupFilterSpec] = {
    module.NAME: GroupFilterSpec(module.NAME, module.keep_groups, getattr(module, "REFILLS", False),
                                 tuple(getattr(module, "HYPERPARAMETERS", ())), module.SUMMARY)
    for module in _MODULES
}

__all__ = ["ACCURACY_TOLERANCE", "GROUP_FILTERS", "GroupFilterSpec", "mixed_accuracy_groups"]
