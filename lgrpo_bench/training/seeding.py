"""Every random source of a training run takes its seed from ``train.seed`` (issue 27 §1).

Where each source gets its seed (TRL 1.16, through :class:`~lgrpo_bench.training.trainer.UnifiedLossGRPOTrainer`):

=====================  =================================================================================================
prompt order           TRL's ``RepeatSampler(seed=args.seed)``; it ignores ``data_seed`` (``grpo_config`` sets both to
                       ``train.seed``); DAPO's extra rounds draw prompts from ``(train.seed, step, round)``
HF generation,         the process's global RNGs, seeded by TRL with ``set_seed(args.seed, device_specific=True)``
dropout                (``train.seed + process index``); re-seeded so after a colocated vLLM engine is built, because
                       vLLM's worker seeds the process's global RNGs with its own engine seed
vLLM engine            TRL builds ``LLM(seed=process_index // tensor_parallel_size)``, whatever ``args.seed`` is (TRL
(colocate)             PR #7040, unmerged): two training seeds would sample identical rollouts. The engine gets
                       :func:`engine_seed` ``(train.seed, data-parallel rank)`` instead (:func:`seeded_vllm_engine`)
vLLM requests          each prompt row of a colocated ``LLM.generate`` call gets its own ``SamplingParams.seed`` =
(colocate)             :func:`request_seed` ``(train.seed, data-parallel rank, step, round, mode) + row``
                       (:class:`PerRowSeededLLM`; one seed for the whole call would give the G copies of a prompt G
                       identical completions)
vLLM requests          ``generation_kwargs["seed"]`` = :func:`request_seed` ``(train.seed, 0, step, round, mode)``; the
(server)               server samples the G completions of a prompt with ``n = G``, and vLLM seeds child i with
                       ``seed + i``. The server's own ``--seed`` then no longer matters
λ's initial value      ``algorithm.lam_init``, a constant (nothing is drawn)
=====================  =================================================================================================

Tensor-parallel ranks of one vLLM engine share a data-parallel rank (``process_index // tensor_parallel_size``) and
so their seeds, as vLLM requires; different data-parallel ranks, steps, rounds and training seeds get different seeds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

ENGINE_STREAM = 0
"""First entropy word of :func:`engine_seed` (keeps engine and request seeds apart)."""
REQUEST_STREAM = 1
"""First entropy word of :func:`request_seed`."""
MODES = {"train": 0, "eval": 1}
"""Generation mode → its entropy word in :func:`request_seed`."""


def derived_seed(*parts: int) -> int:
    """A 31-bit seed from non-negative integers: ``SeedSequence(parts).generate_state(1)[0] >> 1``.

    numpy's ``SeedSequence`` hashes its whole entropy, so (seed 0, step 1) and (seed 1, step 0) get unrelated seeds
    (a sum or a product of the parts would collide); 31 bits fit every seed API (and leave room for ``+ row``)."""
    if any(part < 0 for part in parts):
        raise ValueError(f"seed parts must be non-negative integers, got {parts}")
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1, dtype=np.uint32)[0]) >> 1


def engine_seed(seed: int, dp_rank: int) -> int:
    """The colocated vLLM engine's seed: ``derived_seed(ENGINE_STREAM, seed, dp_rank)``."""
    return derived_seed(ENGINE_STREAM, seed, dp_rank)


def request_seed(seed: int, dp_rank: int, step: int, round_index: int = 0, mode: str = "train") -> int:
    """The ``SamplingParams.seed`` of one generation call's first row: ``derived_seed(REQUEST_STREAM, seed, dp_rank,
    step, round_index, MODES[mode])``; row i of a colocated call uses this ``+ i``."""
    return derived_seed(REQUEST_STREAM, seed, dp_rank, step, round_index, MODES[mode])


@contextmanager
def seeded_vllm_engine(seed: int) -> Iterator[None]:
    """While TRL builds a colocated vLLM engine, its ``LLM(..., seed=process_index // tp)`` gets
    :func:`engine_seed` ``(seed, that data-parallel rank)`` instead; TRL's own call is used otherwise unchanged.

    TRL's ``VLLMGeneration`` offers no seed argument, so the ``LLM`` name it calls (``trl.generation.vllm_generation
    .LLM``) is wrapped for the duration of the trainer's construction only. Without vLLM installed there is no such
    name and nothing to do (TRL refuses ``use_vllm`` itself)."""
    from trl.generation import vllm_generation

    make_llm = getattr(vllm_generation, "LLM", None)
    if make_llm is None:
        yield
        return

    def seeded_llm(*args: Any, **kwargs: Any):
        kwargs["seed"] = engine_seed(seed, int(kwargs.get("seed") or 0))
        return make_llm(*args, **kwargs)

    vllm_generation.LLM = seeded_llm
    try:
        yield
    finally:
        vllm_generation.LLM = make_llm


def per_row_sampling_params(sampling_params: Any, n_rows: int, base_seed: int) -> list[Any]:
    """One copy of ``sampling_params`` (or of its i-th element, when a list) per row, row i with ``seed = base_seed +
    i`` (``copy.copy``, as vLLM copies its own parameters for parallel sampling)."""
    rows = list(sampling_params) if isinstance(sampling_params, Sequence) else [sampling_params] * n_rows
    if len(rows) != n_rows:
        raise ValueError(f"{len(rows)} sampling parameters for {n_rows} prompts")
    seeded = []
    for row, params in enumerate(rows):
        params = copy.copy(params)
        params.seed = base_seed + row
        seeded.append(params)
    return seeded


class PerRowSeededLLM:
    """A colocated vLLM ``LLM`` whose ``generate`` seeds every prompt row (:func:`per_row_sampling_params`) from
    ``base_seed()``, read at each call; everything else (weight loading, sleep, prefix cache) goes to the engine."""

    def __init__(self, llm: Any, base_seed: Callable[[], int]):
        self.engine = llm
        self._base_seed = base_seed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def generate(self, prompts, sampling_params=None, **kwargs: Any):
        params = per_row_sampling_params(sampling_params, len(prompts), self._base_seed())
        return self.engine.generate(prompts, sampling_params=params, **kwargs)
