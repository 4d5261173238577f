"""The aggregation axis: the per-completion weight w_i in L = Σ_i w_i Σ_t ℓ_{i,t}.

One module per value, each with its equation and reference; :data:`AGGREGATIONS` is the registry (names as in
:data:`lgrpo_bench.algorithms.presets.AXES`). A weight function takes :class:`~lgrpo_bench.algorithms.base.WeightInputs`,
λ (None unless the aggregation uses it) and r, and returns w for the rows given.

A value module declares ``NAME``, ``SUMMARY`` (the one-line equation ``lgrpo-bench algorithms`` lists), ``weight``
and, where they apply, ``HYPERPARAMETERS`` (each declared once, :mod:`lgrpo_bench.algorithms.hyperparameter`),
``check`` (why resolved hyperparameters are refused), ``USES_LAMBDA``, ``SPLIT_INVARIANT`` and ``TOKEN_LEVEL``. The
package and its modules import torch only inside ``weight``, so the torch-free presets and config read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from lgrpo_bench.algorithms.aggregation import (
    constant,
    lambda_preference,
    local_token_mean,
    prompt_mean,
    seq_mean_token_mean,
    token_mean,
)
from lgrpo_bench.algorithms.hyperparameter import Hyperparameter

if TYPE_CHECKING:
    from lgrpo_bench.algorithms.base import WeightFn


@dataclass(frozen=True)
class AggregationSpec:
    """One aggregation: its registry name, its weight function, whether it uses λ, whether the accumulated
    gradient is the same for every micro-batch split (all but the local token mean), whether its per-token weight
    makes a sequence-level ratio count |o_i| times (all but the sequence mean), its summary, its hyperparameters and
    their check."""

    name: str
    weight: WeightFn
    uses_lambda: bool = False
    split_invariant: bool = True
    token_level: bool = True
    summary: str = ""
    hyperparameters: tuple[Hyperparameter, ...] = ()
    check: Callable[..., str | None] | None = None


_MODULES = (seq_mean_token_mean, token_mean, constant, local_token_mean, prompt_mean, lambda_preference)

#: Registry: aggregation name -> spec.
AGGREGATIONS: dict[str, AggregationSpec] = {
    module.NAME: AggregationSpec(module.NAME, module.weight, getattr(module, "USES_LAMBDA", False),
                                 getattr(module, "SPLIT_INVARIANT", True), getattr(module, "TOKEN_LEVEL", True),
                                 module.SUMMARY, tuple(getattr(module, "HYPERPARAMETERS", ())),
                                 getattr(module, "check", None))
    for module in _MODULES
}

__all__ = ["AGGREGATIONS", "AggregationSpec"]
