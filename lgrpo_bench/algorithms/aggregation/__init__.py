"""The aggregation axis: the per-completion weight w_i in L = Σ_i w_i Σ_t ℓ_{i,t}.

One module per value, each with its equation and reference; :data:`AGGREGATIONS` is the registry (names as in
:data:`lgrpo_bench.algorithms.presets.AXES`). A weight function takes :class:`~lgrpo_bench.algorithms.base.WeightInputs`,
λ (None unless the aggregation uses it) and r, and returns w for the rows given.
"""

from __future__ import annotations

from dataclasses import dataclass

from lgrpo_bench.algorithms.aggregation import (
    constant,
    lambda_preference,
    local_token_mean,
    prompt_mean,
    seq_mean_token_mean,
    token_mean,
)
from lgrpo_bench.algorithms.base import WeightFn


@dataclass(frozen=True)
class AggregationSpec:
    """One aggregation: its registry name, its weight function, whether it uses λ and whether the accumulated
    gradient is the same for every micro-batch split (all but the local token mean)."""

    name: str
    weight: WeightFn
    uses_lambda: bool = False
    split_invariant: bool = True


_MODULES = (seq_mean_token_mean, token_mean, constant, local_token_mean, prompt_mean, lambda_preference)

#: Registry: aggregation name -> spec.
AGGREGATIONS: dict[str, AggregationSpec] = {
    module.NAME: AggregationSpec(module.NAME, module.weight, getattr(module, "USES_LAMBDA", False),
                                 getattr(module, "SPLIT_INVARIANT", True))
    for module in _MODULES
}

__all__ = ["AGGREGATIONS", "AggregationSpec"]
