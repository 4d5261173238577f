"""Evaluation on math benchmarks through lm-eval: the task pack, backends, oracle models, ``evaluate(...)``.

* :mod:`.benchmarks` — the registry read from the task pack (``tasks/lgrpo_<benchmark>.yaml``): versions,
  data files, hub copies, default protocols; :func:`load_problems`.
* :mod:`.pack` — what the task pack runs: docs with rendered prompts, scoring with the training reward's
  scorer, per-doc metrics.
* :mod:`.metrics` — pure statistics: acc, its standard error, unbiased pass@k.
* :mod:`.oracle` — ``oracle:gold`` / ``oracle:wrong`` lm-eval models.
* :mod:`.protocol` — a benchmark's resolved settings, its identity, the metrics of its records.
* :mod:`.backends` — HF / vLLM / oracle models and the lm-eval run.
* :mod:`.runner` — :func:`evaluate`: MLflow bookkeeping (identity tags, skipping what
  is logged, per-problem records).

Heavy imports (lm-eval, torch) happen inside the functions; importing this package imports none of its modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "benchmarks": ("BENCHMARK_NAMES", "TASK_DIR", "Benchmark", "BenchmarkDataError", "get_benchmark", "load_problems"),
    "metrics": ("mean_stderr", "pass_at_k", "pass_at_k_values", "reported_ks"),
    "backends": ("VLLM_INSTALL_HINT", "BackendUnavailable", "resolve_backend"),
    "protocol": ("BenchmarkSettings", "resolve_settings"),
    "runner": ("BenchmarkResult", "EvalIdentityConflict", "EvaluationResult", "RunNotTrained", "evaluate",
               "logged_benchmarks"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """The names of ``__all__``, imported from their module on first use: the resolve step reads the benchmark
    registry without importing the runner and backends."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "BENCHMARK_NAMES",
    "TASK_DIR",
    "VLLM_INSTALL_HINT",
    "BackendUnavailable",
    "Benchmark",
    "BenchmarkDataError",
    "BenchmarkResult",
    "BenchmarkSettings",
    "EvalIdentityConflict",
    "EvaluationResult",
    "RunNotTrained",
    "evaluate",
    "logged_benchmarks",
    "get_benchmark",
    "load_problems",
    "mean_stderr",
    "pass_at_k",
    "pass_at_k_values",
    "reported_ks",
    "resolve_backend",
    "resolve_settings",
]
