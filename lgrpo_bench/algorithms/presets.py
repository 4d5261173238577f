"""The GRPO design space as four orthogonal axes, the named presets, and the rules for combining them.

An algorithm is four choices (one small module per value, in ``aggregation/``, ``surrogate/``, ``advantage/``,
``group_filter/``) plus the hyperparameters those choices use, each declared once in its value's module
(``HYPERPARAMETERS``, :mod:`lgrpo_bench.algorithms.hyperparameter`):

    L = Σ_i w_i Σ_t ℓ_{i,t}          w_i: aggregation,  ℓ_{i,t}: surrogate of the ratio ρ and the advantage A_i,
                                      A_i: advantage,    which groups enter the batch: group filter.

A preset (``algorithm.name``) fixes all four and their hyperparameters; every field of a preset can be overridden
(``{name: cispo, aggregation: lambda}`` is λ-weighted CISPO). :func:`resolve_algorithm` turns a config's
``algorithm`` section into a :class:`ResolvedAlgorithm` (every axis value and every hyperparameter the chosen
values use; the others are None), refuses combinations that make no sense with the reason, and attaches a
one-line note to combinations that are legal but easy to misread (TRL warns about some of them).

This module is pure Python on purpose: the config schema (:func:`config_fields`: the ``algorithm`` section's fields
follow from the declarations), config validation, ``lgrpo-bench plan`` and ``config show`` use it without importing
torch. The equations live in the axis modules' docstrings; here are the presets and the rules.

A run's algorithm is resolved once, when the run is prepared (``lgrpo_bench.runs.resolve.prepare_run``): its
``config.yaml`` then states every axis value and hyperparameter (:func:`resolved_section`), and training reads that
back with :func:`stored_algorithm`, which applies no preset and no rule.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from lgrpo_bench.algorithms.advantage import ADVANTAGES
from lgrpo_bench.algorithms.aggregation import AGGREGATIONS
from lgrpo_bench.algorithms.aggregation.lambda_preference import max_safe_r
from lgrpo_bench.algorithms.group_filter import GROUP_FILTERS
from lgrpo_bench.algorithms.hyperparameter import Hyperparameter
from lgrpo_bench.algorithms.surrogate import SURROGATES

#: Axis name -> its registry (name -> spec with ``summary`` and ``hyperparameters``), in the order of listings.
REGISTRIES: dict[str, Mapping[str, Any]] = {
    "aggregation": AGGREGATIONS, "surrogate": SURROGATES, "advantage": ADVANTAGES, "group_filter": GROUP_FILTERS,
}

#: Axis name -> {value: one-line description (equation and source)}: each value module's ``SUMMARY``.
AXES: dict[str, dict[str, str]] = {axis: {name: spec.summary for name, spec in registry.items()}
                                   for axis, registry in REGISTRIES.items()}
AXIS_NAMES: tuple[str, ...] = tuple(AXES)

#: Aggregations whose per-token weight makes a sequence-level ratio count |o_i| times (TRL warns about these).
TOKEN_LEVEL_AGGREGATIONS = tuple(name for name, spec in AGGREGATIONS.items() if spec.token_level)

#: (axis, value) -> the hyperparameters that value declares in its module (``HYPERPARAMETERS``), in resolution order.
VALUE_HYPERPARAMETERS: dict[tuple[str, str], tuple[Hyperparameter, ...]] = {
    (axis, name): spec.hyperparameters for axis, registry in REGISTRIES.items() for name, spec in registry.items()
    if spec.hyperparameters
}


def _by_name() -> dict[str, Hyperparameter]:
    declared: dict[str, Hyperparameter] = {}
    for (axis, value), hyperparameters in VALUE_HYPERPARAMETERS.items():
        for hyperparameter in hyperparameters:
            if declared.setdefault(hyperparameter.name, hyperparameter) != hyperparameter:
                raise TypeError(f"{axis} {value} declares {hyperparameter.name} unlike another value")
    return declared


#: Every axis value's hyperparameter by name (values may share one: gspo uses clip's ε).
HYPERPARAMETERS: dict[str, Hyperparameter] = _by_name()


@dataclass(frozen=True)
class Preset:
    """A named algorithm: its four axis values and the hyperparameters it fixes (``algorithm.name``)."""

    name: str
    summary: str
    reference: str
    aggregation: str
    surrogate: str
    advantage: str
    group_filter: str
    mask_truncated_completions: bool = False
    overlong_penalty: bool = False
    #: Hyperparameters of its axis values it sets unlike their declared defaults ({"epsilon_high": 0.28}).
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.hyperparameters) - set(HYPERPARAMETERS)
        if unknown:
            raise TypeError(f"preset {self.name} sets undeclared hyperparameters {sorted(unknown)}")
        object.__setattr__(self, "hyperparameters", MappingProxyType(dict(self.hyperparameters)))

    def __getattr__(self, name: str) -> Any:  # only for names that are not fields: ``preset.epsilon_high``
        if name in HYPERPARAMETERS:
            return self.default(HYPERPARAMETERS[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def default(self, hyperparameter: Hyperparameter) -> Any:
        """This preset's value of ``hyperparameter``: its own, else the declared default."""
        return self.hyperparameters.get(hyperparameter.name, hyperparameter.default)

    @property
    def uses_lambda(self) -> bool:
        return self.aggregation == "lambda"


