"""Models: the locally trained tiny tokenizer, tiny warm-started Qwen2 presets, and model resolution/loading.

Modules, one job each: ``presets`` (preset names and recipes, the warm-start band; no torch), ``tokenizer``,
``sft`` (the warm-start SFT loop and its stopping rule), ``heldout`` (held-out greedy accuracy and sampled
statistics), ``tiny`` (building and caching a warm start), ``generation``, ``loading`` (resolving a model
spec and loading it). Names are re-exported lazily: importing this package imports neither torch nor
transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_tokenizer": "tokenizer",
    "make_tokenizer": "tokenizer",
    "QWEN_PRESETS": "presets",
    "RECIPE_VERSION": "presets",
    "TINY_PRESETS": "presets",
    "TinyPreset": "presets",
    "WARM_START_BAND": "presets",
    "BandVerdict": "presets",
    "warm_start_band_check": "presets",
    "TinyBuildResult": "tiny",
    "build_tiny": "tiny",
    "default_cache_dir": "tiny",
    "greedy_accuracy": "heldout",
    "greedy_accuracy_of": "heldout",
    "heldout_problems": "heldout",
    "sampled_group_stats": "heldout",
    "ModelLoadError": "loading",
    "ResolvedModel": "loading",
    "load_model_and_tokenizer": "loading",
    "resolve_model": "loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
