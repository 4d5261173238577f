"""The life of one run, in one place: claim it, find or create its MLflow run, train, check it learned, evaluate,
mark it done.

Everything that executes a run calls :func:`execute_run`: the worker of a grid or sweep job
(``python -m lgrpo_bench.runs <run folder>``, or a process forked from a warm worker, see :mod:`lgrpo_bench.runs.__main__`)
and ``lgrpo-bench train``. ``lgrpo-bench eval --config`` calls :func:`evaluate_step`. ::

    execute_run(config, run_id)
      claim the run's lock ........................ another holder: "running elsewhere (pid, host)", wait for it
      open_tracked_run: find or create its MLflow run; settle its folder (owner.json, orphans moved aside)
      ├─ done / pruned ............................. nothing to do
      ├─ trained, final model gone ................. rebuild final/ from the last-step checkpoint, or train again
      ├─ new / running / failed / stopped:
      │     running → train(config, tracked) ...... TRL; resumes from the newest verified checkpoint
      │     the health gate ......................... ≥ 1 optimizer step with finite loss, reward and gradient
      │                                               norm, else failed ("did not learn: …")
      │     → trained (or pruned: a sweep's pruner stopped it)
      ├─ evaluate eval.benchmarks ................. in this process (HF / oracle backends, CPU or GPU); in a
      │                                               fresh process for vLLM, which must own the GPU's memory
      │                                               (it holds the lock too and dies with this process)
      └─ every configured benchmark logged ........ done
      release the lock

Failures are recorded where they happen: an exception in training marks the run ``failed`` with the error, its
traceback and the log's tail; an interruption on request (SIGINT/SIGTERM, Ctrl-C) marks it ``stopped``; a failed
evaluation keeps it ``trained`` with ``lgrpo.failed_step = eval``. A process killed outright (SIGKILL, OOM) cannot
write; whoever started it records how it ended (:func:`lgrpo_bench.dispatch.job.record_failure`), and ``plan``
shows a ``running`` run without a live process as stopped.

Other ranks of a multi-process run (``$RANK`` ≠ 0) train untracked beside rank 0, which holds the lock and tracks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from lgrpo_bench.config import RunConfig
from lgrpo_bench.runs.owner import Claim, claim_run
from lgrpo_bench.runs.tracked import TrackedRun, open_tracked_run
from lgrpo_bench.training.health import TrainingHealth
from lgrpo_bench.tracking.record import RunLayout

__all__ = ["EvaluationFailed", "RUN_LOCK_FD_ENV", "RunDidNotLearn", "RunOutcome", "TrainingHealth", "describe_exit",
           "evaluate_step", "execute_run", "final_model_plan", "worker_argv"]

WORKER_MODULE = "lgrpo_bench.runs"
RUN_LOCK_FD_ENV = "LGRPO_RUN_LOCK_FD"
"""Set for the evaluation process the lifecycle starts: the file descriptor of the run's lock it inherited (it holds
the lock through its parent's claim and must not claim it again)."""
FINAL_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja")
"""What a rebuilt ``final/`` copies from the last-step checkpoint (when present), besides the λ state."""


class EvaluationFailed(RuntimeError):
    """The evaluation of a trained run failed (the run stays ``trained``, ``lgrpo.failed_step = eval``)."""

    def __init__(self, message: str, returncode: int = 1):
        super().__init__(message)
        self.returncode = returncode


class RunDidNotLearn(RuntimeError):
    """Training ended without one optimizer step with finite loss, reward and gradient norm (the run is ``failed``)."""


@dataclass
class RunOutcome:
    """How :func:`execute_run` left the run: its state, and whether this call trained it."""

    run_id: str
    state: str
    mlflow_run_id: str | None
    trained_now: bool


def describe_exit(returncode: int) -> str:
    """``-9`` → ``killed by SIGKILL (out of memory, or killed)``; ``1`` → ``exit code 1``."""
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else None
    if signum is not None and 0 < signum < 65:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        hint = " (out of memory, or killed)" if signum == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {returncode}"


