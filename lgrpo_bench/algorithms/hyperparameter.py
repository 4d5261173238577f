"""The declaration of an axis value's hyperparameter: written once, in the value's module (``HYPERPARAMETERS``).

Pure Python (no torch): the presets read the declarations to resolve an algorithm, and ``lgrpo-bench plan`` must stay
torch-free. From one declaration follow the config field ``algorithm.<name>`` (type, bounds, description:
:func:`~lgrpo_bench.algorithms.presets.config_fields`, which ``config/schema.py`` builds ``AlgorithmConfig`` from), the
preset default (:func:`~lgrpo_bench.algorithms.presets.resolve_algorithm`), the surrogate's parameter object
(``surrogate.SurrogateParams``), the TRL argument it maps to (the value module's ``TRL_OPTIONS``) and the trainer's
consistency check. Nothing else spells its name with its default.
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
        choices: the values it may take (a string option: ``("adam", "sgd")``); None = any value of its type.
        only_if: (another hyperparameter of the same value, the value it must have) for this one to be used
            (``lambda_lr`` only when ``lambda_learnable`` is true); unused, it resolves to None.
        default_text: how the description writes the default when ``f"{default:g}"`` would not say it (1/9).
    """

    name: str
    default: Any
    description: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    in_every_run_id: bool = False
    choices: tuple[str, ...] | None = None
    only_if: tuple[str, Any] | None = None
    default_text: str | None = None

    @property
    def kind(self) -> type:
        """The type of its values: the default's (bool, int, float or str)."""
        return type(self.default)

    def coerce(self, value: Any) -> Any:
        """``value`` as :attr:`kind` (a YAML ``1`` for a float hyperparameter becomes 1.0, as the config field does)."""
        return self.kind(value)

    def describe_default(self) -> str:
        """The default as the config's description writes it."""
        if self.default_text is not None:
            return self.default_text
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    @property
    def bounds(self) -> dict[str, float]:
        """The bounds that are set, as ``Field`` keywords ({"gt": 0})."""
        return {key: value for key in ("gt", "ge", "lt", "le") if (value := getattr(self, key)) is not None}


__all__ = ["Hyperparameter"]
