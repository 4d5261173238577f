"""The advantage axis: A_i from the total rewards R of the generation batch (all processes).

One module per value, each with its equation and reference; :data:`ADVANTAGES` is the registry. An estimator takes
rewards (N,) in groups of G consecutive rows and ``keep`` (N,) marking the completions that enter the loss (a group
filter's choice), and returns A (N,). NaN rewards (a completion every reward function declined to score) are left
out of the statistics and get A = 0, as in TRL 1.16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from lgrpo_bench.algorithms.advantage import batch_std, group_mean, group_std
from lgrpo_bench.algorithms.hyperparameter import Hyperparameter

if TYPE_CHECKING:  # torch only where advantages are computed: the presets read the registry without it
    import torch

AdvantageFn = Callable[["torch.Tensor", int, "torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class AdvantageSpec:
    name: str
    compute: AdvantageFn
    summary: str = ""
    hyperparameters: tuple[Hyperparameter, ...] = ()



_MODULES = (group_std, group_mean, batch_std)

#: Registry: advantage name -> spec.
ADVANTAGES: dict[str, AdvantageSpec] = {module.NAME: AdvantageSpec(module.NAME, module.compute, module.SUMMARY,
                                                                  tuple(getattr(module, "HYPERPARAMETERS", ()))) for module in _MODULES}



def __getattr__(name: str):  # the shared statistics (torch) on first use: ``from ...advantage import nanstd``
    if name in ("ADVANTAGE_STD_EPS", "group_means", "nanstd"):
        from lgrpo_bench.algorithms.advantage import statistics

        return getattr(statistics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ADVANTAGES", "ADVANTAGE_STD_EPS", "AdvantageSpec", "group_means", "nanstd"]
