"""The life of one run, written once: train, then evaluate in a fresh process, then mark it done.

Everything that executes a run calls :func:`execute_run`: the worker process of a grid or sweep job
(``python -m lgrpo_bench.runs <run folder>``, see :mod:`lgrpo_bench.runs.__main__`), and ``lgrpo-bench train``.
``lgrpo-bench eval --config`` and the lifecycle's own evaluation process call :func:`evaluate_step`.

    execute_run(config, run_id)
      ├─ train(config, run_id)                  → state trained (or pruned); skipped when already trained/done
      ├─ rank ≠ 0 of a multi-process run: stop  (rank 0 tracks and evaluates)
      ├─ eval.benchmarks configured:            a fresh process runs evaluate_step (no training state leaks in)
      └─ every configured benchmark logged:     state done

The caller has resolved the config and computed ``run_id`` once, and ``<runs_dir>/<run_id>/config.yaml`` holds
that resolved config (:meth:`~lgrpo_bench.tracking.record.RunLayout.write_config`); nothing here re-derives it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from lgrpo_bench.config import RunConfig
from lgrpo_bench.tracking import record
from lgrpo_bench.tracking.record import RunLayout

__all__ = ["EvaluationFailed", "RunOutcome", "evaluate_step", "execute_run", "worker_argv"]

WORKER_MODULE = "lgrpo_bench.runs"


class EvaluationFailed(RuntimeError):
    """The evaluation process of a trained run exited with an error (the run stays ``trained``)."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


@dataclass
class RunOutcome:
    """How :func:`execute_run` left the run: its state, and whether this call trained it."""

    run_id: str
    state: str
    mlflow_run_id: str | None
    trained_now: bool


def worker_argv(run_dir: str, *, python: str | None = None, step: str = "all") -> list[str]:
    """argv of the process that executes the run in ``run_dir`` (``step``: all, or eval only)."""
    argv = [python or sys.executable, "-m", WORKER_MODULE, str(run_dir)]
    return argv if step == "all" else [*argv, "--step", step]


def execute_run(config: RunConfig, run_id: str, *, emit: Callable[[str], None] | None = None,
                python: str | None = None) -> RunOutcome:
    """Train, evaluate and finish run ``run_id`` (see the module docstring). Raises what training raises, and
    :class:`EvaluationFailed` when the evaluation process fails."""
    from lgrpo_bench.tracking.schema import STATE_DONE, STATE_TRAINED
    from lgrpo_bench.training.run import is_main_process, train

    say = emit or (lambda line: None)
    result = train(config, run_id, emit=say)
    if not is_main_process() or result.state != STATE_TRAINED:
        return RunOutcome(run_id, result.state, result.mlflow_run_id, not result.skipped)
    if config.eval.benchmarks:
        layout = RunLayout.of(config.tracking.runs_dir, run_id)
        completed = subprocess.run(worker_argv(str(layout.root), python=python, step="eval"))
        if completed.returncode != 0:
            raise EvaluationFailed(f"run {run_id}: the evaluation process exited with code {completed.returncode}",
                                   completed.returncode)
        return RunOutcome(run_id, STATE_DONE, result.mlflow_run_id, not result.skipped)
    _mark_done(config, run_id)
    say(f"run {run_id}: done (no benchmarks configured)")
    return RunOutcome(run_id, STATE_DONE, result.mlflow_run_id, not result.skipped)


def evaluate_step(config: RunConfig, run_id: str, *, benchmarks: list[str] | None = None, force: bool = False,
                  emit: Callable[[str], None] | None = None):
    """Evaluate trained run ``run_id`` on ``benchmarks`` (default ``eval.benchmarks``); once every configured
    benchmark is logged, mark it ``done``. Returns the :class:`~lgrpo_bench.evaluation.EvaluationResult`."""
    from lgrpo_bench.evaluation import evaluate_run

    result = evaluate_run(config, run_id, benchmarks=benchmarks, force=force, emit=emit)
    if result.mlflow_run_id and result.benchmarks:
        _mark_done(config, run_id)
    return result


def _mark_done(config: RunConfig, run_id: str) -> None:
    """``trained → done`` when every benchmark of ``eval.benchmarks`` is logged in the run."""
    from lgrpo_bench import tracking as t
    from lgrpo_bench.evaluation import find_train_run, logged_benchmarks

    client = t.open_client(config.tracking.uri)
    run = find_train_run(client, config.tracking.experiment, run_id)
    state = run.data.tags.get(t.TAG_STATE) if run is not None else None
    if state == t.STATE_TRAINED and set(config.eval.benchmarks) <= logged_benchmarks(run):
        record.set_state(client, run.info.run_id, t.STATE_DONE, current=state)