_PRESET_LIST = (
    Preset("grpo", "GRPO: per-completion token mean, std-scaled advantages",
           "Shao et al. 2024, DeepSeekMath, arXiv:2402.03300 §4.1", "seq_mean_token_mean", "clip", "group_std", "none"),
    Preset("dapo", "DAPO's token-level mean only (what the λ-GRPO paper and TRL call DAPO)",
           "Yu et al. 2025, DAPO, arXiv:2503.14476 §3.3", "token_mean", "clip", "group_std", "none"),
    Preset("dr_grpo", "Dr. GRPO: token sum / (N·L_max), advantages not scaled by the std",
           "Liu et al. 2025, arXiv:2503.20783 §3", "constant", "clip", "group_mean", "none"),
    Preset("lambda_grpo", "λ-GRPO: token mean re-weighted by a learned length preference f = G·softmax(h^λ)",
           "λ-GRPO, arXiv:2510.06870 §3", "lambda", "clip", "group_std", "none"),
    Preset("dapo_full", "Full DAPO: token mean, clip-higher 0.2/0.28, overlong shaping, truncation mask, "
           "dynamic sampling with re-sampling", "Yu et al. 2025, DAPO, arXiv:2503.14476 §3.1-3.4",
           "token_mean", "clip", "group_std", "resample", mask_truncated_completions=True,
           overlong_penalty=True, hyperparameters={"epsilon_high": 0.28}),
    Preset("gspo", "GSPO: sequence-level ratio clipped per sequence (ε 3e-4/4e-4), sequence mean",
           "Zheng et al. 2025, GSPO, arXiv:2507.18071 §4", "seq_mean_token_mean", "gspo", "group_std", "none",
           hyperparameters={"epsilon_low": 3e-4, "epsilon_high": 4e-4}),
    Preset("cispo", "CISPO: clipped, stop-gradient importance weight times A·log π; token mean",
           "MiniMax-M1, arXiv:2506.13585 §3.1", "token_mean", "cispo", "group_std", "none"),
    Preset("sapo", "SAPO: soft sigmoid gate instead of the hard clip (τ_pos 1.0, τ_neg 1.05); sequence mean",
           "SAPO, Soft Adaptive Policy Optimization, arXiv:2511.20347", "seq_mean_token_mean", "sapo", "group_std", "none"),
    Preset("bnpo", "BNPO as TRL implements it: token mean of each local micro-batch",
           "TRL 1.16 loss_type=bnpo (trl/trainer/grpo_config.py)", "local_token_mean", "clip", "group_std", "none"),
)

#: Registry: preset name -> :class:`Preset`. Also exported as ``lgrpo_bench.algorithms.ALGORITHMS``.
PRESETS: dict[str, Preset] = {preset.name: preset for preset in _PRESET_LIST}


class AlgorithmError(ValueError):
    """A refused algorithm config. ``key`` is the dotted config key at fault (None for a combination of keys)."""

    def __init__(self, message: str, key: str | None = None, value: Any = None):
        super().__init__(message)
        self.key = key
        self.value = value


