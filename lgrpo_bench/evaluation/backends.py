"""Generation backends of an evaluation: HF transformers (``HFLM``), vLLM, or an oracle, run through lm-eval.

* :func:`resolve_backend` — ``auto``/``hf``/``vllm`` → ``hf`` or ``vllm`` (:class:`BackendUnavailable` when vLLM or
  CUDA is missing);
* :func:`build_model` — the lm-eval model, how to count completion tokens, and the torch threads generation uses
  (one for small models on CPU; a CPU batch of 64 below 20M parameters, else 8);
* :func:`run_lm_eval` — the task pack's tasks with the resolved protocols through ``lm_eval.simple_evaluate``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lgrpo_bench.evaluation.benchmarks import TASK_DIR, get_benchmark
from lgrpo_bench.evaluation.protocol import BenchmarkSettings

if TYPE_CHECKING:
    from lgrpo_bench.config.schema import EvalConfig

__all__ = ["BackendUnavailable", "VLLM_INSTALL_HINT", "build_model", "resolve_backend", "run_lm_eval"]

VLLM_INSTALL_HINT = 'backend vllm needs vLLM and a CUDA GPU: install the extra with `pip install -e ".[vllm]"` (or use --backend hf)'
SMALL_MODEL_PARAMS = 20_000_000
CPU_BATCH_SMALL, CPU_BATCH_LARGE = 64, 8


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (vLLM not installed, no GPU)."""


def resolve_backend(requested: str) -> str:
    """``hf`` or ``vllm`` for ``requested`` in ``auto``/``hf``/``vllm``; :class:`BackendUnavailable` for vllm
    without vLLM installed or without CUDA (the message says how to install the extra)."""
    import torch

    has_vllm = importlib.util.find_spec("vllm") is not None
    if requested == "auto":
        return "vllm" if has_vllm and torch.cuda.is_available() else "hf"
    if requested == "vllm" and not (has_vllm and torch.cuda.is_available()):
        raise BackendUnavailable(VLLM_INSTALL_HINT if not has_vllm else "backend vllm needs a CUDA GPU; use --backend hf")
    if requested not in ("hf", "vllm"):
        raise ValueError(f"unknown backend {requested!r}; choose auto, hf or vllm")
    return requested


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _without_environment_report() -> Iterator[None]:
    """``simple_evaluate`` without lm-eval's environment report.

    At its end ``lm_eval.evaluator.simple_evaluate`` calls ``add_env_info``, which runs
    ``torch.utils.collect_env`` (``pip list`` in a subprocess, compiler and driver probes): 1.6 s of CPU per
    evaluation on the 2-core dev machine, for a text nothing here reads (the run's versions are its
    ``lgrpo.versions`` tag). The one private seam on lm-eval: its module global is swapped for the call and
    restored; ``tests/test_evaluation_seams.py`` fails when lm-eval stops calling it by that name. A call that
    starts while another holds the swap (another thread's evaluation) leaves the swap to that one, so however the
    two overlap the global ends as lm-eval's own.
    """
    from lm_eval import evaluator

    collect = evaluator.add_env_info
    if collect is _no_environment_report:
        yield
        return
    evaluator.add_env_info = _no_environment_report
    try:
        yield
    finally:
        evaluator.add_env_info = collect


def _no_environment_report(results: dict[str, Any]) -> None:
    """What lm-eval's ``add_env_info`` would add, left out (see :func:`_without_environment_report`)."""


@dataclass
class Model:
    """An lm-eval model plus how to count completion tokens and how many torch threads generation uses."""

    lm: Any
    count_tokens: Callable[[str], int]
    threads: int | None = None


def _cpu_batch_size(n_params: int) -> int:
    return CPU_BATCH_SMALL if n_params < SMALL_MODEL_PARAMS else CPU_BATCH_LARGE


def build_model(name_or_path: str, backend: str, eval_config: EvalConfig, dtype: str = "auto") -> Model:
    from lgrpo_bench.evaluation.oracle import ORACLE_WRONG, ORACLES, OracleLM

    if name_or_path in ORACLES:
        oracle = OracleLM(wrong=name_or_path == ORACLE_WRONG)
        return Model(oracle, oracle.count_tokens)
    if backend == "vllm":
        from lm_eval.models.vllm_causallms import VLLM

        lm = VLLM(pretrained=name_or_path, tensor_parallel_size=eval_config.tensor_parallel_size,
                  gpu_memory_utilization=eval_config.gpu_memory_utilization, dtype=dtype if dtype != "auto" else "auto",
                  seed=eval_config.seed, batch_size="auto", max_batch_size=eval_config.max_batch_size)
        tokenizer = lm.tokenizer
        return Model(lm, lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]))

    import torch
    from lm_eval.models.huggingface import HFLM

    from lgrpo_bench.models.loading import load_model_and_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model_and_tokenizer(name_or_path, dtype=dtype, device=device)
    model.eval()
    n_params = model.num_parameters()
    batch_size: int | str = eval_config.batch_size
    if batch_size == "auto" and device == "cpu":
        batch_size = _cpu_batch_size(n_params)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_batch_size=eval_config.max_batch_size,
              device=device)
    threads = 1 if device == "cpu" and n_params < SMALL_MODEL_PARAMS else None
    return Model(lm, lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]), threads)


# ---------------------------------------------------------------------------------------------------------
# Running lm-eval
# ---------------------------------------------------------------------------------------------------------
def run_lm_eval(model: Model, plan: dict[str, BenchmarkSettings], *, data_dir: str | None, tokenizer: str | None,
                 limit: int | None, seed: int) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from lgrpo_bench.evaluation import oracle  # noqa: F401  (registers the oracle models with lm-eval)

    metadata = {"data_dir": data_dir, "templates": {name: s.template for name, s in plan.items()}, "tokenizer": tokenizer}
    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata=metadata)
    loaded = manager.load([get_benchmark(name).task_name for name in plan])
    for name, settings in plan.items():
        task = loaded["tasks"][get_benchmark(name).task_name]
        task.set_config(key="repeats", value=settings.k)
        task.set_config(key="generation_kwargs", value=settings.generation_kwargs())
    with _torch_threads(model.threads), _without_environment_report():
        return simple_evaluate(model=model.lm, tasks=list(loaded["tasks"].values()), task_manager=manager, limit=limit, bootstrap_iters=1,
                               log_samples=True, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                               fewshot_random_seed=seed)
