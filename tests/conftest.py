"""Shared fixtures: tiny models built in the test session (never downloaded), offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Real benchmark copies (never copied into the repo); CI points LGRPO_DATA_DIR here.
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "math"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("LGRPO_DATA_DIR", DEFAULT_DATA_DIR))
    if not path.is_dir():
        pytest.skip(f"benchmark data folder {path} not found (set LGRPO_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A model cache private to the test session."""
    return tmp_path_factory.mktemp("tiny-cache")


@pytest.fixture(scope="session")
def warm_tiny(tiny_cache):
    """tiny-s after a short warm start: emits EOS at varying lengths (enough for mechanics, not quality)."""
    from lgrpo_bench.models.tiny import build_tiny

    return build_tiny("tiny-s", cache_dir=tiny_cache, seed=0, sft_steps=120)