def get_preset(name: str) -> Preset:
    """The preset registered under ``name``; an :class:`AlgorithmError` listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise AlgorithmError(f"unknown algorithm {name!r}: choose one of {', '.join(PRESETS)}", "algorithm.name", name) from None


@dataclass(frozen=True)
class ResolvedAlgorithm:
    """Every axis value and hyperparameter one run trains with. Hyperparameters its axis values do not use are None.

    ``values`` holds the hyperparameters its axis values declare (``HYPERPARAMETERS`` of their modules), each
    readable as an attribute (``algorithm.epsilon_low``, ``algorithm.r``; None when its values do not use it).
    ``notes`` are one-line explanations of legal but easy-to-misread combinations (not part of the identity).
    """

    name: str
    aggregation: str
    surrogate: str
    advantage: str
    group_filter: str
    values: tuple[tuple[str, Any], ...] = ()
    mask_truncated_completions: bool = False
    overlong_penalty: bool = False
    overlong_buffer_tokens: int | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __getattr__(self, name: str) -> Any:  # only for names that are not fields: the declared hyperparameters
        if name in HYPERPARAMETERS:
            return dict(self.values).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def values_of(self, axis: str) -> dict[str, Any]:
        """The hyperparameters of this algorithm's value on ``axis`` ({"sapo_temperature_pos": 1.0, ...})."""
        return {h.name: getattr(self, h.name) for h in VALUE_HYPERPARAMETERS.get((axis, getattr(self, axis)), ())}

    @property
    def uses_lambda(self) -> bool:
        return self.aggregation == "lambda"

    @property
    def axes(self) -> dict[str, str]:
        return {axis: getattr(self, axis) for axis in AXIS_NAMES}

    def identity(self) -> dict[str, Any]:
        """What makes two runs train identically, plus the preset name (reports group rows by it): the run id's
        ``algorithm`` section. Unused hyperparameters are None, so they never split a run id."""
        return dict(self._identity)

    @functools.cached_property
    def _identity(self) -> dict[str, Any]:  # computed once per resolved algorithm (grids share a handful)
        data = asdict(self)
        data.pop("notes")
        data.pop("values")
        data.update({h.name: None for h in HYPERPARAMETERS.values() if h.in_every_run_id})
        data.update(self.values)
        return data


def _value(section: Mapping[str, Any], key: str, default: Any) -> Any:
    value = section.get(key)
    return default if value is None else value


def _choice(section: Mapping[str, Any], axis: str, preset: Preset) -> str:
    value = section.get(axis)
    if value is None:
        return getattr(preset, axis)
    if value not in AXES[axis]:
        raise AlgorithmError(f"unknown {axis} {value!r}: choose one of {', '.join(AXES[axis])}", f"algorithm.{axis}", value)
    return value