def worker_argv(run_dir: str, *, python: str | None = None, step: str = "all") -> list[str]:
    """argv of the process that executes the run in ``run_dir`` (``step``: all, or eval only)."""
    argv = [python or sys.executable, "-m", WORKER_MODULE, str(run_dir)]
    return argv if step == "all" else [*argv, "--step", step]


def final_model_plan(layout: RunLayout, max_steps: int) -> str | None:
    """What :func:`execute_run` does for a ``trained`` run whose final model is gone: ``rebuild from checkpoint-N``
    (the verified checkpoint of the last step), ``train again from checkpoint-N`` or ``train again from step 0``;
    None when ``final/`` is there."""
    if _final_model_present(layout):
        return None
    checkpoint = layout.latest_checkpoint()
    if checkpoint is not None and checkpoint.name == layout.checkpoint_dir(max_steps).name:
        return f"rebuild it from {checkpoint.name}"
    return f"train again from {checkpoint.name}" if checkpoint is not None else "train again from step 0"


def _final_model_present(layout: RunLayout) -> bool:
    final = layout.final_dir
    return (final / "config.json").is_file() and any(final.glob("*.safetensors"))


def execute_run(config: RunConfig, run_id: str, *, emit: Callable[[str], None] | None = None,
                python: str | None = None) -> RunOutcome:
    """Execute run ``run_id`` of the resolved ``config`` to its end (see the module docstring). Raises what training
    raises, :class:`RunDidNotLearn`, and :class:`EvaluationFailed`; the run's state says the same."""
    from lgrpo_bench.tracking.schema import STATE_DONE, STATE_PRUNED, STATE_TRAINED
    from lgrpo_bench.training.run import is_main_process, train

    say = emit or (lambda line: None)
    layout = RunLayout.for_config(config, run_id)
    if not is_main_process():  # rank ≠ 0 of a multi-process run: trains beside rank 0, which tracks
        train(config, run_id, None, emit=say)
        return RunOutcome(run_id, STATE_TRAINED, None, True)
    with claim_run(layout, say=say) as claim:
        tracked = open_tracked_run(config, run_id, layout, say)
        if tracked.state in (STATE_DONE, STATE_PRUNED):
            say(f"run {run_id}: already {tracked.state} (MLflow run {tracked.mlflow_run_id}), nothing to do")
            return RunOutcome(run_id, tracked.state, tracked.mlflow_run_id, False)
        trained_now = False
        if tracked.state == STATE_TRAINED and not _final_model_present(layout):
            trained_now = not _restore_final_model(config, tracked, layout, say)
        if tracked.state == STATE_TRAINED:
            say(f"run {run_id}: already trained (MLflow run {tracked.mlflow_run_id}); evaluating only")
        else:
            _train_and_check(config, run_id, tracked, say)
            trained_now = True
            if tracked.state == STATE_PRUNED:
                return RunOutcome(run_id, tracked.state, tracked.mlflow_run_id, True)
        _evaluate(config, run_id, tracked, layout, claim, python=python, say=say)
        return RunOutcome(run_id, tracked.state, tracked.mlflow_run_id, trained_now)


def _train_and_check(config: RunConfig, run_id: str, tracked: TrackedRun, say: Callable[[str], None]) -> None:
    """Train (resuming), then the health gate; the state ends ``trained``, ``pruned``, ``failed`` or ``stopped``."""
    from lgrpo_bench.tracking.schema import STATE_PRUNED, STATE_RUNNING, STATE_TRAINED
    from lgrpo_bench.training.run import train

    layout = RunLayout.for_config(config, run_id)
    if not tracked.created:
        tracked.move(STATE_RUNNING)
        tracked.set_status("RUNNING")
    try:
        result = train(config, run_id, tracked, emit=say)
    except KeyboardInterrupt:  # SIGINT: the orchestrator stops the grid (Ctrl-C, SIGTERM)
        _record(tracked.stop)
        raise
    except BaseException as error:
        tail = layout.train_log.read_text(errors="replace") if layout.train_log.exists() else ""
        _record(tracked.fail, f"{type(error).__name__}: {error}", step="train", exception=error, log_tail=tail)
        raise
    if not result.health.learned:
        reason = result.health.reason()
        say(f"run {run_id}: failed: {reason}")
        tail = layout.train_log.read_text(errors="replace") if layout.train_log.exists() else ""
        tracked.fail(reason, step="train", log_tail=tail)
        raise RunDidNotLearn(reason)
    tracked.move(STATE_PRUNED if result.pruned_at is not None else STATE_TRAINED)
    tracked.set_status("FINISHED")


