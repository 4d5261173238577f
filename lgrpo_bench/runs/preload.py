"""What a warm worker imports once, so that each run forked from it starts training at once (:mod:`.warm`).

Importing this module imports torch, transformers, TRL (its GRPO trainer), lm-eval (its HF model and evaluator),
MLflow's client and its SQL store (SQLAlchemy, alembic) and lgrpo-bench's training, evaluation and lifecycle modules — about 7 s of CPU on a small machine,
which every run would otherwise pay again, twice before issue 23 (its training and its evaluation process).

Nothing here runs anything: no tensor is created (torch's intra-op thread pool starts on the first parallel op, and
must not exist before a fork), CUDA is not touched (a CUDA context does not survive a fork; runs initialise it
themselves), no MLflow client is opened (its background writers are threads). In the server the imports run with the
cyclic garbage collector off and end frozen out of its reach (:func:`lgrpo_bench.procs.imports_kept_out_of_gc`): 1.5 s
less to import, and a full collection in a run walks only what the run made (0.3–0.6 s less each time). :data:`FORK_PROBLEMS` is what
:func:`fork_problems` found once everything was imported (the warm server does nothing after that but fork): a run
forked from it says so in its log, and ``tests/test_warm_workers.py`` requires it empty.
"""

from __future__ import annotations

import threading

__all__ = ["FORK_PROBLEMS", "fork_problems"]


def _in_the_warm_server() -> bool:
    """Whether this import is the forkserver's preload (not a test or a tool importing the module)."""
    import traceback

    return any(frame.filename.endswith("multiprocessing/forkserver.py") and frame.name == "main"
               for frame in traceback.extract_stack())


def _import_what_runs_use() -> None:
    """Import every heavy module a run's training and evaluation use."""
    import mlflow  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (a run's first MlflowClient of a SQLite store: 1 s)
    import sqlalchemy.dialects.sqlite  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from lm_eval import evaluator  # noqa: F401
    from lm_eval.models import huggingface  # noqa: F401
    from mlflow import MlflowClient  # noqa: F401
    from trl import GRPOConfig, GRPOTrainer  # noqa: F401

    import lgrpo_bench.evaluation.backends  # noqa: F401
    import lgrpo_bench.evaluation.runner  # noqa: F401
    import lgrpo_bench.runs.lifecycle  # noqa: F401
    import lgrpo_bench.training.run  # noqa: F401
    import lgrpo_bench.training.trainer  # noqa: F401


def fork_problems() -> list[str]:
    """What would not survive a fork in this process: Python threads besides the main one (an MLflow writer, a
    heartbeat), an initialised CUDA context. Native helper threads of libraries that re-initialise after a fork
    (OpenBLAS's pool, jemalloc's background thread) are not problems."""
    import torch

    problems = [f"a Python thread is running: {thread.name}" for thread in threading.enumerate()
                if thread is not threading.main_thread() and thread.is_alive()]
    if torch.cuda.is_initialized():
        problems.append("CUDA is initialised")
    return problems


if _in_the_warm_server():
    import atexit
    import os

    from lgrpo_bench.procs import imports_kept_out_of_gc

    with imports_kept_out_of_gc():
        _import_what_runs_use()
    # The server exits when the process that started it does. Python's module teardown would then take 2–3 s with
    # torch, TRL and MLflow loaded, holding the orchestrator's stdout pipe open (a caller that reads it waits that
    # long for its end): end at once instead. Its children are gone or die with it; it has nothing to flush.
    atexit.register(os._exit, 0)
else:
    _import_what_runs_use()

FORK_PROBLEMS: list[str] = fork_problems()