def resolve_algorithm(
    section: Mapping[str, Any],
    *,
    num_generations: int,
    max_completion_length: int,
    num_iterations: int = 1,
) -> ResolvedAlgorithm:
    """Expand ``algorithm.name`` into its preset, apply the section's overrides, check the combination.

    Args:
        section: the config's ``algorithm`` section as a mapping (``AlgorithmConfig.model_dump()``); None values
            mean "the preset's".
        num_generations: G (λ's r must keep 1 + r·z > 0 for every group of G).
        max_completion_length: L_max (the overlong buffer must fit inside it).
        num_iterations: passes over each generation batch (1 = on-policy: ρ ≡ 1, noted for non-clip surrogates).
    Raises:
        AlgorithmError: an unknown name or axis value (``key`` names it), or a refused combination (``key`` None).

    Rules (docs/loss.md):
      refused — λ's r ≥ 1/sqrt(G−1) (h = 1 + r·z would reach 0); CISPO's ε_max < 1 (it would cap the on-policy
      ratio 1 and scale every gradient down); an overlong buffer longer than L_max;
      noted — GSPO's sequence ratio with a token-level aggregation; any non-clip surrogate on-policy; the
      local (micro-batch) token mean; ``drop`` (the batch shrinks);
      ignored — hyperparameters the chosen values do not use (they are None in the result and not in the run id).
    """
    preset = get_preset(section.get("name") or DEFAULT_PRESET)
    axes = {axis: _choice(section, axis, preset) for axis in AXIS_NAMES}
    hyperparameters = _hyperparameter_values(axes, lambda h: _value(section, h.name, preset.default(h)))
    context = {"num_generations": num_generations, "max_completion_length": max_completion_length,
               "num_iterations": num_iterations}
    for axis in _CHECK_ORDER:
        check = getattr(REGISTRIES[axis][axes[axis]], "check", None)
        problem = check(hyperparameters, **context) if check is not None else None
        if problem:
            raise AlgorithmError(problem)
    values: dict[str, Any] = {}
    mask_truncated = bool(_value(section, "mask_truncated_completions", preset.mask_truncated_completions))
    overlong = bool(_value(section, "overlong_penalty", preset.overlong_penalty))
    values.update(mask_truncated_completions=mask_truncated, overlong_penalty=overlong)
    if overlong:
        buffer = _value(section, "overlong_buffer_tokens", max(1, max_completion_length // 5))
        if buffer > max_completion_length:
            raise AlgorithmError(
                f"algorithm.overlong_buffer_tokens={buffer} is longer than train.max_completion_length="
                f"{max_completion_length}: the soft overlong penalty would start before the first token; use at most "
                f"{max_completion_length} (DAPO: 4,096 of 20,480)")
        values["overlong_buffer_tokens"] = buffer
    return ResolvedAlgorithm(name=preset.name, **axes, values=tuple(hyperparameters.items()),
                             notes=combination_notes(axes, num_iterations), **values)


#: The preset of a config that names none (``AlgorithmConfig.name``'s default).
DEFAULT_PRESET = "lambda_grpo"
#: The order in which the axis values' checks run (the first refusal is the one reported).
_CHECK_ORDER = ("surrogate", "aggregation", "advantage", "group_filter")


def _hyperparameter_values(axes: Mapping[str, str], value_of) -> dict[str, Any]:
    """Every hyperparameter the chosen axis values declare, in declaration order: ``value_of(h)`` coerced to its type,
    or None when it is unused (``only_if`` not met)."""
    values: dict[str, Any] = {}
    for axis in AXIS_NAMES:
        for hyperparameter in VALUE_HYPERPARAMETERS.get((axis, axes[axis]), ()):
            condition = hyperparameter.only_if
            if condition is not None and values.get(condition[0]) != condition[1]:
                values[hyperparameter.name] = None
            else:
                values[hyperparameter.name] = hyperparameter.coerce(value_of(hyperparameter))
    return values


def combination_notes(axes: Mapping[str, str], num_iterations: int) -> tuple[str, ...]:
    """One-line notes on legal but easy-to-misread combinations of axis values (see :func:`resolve_algorithm`)."""
    aggregation, surrogate, group_filter = axes["aggregation"], axes["surrogate"], axes["group_filter"]
    notes: list[str] = []
    if SURROGATES[surrogate].sequence_level and aggregation in TOKEN_LEVEL_AGGREGATIONS:
        notes.append(f"{surrogate} with aggregation {aggregation}: the sequence-level loss is summed over tokens, so each "
                     f"completion counts |o_i| times (longer ones weigh more); the {surrogate.upper()} paper uses "
                     f"seq_mean_token_mean (TRL warns about this combination)")
    if surrogate != "clip" and num_iterations == 1:
        notes.append(f"{surrogate} on-policy (train.num_iterations 1): ρ ≡ 1, so its gradient equals clip's; set "
                     f"train.num_iterations > 1 for the surrogates to differ")
    if aggregation == "local_token_mean":
        notes.append("local_token_mean normalises by each micro-batch's tokens: results depend on "
                     "gradient_accumulation_steps and the number of processes (as TRL's bnpo docs say)")
    if group_filter == "drop":
        notes.append("group_filter drop: uniform-accuracy groups leave the loss and the batch shrinks step to step; "
                     "resample refills it")
    return tuple(notes)


@functools.lru_cache(maxsize=4096)
def _resolve_cached(section_items: tuple, num_generations: int, max_completion_length: int,
                    num_iterations: int) -> ResolvedAlgorithm:
    return resolve_algorithm(dict(section_items), num_generations=num_generations,
                             max_completion_length=max_completion_length, num_iterations=num_iterations)


def algorithm_of(config) -> ResolvedAlgorithm:
    """The algorithm a run config (:class:`~lgrpo_bench.config.RunConfig`) trains with; :class:`AlgorithmError` when
    it is refused. Cached by the algorithm section and the train options it depends on (grids of 10,000 points
    share a handful of algorithm sections)."""
    section = tuple(sorted(config.algorithm.model_dump().items()))
    return _resolve_cached(section, config.train.num_generations, config.train.max_completion_length,
                           config.train.num_iterations)


def resolved_section(algorithm: ResolvedAlgorithm) -> dict[str, Any]:
    """The ``algorithm`` config section that states ``algorithm`` in full: the preset name, the four axis values,
    every declared hyperparameter (None where its values do not use it) and the shaping options. What a prepared run's
    ``config.yaml`` stores; resolving it again gives ``algorithm`` back (the same run id)."""
    used = dict(algorithm.values)
    return {"name": algorithm.name, **algorithm.axes, **{name: used.get(name) for name in HYPERPARAMETERS},
            "mask_truncated_completions": algorithm.mask_truncated_completions,
            "overlong_penalty": algorithm.overlong_penalty, "overlong_buffer_tokens": algorithm.overlong_buffer_tokens}


def stored_algorithm(config) -> ResolvedAlgorithm:
    """The algorithm a prepared run config states (:func:`resolved_section`, written by ``prepare_run``), read as it
    is: no preset is applied and no rule re-checked (that happened once, when the run was prepared).

    Raises:
        AlgorithmError: the section is not resolved (an axis value, a shaping option or a hyperparameter its values
            use is None): a config that was never prepared.
    """
    section = config.algorithm.model_dump()
    missing = [key for key in (*AXIS_NAMES, "mask_truncated_completions", "overlong_penalty") if section.get(key) is None]
    axes = {axis: section[axis] for axis in AXIS_NAMES}
    if not missing:
        values = _hyperparameter_values(axes, lambda h: section.get(h.name))
        missing = [h.name for axis in AXIS_NAMES for h in VALUE_HYPERPARAMETERS.get((axis, axes[axis]), ())
                   if section.get(h.name) is None and values.get(h.name) is not None]
    if missing or (section["overlong_penalty"] and section.get("overlong_buffer_tokens") is None):
        raise AlgorithmError(f"the algorithm section is not resolved ({', '.join(missing or ['overlong_buffer_tokens'])} "
                             "unset): a prepared run's config.yaml states every axis value and hyperparameter; prepare "
                             "the run with lgrpo_bench.runs.resolve.prepare_run")
    return ResolvedAlgorithm(
        name=section["name"], **axes, values=tuple(values.items()),
        mask_truncated_completions=section["mask_truncated_completions"], overlong_penalty=section["overlong_penalty"],
        overlong_buffer_tokens=section["overlong_buffer_tokens"] if section["overlong_penalty"] else None,
        notes=combination_notes(axes, config.train.num_iterations))


def preset_algorithm(name: str, *, num_generations: int = 8, max_completion_length: int = 512,
                     num_iterations: int = 1, **overrides: Any) -> ResolvedAlgorithm:
    """``resolve_algorithm({"name": name, **overrides}, ...)``: a shortcut for scripts and tests."""
    return resolve_algorithm({"name": name, **overrides}, num_generations=num_generations,
                             max_completion_length=max_completion_length, num_iterations=num_iterations)


# ---------------------------------------------------------------------------------------------------------
# The config's algorithm section, from the declarations (config/schema.py builds AlgorithmConfig from these)
# ---------------------------------------------------------------------------------------------------------
_AXIS_MEANING = {
    "aggregation": "w_i in L = Σ_i w_i Σ_t ℓ_it",
    "surrogate": "ℓ_it",
    "advantage": "A_i",
    "group_filter": "Which groups enter the loss, decided on accuracy (the correctness reward) as in DAPO "
                    "(arXiv 2503.14476 §3.2)",
}


def preset_field_description() -> str:
    """The description of ``algorithm.name``: the presets, from the registry."""
    return (f"Preset: {', '.join(PRESETS)}; it sets aggregation, surrogate, advantage, group_filter and their "
            "hyperparameters (the fields below override them)")


def axis_field_description(axis: str) -> str:
    """The description of ``algorithm.<axis>``: every value with its module's summary."""
    values = "; ".join(f"{name} ({summary})" for name, summary in AXES[axis].items())
    return f"{_AXIS_MEANING[axis]}: {values}; None = the preset's"


@dataclass(frozen=True)
class ConfigField:
    """A declared hyperparameter as the config's field ``algorithm.<name>``: default None (= the preset's)."""

    name: str
    kind: type
    choices: tuple[str, ...] | None
    bounds: dict[str, float]
    description: str


def config_fields() -> list[ConfigField]:
    """The ``algorithm.<name>`` fields of every declared hyperparameter, in declaration order. The description says
    which axis values use it, what it means and what None stands for: its declared default and the presets that set
    another value."""
    users: dict[str, list[tuple[str, str]]] = {}
    for (axis, value), hyperparameters in VALUE_HYPERPARAMETERS.items():
        for hyperparameter in hyperparameters:
            users.setdefault(hyperparameter.name, []).append((axis, value))
    fields = []
    for name, hyperparameter in HYPERPARAMETERS.items():
        axis = users[name][0][0]
        used_by = f"{axis} {'/'.join(value for _, value in users[name])}"
        own = [f"{preset.name} {_text(preset.hyperparameters[name])}" for preset in PRESETS.values()
               if name in preset.hyperparameters]
        default = hyperparameter.describe_default()
        none = f"the preset's ({'; '.join([default, *own])})" if own else default
        if hyperparameter.only_if is not None:
            none += f"; used only with {hyperparameter.only_if[0]} {_text(hyperparameter.only_if[1])}"
        fields.append(ConfigField(name, hyperparameter.kind, hyperparameter.choices, hyperparameter.bounds,
                                  f"{used_by}: {hyperparameter.description}; None = {none}"))
    return fields


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


#: TRL 1.16 loss_type that reproduces (aggregation, surrogate); GSPO adds importance_sampling_level="sequence".
_TRL_LOSS_TYPES: dict[tuple[str, str], str] = {
    ("seq_mean_token_mean", "clip"): "grpo",
    ("token_mean", "clip"): "dapo",
    ("constant", "clip"): "dr_grpo",
    ("local_token_mean", "clip"): "bnpo",
    ("token_mean", "cispo"): "cispo",
    ("seq_mean_token_mean", "sapo"): "sapo",
    ("seq_mean_token_mean", "gspo"): "grpo",
    ("token_mean", "gspo"): "dapo",
    ("constant", "gspo"): "dr_grpo",
    ("local_token_mean", "gspo"): "bnpo",
}
_TRL_SCALE_REWARDS = {"group_std": "group", "group_mean": "none", "batch_std": "batch"}


def trl_equivalent(algorithm: ResolvedAlgorithm) -> dict[str, Any] | None:
    """The TRL 1.16 ``GRPOConfig`` options whose built-in loss equals this combination's, or None.

    Covers the loss (``loss_type``, ``importance_sampling_level``, ``epsilon``/``epsilon_high``,
    ``sapo_temperature_*``) and the advantages (``scale_rewards``); TRL has no λ, no prompt mean and no group filter.
    """
    loss_type = trl_loss_type(algorithm.aggregation, algorithm.surrogate)
    if loss_type is None or algorithm.group_filter != "none":
        return None
    options: dict[str, Any] = {
        "loss_type": loss_type,
        "importance_sampling_level": "sequence" if algorithm.surrogate == "gspo" else "token",
        "scale_rewards": _TRL_SCALE_REWARDS[algorithm.advantage],
        "mask_truncated_completions": algorithm.mask_truncated_completions,
    }
    options.update(trl_loss_options(algorithm))
    return options


def trl_loss_options(algorithm: ResolvedAlgorithm) -> dict[str, Any]:
    """The TRL ``GRPOConfig`` options that carry this algorithm's surrogate hyperparameters (its module's
    ``TRL_OPTIONS``: ``{"epsilon_high": 5.0}`` for cispo); TRL's defaults stand for the others."""
    return {option: getattr(algorithm, name) for option, name in SURROGATES[algorithm.surrogate].trl_options.items()}


#: Every TRL option some surrogate carries a hyperparameter in (the trainer checks each against this algorithm's).
TRL_LOSS_OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(o for spec in SURROGATES.values() for o in spec.trl_options))


def trl_loss_type(aggregation: str, surrogate: str) -> str | None:
    """TRL 1.16's ``loss_type`` whose normaliser and per-token loss match (aggregation, surrogate), or None."""
    return _TRL_LOSS_TYPES.get((aggregation, surrogate))


def trl_scale_rewards(advantage: str) -> str:
    """TRL's ``scale_rewards`` value for an advantage axis value (every one has an equivalent)."""
    return _TRL_SCALE_REWARDS[advantage]


__all__ = [
    "AXES", "AXIS_NAMES", "AlgorithmError", "ConfigField", "DEFAULT_PRESET", "HYPERPARAMETERS", "PRESETS", "Preset",
    "REGISTRIES", "ResolvedAlgorithm", "TOKEN_LEVEL_AGGREGATIONS", "TRL_LOSS_OPTIONS", "VALUE_HYPERPARAMETERS",
    "algorithm_of", "axis_field_description", "combination_notes", "config_fields", "get_preset", "max_safe_r",
    "preset_algorithm", "preset_field_description", "resolve_algorithm", "resolved_section", "stored_algorithm",
    "trl_equivalent", "trl_loss_options", "trl_loss_type", "trl_scale_rewards",
]
