"""Models: the locally trained tiny tokenizer, tiny warm-started Qwen2 presets, and model resolution/loading.

Names are re-exported lazily (importing this package does not import torch or transformers).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_tokenizer": "tokenizer",
    "make_tokenizer": "tokenizer",
    "TINY_PRESETS": "tiny",
    "TinyPreset": "tiny",
    "TinyBuildResult": "tiny",
    "build_tiny": "tiny",
    "default_cache_dir": "tiny",
    "greedy_accuracy": "tiny",
    "heldout_problems": "tiny",
    "sampled_group_stats": "tiny",
    "QWEN_PRESETS": "loading",
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
