"""GRPO-family algorithms as one weighted loss over four orthogonal axes (see :mod:`lgrpo_bench.algorithms.base`).

- ``presets`` (pure Python, no torch): the axes and their choices, the named presets, :func:`resolve_algorithm`
  (a config's ``algorithm`` section → :class:`ResolvedAlgorithm`, refusing nonsense combinations), the config
  fields built from the declarations (``config_fields``), ``resolved_section`` / ``stored_algorithm`` (what a
  prepared run's ``config.yaml`` states, read back without resolving again);
- ``aggregation/``, ``surrogate/``, ``advantage/``, ``group_filter/``: one module per axis value, each with its
  equation and reference, its ``SUMMARY`` and its hyperparameters (``HYPERPARAMETERS``, declared once:
  ``hyperparameter.py``), behind a registry per axis (``AGGREGATIONS``, ``SURROGATES``, ``ADVANTAGES``,
  ``GROUP_FILTERS``); adding a value is a module plus its entry in its registry (ARCHITECTURE.md);
- ``weights`` (w_i for whole batches) and ``loss`` (Σ_i w_i Σ_t ℓ_{i,t}).

Importing this package does not import torch: the names below are loaded on first use (PEP 562), so
``import lgrpo_bench.algorithms.presets`` stays torch-free.

    from lgrpo_bench.algorithms import preset_algorithm, completion_weights
    algorithm = preset_algorithm("cispo", aggregation="lambda", num_generations=8)
    w = completion_weights("lambda", lengths, group_size=8, lam=torch.tensor(0.3), r=1/9)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, tuple[str, str]] = {
    # presets (torch-free)
    "ALGORITHMS": ("presets", "PRESETS"),
    "PRESETS": ("presets", "PRESETS"),
    "AXES": ("presets", "AXES"),
    "AXIS_NAMES": ("presets", "AXIS_NAMES"),
    "AlgorithmError": ("presets", "AlgorithmError"),
    "Preset": ("presets", "Preset"),
    "ResolvedAlgorithm": ("presets", "ResolvedAlgorithm"),
    "get_algorithm": ("presets", "get_preset"),
    "max_safe_r": ("presets", "max_safe_r"),
    "preset_algorithm": ("presets", "preset_algorithm"),
    "resolve_algorithm": ("presets", "resolve_algorithm"),
    "resolved_section": ("presets", "resolved_section"),
    "stored_algorithm": ("presets", "stored_algorithm"),
    "trl_equivalent": ("presets", "trl_equivalent"),
    # torch
    "WeightInputs": ("base", "WeightInputs"),
    "lambda_preferences": ("base", "lambda_preferences"),
    "length_zscores": ("base", "length_zscores"),
    "relative_token_weight": ("base", "relative_token_weight"),
    "AGGREGATIONS": ("aggregation", "AGGREGATIONS"),
    "SURROGATES": ("surrogate", "SURROGATES"),
    "SurrogateParams": ("surrogate", "SurrogateParams"),
    "ADVANTAGES": ("advantage", "ADVANTAGES"),
    "GROUP_FILTERS": ("group_filter", "GROUP_FILTERS"),
    "batch_weight_inputs": ("weights", "batch_weight_inputs"),
    "completion_weights": ("weights", "completion_weights"),
    "unified_loss": ("loss", "unified_loss"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'lgrpo_bench.algorithms' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"lgrpo_bench.algorithms.{module_name}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
