"""What a warm worker imports once, so that each run forked from it starts training at once (:mod:`.warm`).

Importing this module imports torch, transformers, TRL (its GRPO trainer), lm-eval (its HF model and evaluator),
MLflow's client and its SQL store (SQLAlchemy, alembic) and lgrpo-bench's training, evaluation and lifecycle modules — about 7 s of CPU on a small machine,
which every run would otherwise pay again, twice before issue 23 (its training and its evaluation process).

Nothing here runs anything: no tensor is created (torch's intra-op thread pool starts on the first parallel op, and
must not exist before a fork), CUDA is not touched (a CUDA context does not survive a fork; runs initialise it
themselves), no MLflow client is opened (its background writers are threads). :data:`FORK_PROBLEMS` is what
:func:`fork_problems` found once everything was imported (the warm server does nothing after that but fork): a run
forked from it says so in its log, and ``tests/test_warm_workers.py`` requires it empty.
"""

from __future__ import annotations

import threading

import mlflow  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (a run's first MlflowClient of a SQLite store: 1 s of imports)
import sqlalchemy.dialects.sqlite  # noqa: F401
import torch
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

__all__ = ["FORK_PROBLEMS", "fork_problems"]


def fork_problems() -> list[str]:
    """What would not survive a fork in this process: Python threads besides the main one (an MLflow writer, a
    heartbeat), an initialised CUDA context. Native helper threads of libraries that re-initialise after a fork
    (OpenBLAS's pool, jemalloc's background thread) are not problems."""
    problems = [f"a Python thread is running: {thread.name}" for thread in threading.enumerate()
                if thread is not threading.main_thread() and thread.is_alive()]
    if torch.cuda.is_initialized():
        problems.append("CUDA is initialised")
    return problems


FORK_PROBLEMS: list[str] = fork_problems()


def _in_the_warm_server() -> bool:
    """Whether this import is the forkserver's preload (not a test or a tool importing the module)."""
    import traceback

    return any(frame.filename.endswith("multiprocessing/forkserver.py") and frame.name == "main"
               for frame in traceback.extract_stack())


if _in_the_warm_server():
    import atexit
    import os

    # The server exits when the process that started it does. Python's module teardown would then take 2–3 s with
    # torch, TRL and MLflow loaded, holding the orchestrator's stdout pipe open (a caller that reads it waits that
    # long for its end): end at once instead. Its children are gone or die with it; it has nothing to flush.
    atexit.register(os._exit, 0)
