"""``train(config, run_id, tracked)``: the training of one run, resumable, logged into its MLflow run.

Contract:
- the caller is the run's lifecycle (:func:`lgrpo_bench.runs.lifecycle.execute_run`): it holds the run's lock,
  found or created the MLflow run (``tracked``, in state ``running``) and decides every state move; this module
  only trains and logs. ``tracked`` is None on ranks ≠ 0 of a multi-process run, which train untracked;
- the run's folder is :class:`~lgrpo_bench.tracking.record.RunLayout` ``<runs_dir>/<experiment>/<run_id>/``;
  training writes checkpoints, ``train.log`` and ``final/`` there, and resumes from the newest verified checkpoint
  into the same MLflow run; steps an earlier attempt logged are not logged again (no duplicated points);
- tiny presets are built (or taken from the cache) first and their warm start is logged once per experiment, as its
  own MLflow run (``lgrpo.kind = warm_start``), so the starting accuracy is on record; the train run is tagged with
  the base model's hash;
- the result carries :class:`~lgrpo_bench.training.health.TrainingHealth` (from the trainer's log history, so a
  resumed run counts its earlier steps too) and the step a sweep's pruner stopped at, if any;
- under ``accelerate launch`` / ``torchrun`` (several processes, ``$RANK``) only rank 0 writes to MLflow,
  measures held-out accuracy and saves the tokenizer. Sweep pruning is off for such runs (one rank cannot stop the
  others mid-step), the trial still reports its values.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lgrpo_bench.algorithms.presets import stored_algorithm
from lgrpo_bench.config import RunConfig
from lgrpo_bench.tracking import record
from lgrpo_bench.tracking.record import PARENT_RUN_ENV, RunLayout
from lgrpo_bench.training.trl_metrics import map_trl_key

if TYPE_CHECKING:
    from lgrpo_bench.training.health import TrainingHealth

WARM_START_LINE_EVERY = 100
"""A warm-start progress line every this many SFT steps (the grid's live view shows the latest)."""

LOG = logging.getLogger("lgrpo_bench.train")


class TrackedTarget(Protocol):
    """The MLflow training run a run trains into, as the lifecycle opened it
    (:class:`lgrpo_bench.runs.tracked.TrackedRun`)."""

    client: Any
    experiment_id: str
    mlflow_run_id: str
    created: bool

    def last_logged_step(self) -> int: ...


@dataclass
class TrainResult:
    """What a training attempt returns (the lifecycle turns it into the run's state)."""

    run_id: str
    mlflow_run_id: str | None
    run_dir: Path
    health: TrainingHealth
    pruned_at: int | None = None
    model_dir: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def is_main_process(environ: dict[str, str] | None = None) -> bool:
    """True in the process that owns tracking: rank 0 of a multi-process launch (``$RANK``), or a plain process."""
    return int((os.environ if environ is None else environ).get("RANK", "0") or 0) == 0


def world_size(environ: dict[str, str] | None = None) -> int:
    """Processes of this run (``$WORLD_SIZE`` set by ``accelerate launch`` / ``torchrun``; 1 otherwise)."""
    return int((os.environ if environ is None else environ).get("WORLD_SIZE", "1") or 1)


def warm_start_tags(build) -> dict[str, str]:
    """Whether a tiny warm start lies in its band, its greedy held-out accuracy and its weights' hash, as MLflow tags."""
    from lgrpo_bench.tracking.schema import (
        TAG_BASE_MODEL_HASH,
        TAG_BASE_MODEL_SOURCE,
        TAG_WARM_START_GREEDY_ACC,
        TAG_WARM_START_IN_BAND,
    )

    verdict = build.band
    tags = {TAG_WARM_START_IN_BAND: str(verdict.in_band).lower(),
            TAG_WARM_START_GREEDY_ACC: str(round(verdict.greedy_acc, 4))}
    model_hash = getattr(build, "model_hash", None)
    if model_hash:
        tags[TAG_BASE_MODEL_HASH] = model_hash
    source = getattr(build, "metrics", {}).get("source")
    if source:
        tags[TAG_BASE_MODEL_SOURCE] = str(source)
    return tags


def log_warm_start(client, experiment_id: str, model_name: str, build, lock_dir: Path) -> None:
    """One MLflow run per warm-started tiny checkpoint and experiment (found again by its cache key), nested under the
    grid run whose run built it (:data:`PARENT_RUN_ENV`); several runs racing for it (a grid's slots, two grids)
    serialise on a lock file in ``lock_dir`` (the experiment's runs folder: the model cache may be read-only)."""
    import fcntl

    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f".warm-start-{build.path.name}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            _log_warm_start_once(client, experiment_id, model_name, build)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _log_warm_start_once(client, experiment_id: str, model_name: str, build) -> None:
    from lgrpo_bench import tracking as t
    from lgrpo_bench.tracking.reader import open_reader

    key = build.path.name
    with open_reader(client=client) as reader:
        if reader.runs([experiment_id], tag_equals={t.TAG_WARM_START_KEY: key}, metrics=False):
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


def _style_fn(task: str) -> Callable[[str], str] | None:
    """The answer-style classifier whose shares the trainer logs (``train/style_share/<style>``): lenmix only."""
    if task == "lenmix":
        from lgrpo_bench.tasks.lenmix import classify_style

        return classify_style
    return None


def _score_fn(task: str) -> Callable[[str, str], float]:
    if task == "arith":
        from lgrpo_bench.tasks.arith import score_arith

        return score_arith
    if task == "lenmix":
        from lgrpo_bench.tasks.lenmix import score_lenmix

        return score_lenmix
    from lgrpo_bench.tasks.scoring import score_math

    return lambda completion, answer: float(score_math(completion, answer).correct)


def train(config: RunConfig, run_id: str, tracked: TrackedTarget | None, *,
          emit: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or resume) run ``run_id`` of the resolved ``config`` into ``tracked``; see the module docstring."""
    emit = emit or (lambda line: None)
    layout = RunLayout.for_config(config, run_id)
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

    try:
        return _train(config, run_id, layout, tracked, say)
    finally:
        for watched_logger in watched:
            watched_logger.removeHandler(file_handler)
        file_handler.close()


def _train(config: RunConfig, run_id: str, layout: RunLayout, tracked: TrackedTarget | None,
           say: Callable[[str], None]) -> TrainResult:
    import torch

    from lgrpo_bench import tracking as t
    from lgrpo_bench.models.heldout import SMALL_MODEL_PARAMS
    from lgrpo_bench.models.loading import load_model_and_tokenizer, resolve_model
    from lgrpo_bench.training.arguments import grpo_config
    from lgrpo_bench.training.callbacks import HeldoutAccuracyCallback, ProgressCallback, SampleTableCallback
    from lgrpo_bench.training.data import build_task_data
    from lgrpo_bench.training.health import TrainingHealth
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer

    started = time.perf_counter()
    client = tracked.client if tracked is not None else None
    mlflow_run_id = tracked.mlflow_run_id if tracked is not None else None
    skip_until = tracked.last_logged_step() if tracked is not None and not tracked.created else -1
    if tracked is not None and skip_until >= 0:
        say(f"run {run_id}: resuming MLflow run {mlflow_run_id} (steps ≤ {skip_until} already logged)")
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    cache_dir = Path(config.tracking.cache_dir) if config.tracking.cache_dir else None
    warm_start = f"warm start {config.model.name} (seed {config.model.warm_start_seed})"
    # build_tiny says "preparing warm start ..." only when it has to build or wait (not for a shipped or cached base);
    # the grid's progress view shows these lines (lgrpo_bench.dispatch.progress)

    def warm_start_progress(step: int, total: int, loss: float) -> None:
        if step % WARM_START_LINE_EVERY == 0 or step == total:
            say(f"building {warm_start} {step}/{total} loss {loss:.3f}")

    resolved = resolve_model(config.model.name, cache_dir=cache_dir, seed=config.model.warm_start_seed,
                             sft_steps=config.model.warm_start_steps, progress=warm_start_progress, emit=say,
                             task=config.task.name)
    if tracked is not None:
        from mlflow.entities import RunTag

        from lgrpo_bench.tracking.provenance import provenance_tags

        tags = {t.TAG_MODEL_SIZE: resolved.size_label}
        if resolved.build is not None:
            log_warm_start(client, tracked.experiment_id, config.model.name, resolved.build, layout.experiment_dir)
            tags.update(warm_start_tags(resolved.build))
            m = resolved.build.metrics
            say(f"model {config.model.name}: {m.get('n_params', 0):,} parameters, warm-start greedy accuracy "
                f"{m.get('greedy_acc', float('nan')):.3f} ({'cached' if m.get('cached') else 'built'})")

    model, tokenizer = load_model_and_tokenizer(resolved.name_or_path, dtype=config.model.dtype)
    if config.train.num_threads is None and not torch.cuda.is_available() and model.num_parameters() < SMALL_MODEL_PARAMS:
        torch.set_num_threads(1)  # tiny models: a chain of tiny ops; two threads spin against each other (~10x slower)
    if tracked is not None:  # where this attempt computes (a resumed run records the machine of its last attempt)
        tags.update(provenance_tags())
        client.log_batch(mlflow_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    data = build_task_data(config, tokenizer)
    algorithm = stored_algorithm(config)  # as config.yaml states it: resolved once, when the run was prepared
    for note in algorithm.notes:
        say(f"note: {note}")
    reward_funcs, reward_weights = make_reward_funcs_for(config, algorithm)
    args = grpo_config(config, layout.root, algorithm=algorithm)
    args.reward_weights = reward_weights
    trainer = UnifiedLossGRPOTrainer(
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=data.train, processing_class=tokenizer,
        algorithm=algorithm, accuracy_reward_index=0,  # make_reward_funcs puts the correctness reward first
        style_of=_style_fn(config.task.name),
    )
    if tracked is not None:  # every TRL setting as resolved, and the TRL version (each attempt: the latest)
        from lgrpo_bench.training.trl_record import trl_settings_json

        client.log_text(mlflow_run_id, trl_settings_json(trainer.args), t.ARTIFACT_TRL_ARGS)
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
    if tracked is not None:
        mlflow_callback = t.MlflowStepCallback(client, mlflow_run_id, metric_name=map_trl_key,
                                               extra_metrics_fn=extra_metrics, skip_steps_up_to=skip_until)
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
        say(f"run {run_id}: not resuming from a checkpoint that failed verification: {problem}")
    if checkpoint is not None:
        say(f"run {run_id}: resuming from {checkpoint.name}")
    elif passed_over:
        say(f"run {run_id}: no verified checkpoint left; training again from step 0 into the same MLflow run "
            f"(steps ≤ {skip_until} keep the values logged the first time)")
    if tracked is not None and (checkpoint is not None or passed_over):
        client.set_tag(mlflow_run_id, t.TAG_RESUMED_FROM, checkpoint.name if checkpoint is not None else "scratch")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    health = TrainingHealth.of_log_history(trainer.state.log_history, trainer.state.global_step)

    final_dir = layout.final_dir
    trainer.save_model(str(final_dir))  # writes on the main process only
    if tracked is None:
        return TrainResult(run_id, None, layout.root, health, model_dir=final_dir, seconds=time.perf_counter() - started)
    mlflow_callback.close()
    with record.disk_full_as_error(final_dir):
        tokenizer.save_pretrained(str(final_dir))
        (final_dir / record.LAMBDA_STATE_FILE).write_text(json.dumps({"lambda": float(trainer.lam.detach())}))
    # always written (empty when no completion entered the loss, e.g. dapo_full steps of uniform groups only)
    lines = "".join(json.dumps({"step": s, "length": n, "weight": w}) + "\n" for s, n, w in trainer.token_weight_records)
    client.log_text(mlflow_run_id, lines, t.ARTIFACT_TOKEN_WEIGHTS)
    client.log_artifact(mlflow_run_id, str(layout.train_log))
    client.set_tag(mlflow_run_id, t.TAG_MODEL_DIR, str(final_dir))
    if trainer.lambda_rate_limited_fraction is not None:
        client.set_tag(mlflow_run_id, t.TAG_LAMBDA_RATE_LIMITED_FRAC, f"{trainer.lambda_rate_limited_fraction:.4f}")
    pruned_at = pruning.pruned_at if pruning is not None else None
    if pruned_at is not None:
        say(f"run {run_id}: pruned by study {pruning.link.study!r} at step {pruned_at}")
    seconds = time.perf_counter() - started
    metrics = dict(client.get_run(mlflow_run_id).data.metrics)
    trajectory = " → ".join(f"{acc:.3f}" for _, acc in heldout.history[:1] + heldout.history[-1:])
    if health.learned:
        say(f"run {run_id}: trained in {seconds:.1f} s (MLflow run {mlflow_run_id})"
            + (f"; held-out accuracy {trajectory}" if trajectory else ""))
    else:
        say(f"run {run_id}: training stopped after {health.steps} optimizer steps in {seconds:.1f} s")
    return TrainResult(run_id, mlflow_run_id, layout.root, health, pruned_at, final_dir, metrics, seconds)


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
        mapped = {map_trl_key(k): float(v) for k, v in logs.items() if isinstance(v, (int, float))}
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
