"""The declaration of an axis value's hyperparameter: written once, in the value's module (``HYPERPARAMETERS``).

Pure Python (no torch): the presets read the declarations to resolve an algorithm, and ``lgrpo-bench plan`` must stay
torch-free. From one declaration follow the preset default (:func:`~lgrpo_bench.algorithms.presets.resolve_algorithm`),
the surrogate's parameter object (``surrogate.SurrogateParams``), the TRL argument it maps to (the value module's
``TRL_OPTIONS``) and the trainer's consistency check. The config field ``algorithm.<name>`` (layer 0, which may import
nothing of ours) is checked against it by ``tests/test_design_space.py``: same name, bounds and description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of an axis value.

    Attributes:
        name: its key, ``algorithm.<name>`` in configs and in the run id.
        default: the value a run uses when neither its config nor its preset sets one.
        description: what it means (the config field's description says this, after the value it belongs to).
        gt, ge, lt, le: bounds (as pydantic's ``Field``); None = none.
        in_every_run_id: True for the hyperparameters run ids made before issue 25 always carried (None when unused):
            keeping them keeps those ids. A new hyperparameter leaves it False, so it appears only in the run ids of
            the axis values that use it and adding it changes no existing run id.
    """

    name: str
    default: Any
    description: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    in_every_run_id: bool = False

    @property
    def bounds(self) -> dict[str, float]:
        """The bounds that are set, as ``Field`` keywords ({"gt": 0})."""
        return {key: value for key in ("gt", "ge", "lt", "le") if (value := getattr(self, key)) is not None}


__all__ = ["Hyperparameter"]
