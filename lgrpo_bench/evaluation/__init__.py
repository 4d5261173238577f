"""Evaluation on math benchmarks through lm-eval: the task pack, backends, oracle models, ``evaluate(...)``.

* :mod:`.benchmarks` — the registry read from the task pack (``tasks/lgrpo_<benchmark>.yaml``): versions,
  data files, hub copies, default protocols; :func:`load_problems`.
* :mod:`.pack` — what the task pack runs: docs with rendered prompts, scoring with the training reward's
  scorer, per-doc metrics.
* :mod:`.metrics` — pure statistics: acc, its standard error, unbiased pass@k.
* :mod:`.oracle` — ``oracle:gold`` / ``oracle:wrong`` lm-eval models.
* :mod:`.runner` — :func:`evaluate` and :func:`evaluate_run` (MLflow logging, identity, skipping).

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
from lgrpo_bench.evaluation.runner import (
    VLLM_INSTALL_HINT,
    BackendUnavailable,
    BenchmarkResult,
    BenchmarkSettings,
    EvalIdentityConflict,
    EvaluationResult,
    RunNotTrained,
    evaluate,
    evaluate_run,
    find_train_run,
    resolve_backend,
    resolve_settings,
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
    "get_benchmark",
    "load_problems",
    "mean_stderr",
    "pass_at_k",
    "pass_at_k_values",
    "reported_ks",
    "resolve_backend",
    "resolve_settings",
]