def _record(action: Callable[..., None], *args, **kwargs) -> None:
    """``action(*args, **kwargs)``: write a failure or interruption to the store; the store may itself be what failed,
    and the original error matters more (it is re-raised by the caller)."""
    import logging

    try:
        action(*args, **kwargs)
    except Exception:  # noqa: BLE001
        logging.getLogger("lgrpo_bench.runs").exception("could not record the run's failure in MLflow")


def _restore_final_model(config: RunConfig, tracked: TrackedRun, layout: RunLayout, say: Callable[[str], None]) -> bool:
    """A ``trained`` run lost ``final/``: copy it from the verified last-step checkpoint and return True, or move the
    run back to ``running`` (it trains again from its newest checkpoint) and return False."""
    import json

    from lgrpo_bench.tracking.record import LAMBDA_STATE_FILE, checkpoint_problem
    from lgrpo_bench.tracking.schema import STATE_RUNNING

    plan = final_model_plan(layout, config.train.max_steps)
    say(f"run {layout.run_id}: trained, but its final model {layout.final_dir} is gone: {plan}")
    if plan is None or not plan.startswith("rebuild"):
        tracked.move(STATE_RUNNING)
        return False
    checkpoint = layout.checkpoint_dir(config.train.max_steps)
    problem = checkpoint_problem(checkpoint)  # verified by final_model_plan already; the folder may change since
    if problem is not None:
        say(f"run {layout.run_id}: cannot rebuild the final model: {problem}; training again instead")
        tracked.move(STATE_RUNNING)
        return False
    staging = layout.root / f".{layout.final_dir.name}.rebuilding-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in FINAL_MODEL_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, staging / name)
    lambda_state = json.loads((checkpoint / LAMBDA_STATE_FILE).read_text(encoding="utf-8"))
    (staging / LAMBDA_STATE_FILE).write_text(json.dumps({"lambda": float(lambda_state["lambda"])}))
    shutil.rmtree(layout.final_dir, ignore_errors=True)
    os.replace(staging, layout.final_dir)
    return True


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------
def _evaluate(config: RunConfig, run_id: str, tracked: TrackedRun, layout: RunLayout, claim: Claim, *,
              python: str | None, say: Callable[[str], None]) -> None:
    """Evaluate ``eval.benchmarks`` (none: straight to done); the run ends ``done`` once every one is logged."""
    from lgrpo_bench.evaluation.backends import resolve_backend

    if not config.eval.benchmarks:
        _mark_done(config, tracked)
        say(f"run {run_id}: done (no benchmarks configured)")
        return
    if resolve_backend(config.eval.backend) == "vllm":
        _evaluate_in_fresh_process(layout, claim, python=python)
        tracked.state = _current_state(tracked)
        return
    _evaluate_here(config, tracked, layout, say)


def _evaluate_here(config: RunConfig, tracked: TrackedRun, layout: RunLayout, say: Callable[[str], None],
                   benchmarks: list[str] | None = None, force: bool = False):
    """Evaluate in this process, logging into the run; a failure keeps it ``trained`` with ``failed_step = eval``."""
    import gc

    from lgrpo_bench.evaluation import evaluate

    gc.collect()  # the trainer's model and optimizer are garbage by now: return their memory before generation
    model_dir = layout.final_dir
    names = list(benchmarks) if benchmarks else list(config.eval.benchmarks)
    try:
        result = evaluate(str(model_dir), names, config.eval, run_template=config.resolved_template,
                          tracking_uri=tracked.uri, mlflow_run_id=tracked.mlflow_run_id, force=force,
                          dtype=config.model.dtype, emit=say)
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        _record(tracked.fail, f"{type(error).__name__}: {error}", step="eval", exception=error)
        raise EvaluationFailed(f"run {layout.run_id}: evaluation failed: {type(error).__name__}: {error}") from error
    _mark_done(config, tracked)
    return result


