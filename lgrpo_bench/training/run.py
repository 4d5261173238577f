"""``train(config, run_id)``: the training of one run, resumable, logged to MLflow.

Contract:
- the caller resolved ``config`` and computed ``run_id`` once (:mod:`lgrpo_bench.runs`); the run's folder is
  :class:`~lgrpo_bench.tracking.record.RunLayout` ``<tracking.runs_dir>/<run_id>/`` and its ``config.yaml`` is
  already written; training writes checkpoints, ``train.log`` and ``final/`` there;
- the MLflow run carrying tag ``lgrpo.run_id`` is found in the store: a ``done``, ``trained`` or ``pruned`` run is
  not trained again; an unfinished one is resumed from its last complete checkpoint *into the same MLflow run*,
  and steps that were already logged are not logged again (no duplicated points);
- training ends in state ``trained`` (or ``pruned`` for a sweep trial stopped by its pruner); evaluating and
  marking the run ``done`` is the lifecycle's job (:func:`lgrpo_bench.runs.lifecycle.execute_run`);
- tiny presets are built (or taken from the cache) first and their warm start is logged once, as its own
  MLflow run (``lgrpo.kind = warm_start``), so the starting accuracy is on record;
- a failure marks the run ``failed`` with the error and the log tail as artifacts, then re-raises;
- under ``accelerate launch`` / ``torchrun`` (several processes, ``$RANK``) only rank 0 writes to MLflow,
  measures held-out accuracy and saves the tokenizer; the other ranks train without tracking. Sweep pruning
  is off for such runs (one rank cannot stop the others mid-step), the trial still reports its values.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lgrpo_bench.algorithms.presets import algorithm_of
from lgrpo_bench.config import RunConfig, dump_yaml, identity_payload
from lgrpo_bench.tracking import record
from lgrpo_bench.tracking.record import PARENT_RUN_ENV, RunLayout

WARM_START_LINE_EVERY = 100
"""A warm-start progress line every this many SFT steps (the grid's live view shows the latest)."""

LOG = logging.getLogger("lgrpo_bench.train")

@dataclass
class TrainResult:
    """What a finished (or skipped) training returns. ``state``: the run's ``lgrpo.state`` afterwards."""

    run_id: str
    mlflow_run_id: str | None
    run_dir: Path
    state: str
    skipped: bool = False
    model_dir: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class _Attempt:
    """One attempt at training a run: what every stage of :func:`_train` needs."""

    config: RunConfig
    run_id: str
    layout: RunLayout
    say: Callable[[str], None]
    started: float
    client: Any = None
    """MLflow client; None on ranks other than 0 of a multi-process run (they train untracked)."""
    experiment_id: str | None = None
    mlflow_run_id: str | None = None
    skip_until: int = -1
    """Steps ≤ this were logged by an earlier attempt and are not logged again."""

    @property
    def tracked(self) -> bool:
        return self.client is not None


def is_main_process(environ: dict[str, str] | None = None) -> bool:
    """True in the process that owns tracking: rank 0 of a multi-process launch (``$RANK``), or a plain process."""
    return int((os.environ if environ is None else environ).get("RANK", "0") or 0) == 0


def world_size(environ: dict[str, str] | None = None) -> int:
    """Processes of this run (``$WORLD_SIZE`` set by ``accelerate launch`` / ``torchrun``; 1 otherwise)."""
    return int((os.environ if environ is None else environ).get("WORLD_SIZE", "1") or 1)


def git_commit() -> str:
    """HEAD of the checkout the package runs from (editable installs), else ``GIT_COMMIT_UNKNOWN``."""
    from lgrpo_bench.tracking.schema import GIT_COMMIT_UNKNOWN

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or GIT_COMMIT_UNKNOWN
    except (OSError, subprocess.SubprocessError):
        return GIT_COMMIT_UNKNOWN


def run_tags(config: RunConfig, rid: str, size_label: str, warm_start=None) -> dict[str, str]:
    from lgrpo_bench import tracking as t

    tags = {
        t.TAG_KIND: t.KIND_TRAIN, t.TAG_RUN_ID: rid, t.TAG_ALGORITHM: config.algorithm.name,
        t.TAG_MODEL: config.model.name, t.TAG_MODEL_SIZE: size_label, t.TAG_SEED: str(config.train.seed),
        t.TAG_TASK: config.task.name, t.TAG_GIT_COMMIT: git_commit(), t.TAG_VERSIONS: t.versions_tag_value(),
        "mlflow.runName": f"{config.algorithm.name}-{config.model.name}-s{config.train.seed}",
    }
    axes = algorithm_of(config).axes
    tags.update({t.TAG_AGGREGATION: axes["aggregation"], t.TAG_SURROGATE: axes["surrogate"],
                 t.TAG_ADVANTAGE: axes["advantage"], t.TAG_GROUP_FILTER: axes["group_filter"]})
    if warm_start is not None:  # a tiny preset's build: the run rests on it
        tags.update(warm_start_tags(warm_start))
    if config.tracking.grid:
        tags[t.TAG_GRID] = config.tracking.grid
    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:  # set by lgrpo_bench.dispatch for runs of a grid: MLflow nests them under the grid's run
        tags[t.TAG_PARENT_RUN_ID] = parent
    return tags


def warm_start_tags(build) -> dict[str, str]:
    """Whether a tiny warm start lies in its band, and its greedy held-out accuracy, as MLflow tags."""
    from lgrpo_bench.tracking.schema import TAG_WARM_START_GREEDY_ACC, TAG_WARM_START_IN_BAND

    verdict = build.band
    return {TAG_WARM_START_IN_BAND: str(verdict.in_band).lower(),
            TAG_WARM_START_GREEDY_ACC: str(round(verdict.greedy_acc, 4))}


def log_warm_start(client, experiment_id: str, model_name: str, build) -> None:
    """One MLflow run per warm-started tiny checkpoint and experiment (found again by its cache key), nested under the
    grid run whose run built it (:data:`PARENT_RUN_ENV`); several runs racing for it (a grid's slots, two grids)
    serialise on a lock file beside the cached build, so it is logged once."""
    import fcntl

    with open(build.path.parent / f".{build.path.name}.logged.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            _log_warm_start_once(client, experiment_id, model_name, build)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _log_warm_start_once(client, experiment_id: str, model_name: str, build) -> None:
    from lgrpo_bench import tracking as t

    key = build.path.name
    if t.find_runs_by_tag(client, experiment_id, t.TAG_WARM_START_KEY, key):
        return
    built_on = build.metrics.get("provenance") or {}  # the machine that built it (a cached build may come from another)
    parent = os.environ.get(PARENT_RUN_ENV)
    nesting = {t.TAG_PARENT_RUN_ID: parent} if parent else {}
    warm_start_run = record.create_run(client, experiment_id, run_name=f"warm-start-{key}", tags={
        t.TAG_KIND: t.KIND_WARM_START, t.TAG_MODEL: model_name, t.TAG_WARM_START_KEY: key,
        t.TAG_VERSIONS: t.versions_tag_value(), **warm_start_tags(build), **built_on, **nesting})
    numbers = {k: float(v) for k, v in build.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    with t.BatchedMetricLogger(client, warm_start_run, background=False) as metric_logger:
        metric_logger.log({f"warm_start/{k}": v for k, v in numbers.items()}, step=0)
    client.log_param(warm_start_run, "path", str(build.path))
    record.set_state(client, warm_start_run, t.STATE_DONE, current=t.STATE_RUNNING)
    client.set_terminated(warm_start_run, "FINISHED")


def last_logged_step(client, mlflow_run_id: str) -> int:
    """The last step an earlier attempt logged (train/loss each step, held-out accuracy at step 0)."""
    from lgrpo_bench import tracking as t

    steps = [m.step for name in (t.TRAIN_LOSS, t.TRAIN_HELDOUT_ACC) for m in client.get_metric_history(mlflow_run_id, name)]
    return max(steps, default=-1)


def _score_fn(task: str) -> Callable[[str, str], float]:
    if task == "arith":
        from lgrpo_bench.tasks.arith import score_arith

        return score_arith
    from lgrpo_bench.tasks.scoring import score_math

    return lambda completion, answer: float(score_math(completion, answer).correct)


def train(config: RunConfig, run_id: str, *, emit: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or resume, or skip) run ``run_id`` of the resolved ``config``; see the module docstring."""
    from lgrpo_bench import tracking as t

    emit = emit or (lambda line: None)
    started = time.perf_counter()
    layout = RunLayout.of(config.tracking.runs_dir, run_id)
    client = t.open_client(t.resolve_tracking_uri(config.tracking.uri))
    experiment_id = t.get_or_create_experiment(client, config.tracking.experiment)
    existing = t.find_runs_by_tag(client, experiment_id, t.TAG_RUN_ID, run_id,
                                  extra_filter=f"tags.`{t.TAG_KIND}` = '{t.KIND_TRAIN}'")
    state = existing[0].data.tags.get(t.TAG_STATE) if existing else None
    if state in (t.STATE_DONE, t.STATE_TRAINED, t.STATE_PRUNED):
        emit(f"run {run_id}: already {state} (MLflow run {existing[0].info.run_id}), training skipped")
        return TrainResult(run_id, existing[0].info.run_id, layout.root, state, skipped=True,
                           model_dir=layout.final_dir, metrics=dict(existing[0].data.metrics))

    layout.root.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(layout.train_log)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    watched = [logging.getLogger(name) for name in ("lgrpo_bench", "transformers", "trl")]
    for watched_logger in watched:
        watched_logger.addHandler(file_handler)
    LOG.setLevel(logging.INFO)

    def say(line: str) -> None:
        LOG.info(line)
        emit(line)

    attempt = _Attempt(config, run_id, layout, say, started)
    try:
        if not is_main_process():  # another rank of a multi-process run: rank 0 tracks
            return _train(attempt)
        attempt.client, attempt.experiment_id = client, experiment_id
        if existing:
            attempt.mlflow_run_id = existing[0].info.run_id
            record.set_state(client, attempt.mlflow_run_id, t.STATE_RUNNING, current=state)
            attempt.skip_until = last_logged_step(client, attempt.mlflow_run_id)
            say(f"run {run_id}: resuming MLflow run {attempt.mlflow_run_id} (steps ≤ {attempt.skip_until} already logged)")
        try:
            return _train(attempt)
        except BaseException as error:
            if attempt.mlflow_run_id is not None:
                _mark_failed(attempt, error)
            raise
    finally:
        for watched_logger in watched:
            watched_logger.removeHandler(file_handler)
        file_handler.close()


def _mark_failed(attempt: _Attempt, error: BaseException) -> None:
    from lgrpo_bench import tracking as t

    client, mlflow_run_id = attempt.client, attempt.mlflow_run_id
    try:
        if isinstance(error, KeyboardInterrupt):  # SIGINT: the orchestrator stops the grid (Ctrl-C, SIGTERM)
            record.mark_stopped(client, mlflow_run_id)
            client.set_terminated(mlflow_run_id, "KILLED")
            return
        record.mark_failed(client, mlflow_run_id, f"{type(error).__name__}: {error}", step="train")
        client.log_text(mlflow_run_id, "".join(traceback.format_exception(error)), t.ARTIFACT_ERROR)
        if attempt.layout.train_log.exists():
            client.log_text(mlflow_run_id, attempt.layout.train_log.read_text(errors="replace")[-20000:],
                            t.ARTIFACT_TRAIN_LOG_TAIL)
        client.set_terminated(mlflow_run_id, "FAILED")
    except Exception:  # the store itself may be the failure; the original error matters more
        LOG.exception("could not record the failure in MLflow")


def _start_mlflow_run(attempt: _Attempt, size_label: str, warm_start=None) -> None:
    """Create the run's MLflow run (state running) with its tags, params and config artifact."""
    from mlflow.entities import Param

    from lgrpo_bench import tracking as t

    config, client = attempt.config, attempt.client
    attempt.mlflow_run_id = record.create_run(client, attempt.experiment_id,
                                              tags=run_tags(config, attempt.run_id, size_label, warm_start))
    params = t.flatten_params(identity_payload(config, algorithm_of(config).identity()))
    params["run_id"] = attempt.run_id
    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 params per log_batch
        client.log_batch(attempt.mlflow_run_id, params=items[start : start + 100])
    client.log_text(attempt.mlflow_run_id, dump_yaml(config), t.ARTIFACT_CONFIG)
    attempt.say(f"run {attempt.run_id}: MLflow run {attempt.mlflow_run_id} in experiment {config.tracking.experiment!r}")


def _train(attempt: _Attempt) -> TrainResult:
    import torch

    from lgrpo_bench import tracking as t
    from lgrpo_bench.models.loading import load_model_and_tokenizer, resolve_model
    from lgrpo_bench.models.presets import TINY_PRESETS
    from lgrpo_bench.models.heldout import SMALL_MODEL_PARAMS
    from lgrpo_bench.training.arguments import grpo_config
    from lgrpo_bench.training.callbacks import HeldoutAccuracyCallback, ProgressCallback, SampleTableCallback
    from lgrpo_bench.training.data import build_task_data
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer

    config, say, layout = attempt.config, attempt.say, attempt.layout
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    cache_dir = Path(config.tracking.cache_dir) if config.tracking.cache_dir else None
    warm_start = f"warm start {config.model.name} (seed {config.model.warm_start_seed})"
    if config.model.name in TINY_PRESETS:  # the grid's progress view shows these lines (lgrpo_bench.dispatch.progress)
        say(f"preparing {warm_start}: a cached build, or one built now (other runs wait for it)")

    def warm_start_progress(step: int, total: int, loss: float) -> None:
        if step % WARM_START_LINE_EVERY == 0 or step == total:
            say(f"building {warm_start} {step}/{total} loss {loss:.3f}")

    resolved = resolve_model(config.model.name, cache_dir=cache_dir, seed=config.model.warm_start_seed,
                             sft_steps=config.model.warm_start_steps, progress=warm_start_progress, emit=say)
    if resolved.build is not None and attempt.tracked:
        log_warm_start(attempt.client, attempt.experiment_id, config.model.name, resolved.build)
        m = resolved.build.metrics
        say(f"model {config.model.name}: {m.get('n_params', 0):,} parameters, warm-start greedy accuracy "
            f"{m.get('greedy_acc', float('nan')):.3f} ({'cached' if m.get('cached') else 'built'})")

    if attempt.mlflow_run_id is None and attempt.tracked:
        _start_mlflow_run(attempt, resolved.size_label, resolved.build)
    client, mlflow_run_id = attempt.client, attempt.mlflow_run_id

    model, tokenizer = load_model_and_tokenizer(resolved.name_or_path, dtype=config.model.dtype)
    if config.train.num_threads is None and not torch.cuda.is_available() and model.num_parameters() < SMALL_MODEL_PARAMS:
        torch.set_num_threads(1)  # tiny models: a chain of tiny ops; two threads spin against each other (~10x slower)
    if attempt.tracked:  # where this attempt computes (a resumed run records the machine of its last attempt)
        from mlflow.entities import RunTag

        from lgrpo_bench.tracking.provenance import provenance_tags

        client.log_batch(mlflow_run_id, tags=[RunTag(k, v) for k, v in provenance_tags().items()])
    data = build_task_data(config, tokenizer)
    algorithm = algorithm_of(config)
    for note in algorithm.notes:
        say(f"note: {note}")
    reward_funcs, reward_weights = make_reward_funcs_for(config, algorithm)
    args = grpo_config(config, layout.root)
    args.reward_weights = reward_weights
    trainer = UnifiedLossGRPOTrainer(
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=data.train, processing_class=tokenizer,
        algorithm=algorithm, accuracy_reward_index=0,  # make_reward_funcs puts the correctness reward first
    )
    heldout = HeldoutAccuracyCallback(
        trainer, data.heldout_prompts, data.heldout_answers, _score_fn(config.task.name),
        every=config.train.heldout_every, max_new_tokens=config.train.max_completion_length,
    )

    completions_per_step = config.train.prompts_per_step * config.train.num_generations

    def extra_metrics(state, logs):
        """Held-out accuracy, correctness-reward mean, reward timeouts (cumulative), generated tokens/s."""
        extra = heldout.pop_latest()
        if "loss" not in logs:
            return extra
        extra[t.TRAIN_REWARD_TIMEOUTS] = float(sum(f.stats.timeouts for f in reward_funcs if hasattr(f, "stats")))
        correctness = logs.get(f"rewards/{reward_funcs[0].__name__}/mean")
        if correctness is not None:
            extra[t.TRAIN_ACCURACY] = correctness
        if logs.get("step_time") and "completions/mean_length" in logs:
            extra[t.TRAIN_TOKENS_PER_S] = logs["completions/mean_length"] * completions_per_step / logs["step_time"]
        return extra

    from transformers.trainer_callback import PrinterCallback, ProgressCallback as StockProgress

    trainer.remove_callback(PrinterCallback)  # raw log dicts on stdout; ours prints one line per step
    trainer.remove_callback(StockProgress)
    pruning = mlflow_callback = None
    if attempt.tracked:
        mlflow_callback = t.MlflowStepCallback(client, mlflow_run_id, extra_metrics_fn=extra_metrics,
                                               skip_steps_up_to=attempt.skip_until)
        trainer.add_callback(heldout)
        pruning = _pruning_callback(client, mlflow_run_id, heldout, say, can_stop=world_size() == 1)
        if pruning is not None:  # before the MLflow callback, which consumes the held-out values
            trainer.add_callback(pruning)
        trainer.add_callback(mlflow_callback)
        trainer.add_callback(ProgressCallback(say, every=max(config.train.max_steps // 10, 1)))
        trainer.add_callback(SampleTableCallback(
            trainer, lambda table, name: client.log_table(mlflow_run_id, data=table, artifact_file=name),
            every=config.train.samples_every))

    checkpoint, passed_over = layout.resume_point()
    for problem in passed_over:
        say(f"run {attempt.run_id}: not resuming from an incomplete checkpoint: {problem}")
    if checkpoint is not None:
        say(f"run {attempt.run_id}: resuming from {checkpoint.name}")
    elif passed_over:
        say(f"run {attempt.run_id}: no complete checkpoint left; training again from step 0 into the same MLflow run "
            f"(steps ≤ {attempt.skip_until} keep the values logged the first time)")
    if attempt.tracked and (checkpoint is not None or passed_over):
        client.set_tag(mlflow_run_id, t.TAG_RESUMED_FROM, checkpoint.name if checkpoint is not None else "scratch")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    final_dir = layout.final_dir
    trainer.save_model(str(final_dir))  # writes on the main process only
    if not attempt.tracked:
        return TrainResult(attempt.run_id, None, layout.root, t.STATE_TRAINED, model_dir=final_dir,
                           seconds=time.perf_counter() - attempt.started)
    mlflow_callback.close()
    tokenizer.save_pretrained(str(final_dir))
    (final_dir / record.LAMBDA_STATE_FILE).write_text(json.dumps({"lambda": float(trainer.lam.detach())}))
    if trainer.token_weight_records:
        lines = "\n".join(json.dumps({"step": s, "length": n, "weight": w}) for s, n, w in trainer.token_weight_records)
        client.log_text(mlflow_run_id, lines + "\n", t.ARTIFACT_TOKEN_WEIGHTS)
    client.log_artifact(mlflow_run_id, str(layout.train_log))
    client.set_tag(mlflow_run_id, t.TAG_MODEL_DIR, str(final_dir))
    if trainer.lambda_rate_limited_fraction is not None:
        client.set_tag(mlflow_run_id, t.TAG_LAMBDA_RATE_LIMITED_FRAC, f"{trainer.lambda_rate_limited_fraction:.4f}")
    final_state = t.STATE_TRAINED  # the lifecycle evaluates and marks it done (lgrpo_bench.runs.lifecycle)
    if pruning is not None and pruning.pruned_at is not None:
        final_state = t.STATE_PRUNED
        say(f"run {attempt.run_id}: pruned by study {pruning.link.study!r} at step {pruning.pruned_at}")
    record.set_state(client, mlflow_run_id, final_state, current=t.STATE_RUNNING)
    client.set_terminated(mlflow_run_id, "FINISHED")
    seconds = time.perf_counter() - attempt.started
    metrics = dict(client.get_run(mlflow_run_id).data.metrics)
    trajectory = " → ".join(f"{acc:.3f}" for _, acc in heldout.history[:1] + heldout.history[-1:])
    say(f"run {attempt.run_id}: trained in {seconds:.1f} s (MLflow run {mlflow_run_id})"
        + (f"; held-out accuracy {trajectory}" if trajectory else ""))
    return TrainResult(attempt.run_id, mlflow_run_id, layout.root, final_state, model_dir=final_dir, metrics=metrics,
                       seconds=seconds)


def _pruning_callback(client, mlflow_run_id: str, heldout, say, *, can_stop: bool = True):
    """The sweep-trial bridge when this process is a trial (``$LGRPO_TRIAL``), else None; tags the run.

    ``can_stop`` False (a multi-process run): values are reported, the pruner's verdict is not acted on."""
    from lgrpo_bench import tracking as t
    from lgrpo_bench.training.pruning import PruningCallback
    from lgrpo_bench.tracking.studies import TrialLink

    link = TrialLink.from_env()
    if link is None:
        return None
    client.set_tag(mlflow_run_id, t.TAG_STUDY, link.study)
    client.set_tag(mlflow_run_id, t.TAG_TRIAL, str(link.number))

    def values(step: int, logs) -> dict[str, float]:
        mapped = {t.map_trl_key(k): float(v) for k, v in logs.items() if isinstance(v, (int, float))}
        return {**mapped, **heldout.latest}

    say(f"trial {link.number} of study {link.study!r}: reporting {link.metric} every {link.every} steps"
        + ("" if can_stop else "; pruning off (a multi-process run cannot stop one rank)"))
    return PruningCallback(link, values, can_stop=can_stop)


def make_reward_funcs_for(config: RunConfig, algorithm) -> tuple[list, list[float]]:
    """The task's reward functions (correctness first) plus DAPO's overlong penalty when the algorithm uses it."""
    from lgrpo_bench.tasks.rewards import make_reward_funcs, overlong_penalty

    weighted = make_reward_funcs(config.task.name, timeout_s=config.task.reward_timeout_s,
                                 format_weight=config.task.format_reward_weight)
    funcs = [item.func for item in weighted]
    weights = [item.weight for item in weighted]
    if algorithm.overlong_penalty:
        max_length = config.train.max_completion_length
        buffer = algorithm.overlong_buffer_tokens

        def overlong_reward(completion_ids, **kwargs):
            return overlong_penalty([len(ids) for ids in completion_ids], max_length, buffer)

        funcs.append(overlong_reward)
        weights.append(1.0)
    return funcs, weights
