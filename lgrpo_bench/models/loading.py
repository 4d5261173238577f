"""Resolve a model spec (tiny preset, Qwen preset, local folder, hub id) and load model + tokenizer.

``resolve_model`` never touches the network: a tiny preset is built (or taken from the cache), a Qwen preset
becomes its hub id, an existing folder stays a folder, anything else is kept as a hub id.
``load_model_and_tokenizer`` does the loading; when a hub id cannot be fetched (offline, typo) it raises a
``ModelLoadError`` that says so and lists the presets.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lgrpo_bench.models.presets import QWEN_PRESETS, TINY_PRESETS
from lgrpo_bench.models.tiny import EmitFn, ProgressFn, TinyBuildResult, build_tiny, default_cache_dir

__all__ = [
    "QWEN_PRESETS",
    "ModelLoadError",
    "ResolvedModel",
    "format_param_count",
    "load_model_and_tokenizer",
    "resolve_model",
]

ModelKind = Literal["tiny", "preset", "local", "hub"]

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message says what was tried."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model spec points: ``name_or_path`` is what ``from_pretrained`` gets."""

    name_or_path: str
    kind: ModelKind
    size_label: str
    build: TinyBuildResult | None = None


def format_param_count(n_params: int) -> str:
    """``201792`` → ``"0.2M"``, ``1_543_714_304`` → ``"1.5B"``."""
    if n_params >= 1e9:
        return f"{n_params / 1e9:.1f}B"
    return f"{n_params / 1e6:.1f}M"


def _size_from_name(name: str) -> str:
    match = re.search(r"(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])", name.rsplit("/", 1)[-1])
    return f"{match.group(1)}{match.group(2).upper()}" if match else "?"


def _size_of_folder(folder: Path) -> str:
    """Parameter count from ``metrics.json`` (tiny builds) or from the config on the meta device."""
    try:
        return format_param_count(int(json.loads((folder / "metrics.json").read_text())["n_params"]))
    except (OSError, KeyError, ValueError, TypeError):
        pass
    try:
        config = AutoConfig.from_pretrained(str(folder))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return format_param_count(sum(p.numel() for p in model.parameters()))
    except Exception:  # noqa: BLE001 - a size label is cosmetic
        return _size_from_name(folder.name)


def _presets_text() -> str:
    return ", ".join([*TINY_PRESETS, *QWEN_PRESETS])


def resolve_model(
    spec: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    sft_steps: int | None = None,
    progress: ProgressFn | None = None,
    emit: EmitFn | None = None,
    task: str = "arith",
) -> ResolvedModel:
    """Map a model spec to a loadable name or path, building tiny presets on demand.

    - ``tiny-s`` / ``tiny-m`` / ``tiny-l`` → :func:`~lgrpo_bench.models.tiny.build_tiny` (cached under
      ``cache_dir``, default :func:`~lgrpo_bench.models.tiny.default_cache_dir`; ``sft_steps`` None = the
      preset's warm-start budget; ``progress`` and ``emit`` as there), kind ``"tiny"``; with ``task="lenmix"``
      the lenmix base of the same preset and seed
      (:func:`~lgrpo_bench.models.testbed.build_tiny_for_task`), other tasks the arith warm start;
    - a key of :data:`QWEN_PRESETS` (case-insensitive) → its hub id, kind ``"preset"``;
    - an existing folder → that folder, kind ``"local"``;
    - anything else → kept as a hub id, kind ``"hub"`` (checked only when loading). A spec that looks like
      a filesystem path (``/``, ``./``, ``~``) but does not exist raises ``ModelLoadError`` right away.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"empty model spec; presets are {_presets_text()}")
    spec = spec.strip()
    if spec in TINY_PRESETS and task == "lenmix":  # the arith warm start continued on lenmix styles
        from lgrpo_bench.models.testbed import build_tiny_for_task

        build = build_tiny_for_task(spec, task, cache_dir=cache_dir if cache_dir is not None else default_cache_dir(),
                                    seed=seed, sft_steps=sft_steps, progress=progress, emit=emit)
        return ResolvedModel(str(build.path), "tiny", format_param_count(int(build.metrics["n_params"])), build)
    if spec in TINY_PRESETS:
        build = build_tiny(spec, cache_dir=cache_dir if cache_dir is not None else default_cache_dir(), seed=seed,
                           sft_steps=sft_steps, progress=progress, emit=emit)
        return ResolvedModel(str(build.path), "tiny", format_param_count(int(build.metrics["n_params"])), build)
    if spec.lower() in QWEN_PRESETS:
        hub_id = QWEN_PRESETS[spec.lower()]
        return ResolvedModel(hub_id, "preset", _size_from_name(hub_id))
    path = Path(spec).expanduser()
    if path.is_dir():
        return ResolvedModel(str(path.resolve()), "local", _size_of_folder(path))
    if spec.startswith(("/", "./", "../", "~")) or path.exists():
        raise ModelLoadError(f"could not load model {spec!r}: no such folder; presets are {_presets_text()}")
    return ResolvedModel(spec, "hub", _size_from_name(spec))


def _torch_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {', '.join(_DTYPES)}") from None


def load_model_and_tokenizer(
    name_or_path: str,
    *,
    dtype: str = "auto",
    device: str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer for generation and training.

    ``dtype="auto"`` means bfloat16 on CUDA and float32 otherwise. The tokenizer pads on the left and has a
    pad token (eos when it had none); the model's generation config gets the same pad id. Raises
    ``ModelLoadError`` (with the transformers error chained) when the model cannot be loaded.
    """
    torch_dtype = _torch_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype)
    except (OSError, ValueError) as err:
        if Path(name_or_path).expanduser().is_dir():
            reason = "a local folder, but not a complete model folder (config.json, weights, tokenizer files)"
        else:
            reason = "not a preset, not a local folder, and the hub is unreachable or has no such model"
        cause = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelLoadError(
            f"could not load model {name_or_path!r}: {reason}; presets are {_presets_text()} (cause: {cause})"
        ) from err
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer of {name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(device)
    return model, tokenizer