def _evaluate_in_fresh_process(layout: RunLayout, claim: Claim, *, python: str | None) -> None:
    """The vLLM evaluation: a fresh process (it must own the GPU's memory), holding the run's lock through an
    inherited descriptor and killed when this process dies."""
    from lgrpo_bench.procs import signal_when_parent_dies

    env = {**os.environ, RUN_LOCK_FD_ENV: str(claim.fd)}
    completed = subprocess.run(worker_argv(str(layout.root), python=python, step="eval"), env=env,
                               pass_fds=(claim.fd,), preexec_fn=signal_when_parent_dies(signal.SIGKILL))
    if completed.returncode != 0:
        raise EvaluationFailed(f"run {layout.run_id}: the evaluation process {describe_exit(completed.returncode)}")


def _current_state(tracked: TrackedRun) -> str | None:
    from lgrpo_bench.tracking.schema import TAG_STATE

    return tracked.client.get_run(tracked.mlflow_run_id).data.tags.get(TAG_STATE)


def _mark_done(config: RunConfig, tracked: TrackedRun) -> None:
    """``trained → done`` when every benchmark of ``eval.benchmarks`` is logged in the run."""
    from lgrpo_bench.evaluation import logged_benchmarks
    from lgrpo_bench.tracking.schema import STATE_DONE, STATE_TRAINED

    run = tracked.client.get_run(tracked.mlflow_run_id)
    if tracked.state == STATE_TRAINED and set(config.eval.benchmarks) <= logged_benchmarks(run):
        tracked.move(STATE_DONE)


def evaluate_step(config: RunConfig, run_id: str, *, benchmarks: list[str] | None = None, force: bool = False,
                  emit: Callable[[str], None] | None = None):
    """Evaluate trained run ``run_id`` on ``benchmarks`` (default ``eval.benchmarks``) in this process, holding the
    run's lock (or its inherited descriptor, :data:`RUN_LOCK_FD_ENV`); once every configured benchmark is logged,
    mark it ``done``. Returns the :class:`~lgrpo_bench.evaluation.EvaluationResult` (empty for a pruned run).
    Raises :class:`~lgrpo_bench.evaluation.RunNotTrained` for a run that has not finished training."""
    from lgrpo_bench.evaluation import EvaluationResult, RunNotTrained
    from lgrpo_bench.tracking.schema import STATE_DONE, STATE_PRUNED, STATE_TRAINED

    say = emit or (lambda line: None)
    layout = RunLayout.for_config(config, run_id)

    def run(tracked: TrackedRun | None):
        if tracked is not None and tracked.state == STATE_PRUNED:
            say(f"run {run_id} was pruned by its sweep; a pruned run is not evaluated")
            return EvaluationResult(model="", backend="", mlflow_run_id=tracked.mlflow_run_id, benchmarks={})
        if tracked is None or tracked.state not in (STATE_TRAINED, STATE_DONE):
            state = "no MLflow run" if tracked is None else f"state {tracked.state!r}"
            raise RunNotTrained(f"run {run_id} has not finished training ({state} in experiment "
                                f"{config.tracking.experiment!r}); train it first: lgrpo-bench train <config>")
        if not _final_model_present(layout):
            raise RunNotTrained(f"run {run_id}: its final model {layout.final_dir} is gone; `lgrpo-bench train` (or "
                                f"`run` of its grid) will {final_model_plan(layout, config.train.max_steps)}")
        return _evaluate_here(config, tracked, layout, say, benchmarks=benchmarks, force=force)

    if os.environ.get(RUN_LOCK_FD_ENV):  # the lifecycle's own evaluation process: its parent holds the claim
        return run(open_tracked_run(config, run_id, layout, say, create=False))
    with claim_run(layout, say=say):
        return run(open_tracked_run(config, run_id, layout, say, create=False))
