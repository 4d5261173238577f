"""Evaluation on math benchmarks through lm-eval: the task pack, backends, oracle models, ``evaluate(...)``.

* :mod:`.benchmarks` — the registry read from the task pack (``tasks/lgrpo_<benchmark>.yaml``): versions,
  data files, hub copies, default protocols; :func:`load_problems`.
* :mod:`.pack` — what the task pack runs: docs with rendered prompts, scoring with the training reward's
  scorer, per-doc metrics.
* :mod:`.metrics` — pure statistics: acc, its standard error, unbiased pass@k.
* :mod:`.oracle` — ``oracle:gold`` / ``oracle:wrong`` lm-eval models.
* :mod:`.protocol` — a benchmark's resolved settings, its identity, the metrics of its records.
* :mod:`.backends` — HF / vLLM / oracle models and the lm-eval run.
* :mod:`.runner` — :func:`evaluate` and :func:`evaluate_run`: MLflow bookkeeping (identity tags, skipping what
  is logged, per-problem records).

Heavy imports (lm-eval, torch) happen inside the functions; importing this package is cheap.
"""

from __future__ import annotations

from lgrpo_bench.evaluation.benchmarks import (
    BENCHMARK_NAMES,
    TASK_DIR,
    Benchmark,
    BenchmarkDataError,
    get_benchmark,
    load_problems,
)
from lgrpo_bench.evaluation.metrics import mean_stderr, pass_at_k, pass_at_k_values, reported_ks
from lgrpo_bench.evaluation.backends import VLLM_INSTALL_HINT, BackendUnavailable, resolve_backend
from lgrpo_bench.evaluation.protocol import BenchmarkSettings, resolve_settings
from lgrpo_bench.evaluation.runner import (
    BenchmarkResult,
    EvalIdentityConflict,
    EvaluationResult,
    RunNotTrained,
    evaluate,
    evaluate_run,
    find_train_run,
    logged_benchmarks,
)

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
    "evaluate_run",
    "find_train_run",
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
