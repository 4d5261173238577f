"""The surrogate axis: the per-token loss ℓ_{i,t} of the ratio ρ_{i,t} = π_θ/π_old and the advantage A_i.

One module per value, each with its equation and reference; :data:`SURROGATES` is the registry. A surrogate takes
(per_token_logps, old_per_token_logps, advantages (B, 1), mask (B, T), :class:`SurrogateParams`) and returns a
:class:`SurrogateOutput`. Sequence-level surrogates (GSPO, GMPO) return (B, 1) tensors, which broadcast over tokens:
the aggregation then sums them over the |o_i| tokens of each completion, exactly as TRL does.

A value module declares ``NAME``, ``SUMMARY`` (the one-line equation ``lgrpo-bench algorithms`` lists),
``HYPERPARAMETERS`` (:class:`~lgrpo_bench.algorithms.hyperparameter.Hyperparameter`, each declared once), optionally
``TRL_OPTIONS`` (TRL ``GRPOConfig`` option -> hyperparameter name), ``SEQUENCE_LEVEL`` and ``check`` (why resolved
hyperparameters are refused), and ``loss``. This
package and the value modules import torch only inside the loss functions, so the torch-free presets can read the
declarations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable

from lgrpo_bench.algorithms.hyperparameter import Hyperparameter
from lgrpo_bench.algorithms.surrogate import cispo, clip, gmpo, gspo, sapo
from lgrpo_bench.algorithms.surrogate.output import SurrogateFn, SurrogateOutput


@dataclass(frozen=True)
class SurrogateSpec:
    """One surrogate: its name, loss, whether it is sequence-level, its one-line summary, its hyperparameters and
    the TRL ``GRPOConfig`` options that carry them (option -> hyperparameter name)."""

    name: str
    loss: SurrogateFn
    sequence_level: bool = False
    summary: str = ""
    hyperparameters: tuple[Hyperparameter, ...] = ()
    trl_options: dict[str, str] = field(default_factory=dict)
    check: Callable[..., str | None] | None = None


_MODULES = (clip, cispo, sapo, gspo, gmpo)

#: Registry: surrogate name -> spec.
SURROGATES: dict[str, SurrogateSpec] = {
    module.NAME: SurrogateSpec(module.NAME, module.loss, getattr(module, "SEQUENCE_LEVEL", False), module.SUMMARY,
                               tuple(module.HYPERPARAMETERS), dict(getattr(module, "TRL_OPTIONS", {})),
                               getattr(module, "check", None))
    for module in _MODULES
}


def _declared() -> dict[str, Hyperparameter]:
    declared: dict[str, Hyperparameter] = {}
    for spec in SURROGATES.values():
        for hyperparameter in spec.hyperparameters:
            if declared.setdefault(hyperparameter.name, hyperparameter) != hyperparameter:
                raise TypeError(f"surrogate {spec.name} declares {hyperparameter.name} unlike another surrogate")
    return declared


#: Every surrogate's hyperparameter by name (surrogates may share one: gspo uses clip's ε).
SURROGATE_HYPERPARAMETERS: dict[str, Hyperparameter] = _declared()

#: The hyperparameters a surrogate's loss reads (each declared default), plus ``delta``: TRL's two-sided clip
#: (INTELLECT-2, arXiv 2505.07291) of the unclipped ratio, clip and gspo only. Frozen; built from the declarations.
SurrogateParams = make_dataclass(
    "SurrogateParams",
    [(h.name, Any, field(default=h.default)) for h in SURROGATE_HYPERPARAMETERS.values()]
    + [("delta", Any, field(default=None))],
    frozen=True, namespace={"__module__": __name__},
)

__all__ = ["SURROGATES", "SURROGATE_HYPERPARAMETERS", "SurrogateOutput", "SurrogateParams", "SurrogateSpec"]
