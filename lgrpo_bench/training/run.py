"""``train(run_config)``: one training run, end to end, resumable, logged to MLflow.

Contract:
- the run's identity is :func:`lgrpo_bench.config.run_id` (a content hash of the resolved config); its
  folder is ``<tracking.runs_dir>/<run_id>/`` (resolved config, checkpoints, ``train.log``, final model);
- the MLflow run carrying tag ``lgrpo.run_id`` is found in the store: a ``done`` or ``trained`` run is not
  trained again (``trained``: training finished, the configured evaluation is not logged yet; it ends as
  ``trained`` when ``eval.benchmarks`` is non-empty, else ``done``);
  an unfinished one is resumed from its last checkpoint *into the same MLflow run*, and steps that were
  already logged are not logged again (no duplicated points);
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
import re
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from lgrpo_bench.config import RunConfig, dump_yaml, identity_payload, run_id

LOG = logging.getLogger("lgrpo_bench.train")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
PARENT_RUN_ENV = "LGRPO_PARENT_RUN_ID"
"""MLflow id of a parent run (a grid's); a new run is created with ``mlflow.parentRunId`` set to it."""


@dataclass
class TrainResult:
    """What a finished (or skipped) run returns."""

    run_id: str
    mlflow_run_id: str
    run_dir: Path
    skipped: bool = False
    model_dir: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The ``checkpoint-N`` folder with the largest N that holds a complete trainer state."""
    best: tuple[int, Path] | None = None
    if run_dir.is_dir():
        for child in run_dir.iterdir():
            match = CHECKPOINT_RE.match(child.name)
            if match and (child / "trainer_state.json").exists() and (best is None or int(match[1]) > best[0]):
                best = (int(match[1]), child)
    return None if best is None else best[1]


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
        t.TAG_STATE: t.STATE_RUNNING, "mlflow.runName": f"{config.algorithm.name}-{config.model.name}-s{config.train.seed}",
    }
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
    """One MLflow run per warm-started tiny checkpoint (found again by its folder name)."""
    from lgrpo_bench import tracking as t

    key = build.path.name
    if t.find_runs_by_tag(client, experiment_id, "lgrpo.warm_start_key", key):
        return
    run = client.create_run(experiment_id, run_name=f"warm-start-{key}", tags={
        t.TAG_KIND: t.KIND_WARM_START, t.TAG_MODEL: model_name, "lgrpo.warm_start_key": key,
        t.TAG_STATE: t.STATE_DONE, t.TAG_VERSIONS: t.versions_tag_value(), **warm_start_tags(build)})
    numbers = {k: float(v) for k, v in build.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    with t.BatchedMetricLogger(client, run.info.run_id, background=False) as metric_logger:
        metric_logger.log({f"warm_start/{k}": v for k, v in numbers.items()}, step=0)
    client.log_param(run.info.run_id, "path", str(build.path))
    client.set_terminated(run.info.run_id, "FINISHED")


def last_logged_step(client, mlflow_run_id: str) -> int:
    """The last step an earlier attempt logged (train/loss each step, held-out accuracy at step 0)."""
    steps = [m.step for name in ("train/loss", "train/heldout_acc") for m in client.get_metric_history(mlflow_run_id, name)]
    return max(steps, default=-1)


def _score_fn(task: str) -> Callable[[str, str], float]:
    if task == "arith":
        from lgrpo_bench.tasks.arith import score_arith

        return score_arith
    from lgrpo_bench.tasks.scoring import score_math

    return lambda completion, answer: float(score_math(completion, answer).correct)


def train(config: RunConfig, *, emit: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or resume, or skip) the run described by ``config``; see the module docstring."""
    from lgrpo_bench import tracking as t

    emit = emit or (lambda line: None)
    started = time.perf_counter()
    rid = run_id(config)
    run_dir = Path(config.tracking.runs_dir).resolve() / rid
    uri = t.resolve_tracking_uri(config.tracking.uri)
    client = t.open_client(uri)
    experiment_id = t.get_or_create_experiment(client, config.tracking.experiment)
    existing = t.find_runs_by_tag(client, experiment_id, t.TAG_RUN_ID, rid, extra_filter=f"tags.`{t.TAG_KIND}` = 'train'")
    state = existing[0].data.tags.get(t.TAG_STATE) if existing else None
    if state in (t.STATE_DONE, t.STATE_TRAINED, t.STATE_PRUNED):
        pending = "; its evaluation is pending (lgrpo-bench eval --config ...)" if state == t.STATE_TRAINED else ""
        emit(f"run {rid}: already {state} (MLflow run {existing[0].info.run_id}), training skipped{pending}")
        return TrainResult(rid, existing[0].info.run_id, run_dir, skipped=True,
                           metrics=dict(existing[0].data.metrics))

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(config))
    file_handler = logging.FileHandler(run_dir / "train.log")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    watched = [logging.getLogger(name) for name in ("lgrpo_bench", "transformers", "trl")]
    for watched_logger in watched:
        watched_logger.addHandler(file_handler)
    LOG.setLevel(logging.INFO)

    def say(line: str) -> None:
        LOG.info(line)
        emit(line)

    if not is_main_process():  # another rank of a multi-process run: rank 0 tracks
        try:
            return _train(config, None, None, rid, run_dir, None, -1, say, started)
        finally:
            for watched_logger in watched:
                watched_logger.removeHandler(file_handler)
            file_handler.close()
    if existing:
        mlflow_run_id = existing[0].info.run_id
        client.set_tag(mlflow_run_id, t.TAG_STATE, t.STATE_RUNNING)
        skip_until = last_logged_step(client, mlflow_run_id)
        say(f"run {rid}: resuming MLflow run {mlflow_run_id} (steps ≤ {skip_until} already logged)")
    else:
        mlflow_run_id = None
        skip_until = -1
    try:
        return _train(config, client, experiment_id, rid, run_dir, mlflow_run_id, skip_until, say, started)
    except BaseException as error:
        if mlflow_run_id is None:
            found = t.find_runs_by_tag(client, experiment_id, t.TAG_RUN_ID, rid)
            mlflow_run_id = found[0].info.run_id if found else None
        if mlflow_run_id is not None:
            _mark_failed(client, mlflow_run_id, run_dir, error)
        raise
    finally:
        for watched_logger in watched:
            watched_logger.removeHandler(file_handler)
        file_handler.close()


def _mark_failed(client, mlflow_run_id: str, run_dir: Path, error: BaseException) -> None:
    from lgrpo_bench import tracking as t

    try:
        kind = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        client.set_tag(mlflow_run_id, t.TAG_STATE, t.STATE_FAILED)
        client.set_tag(mlflow_run_id, "lgrpo.error", f"{type(error).__name__}: {error}"[:5000])
        client.log_text(mlflow_run_id, "".join(traceback.format_exception(error)), "error.txt")
        log_file = run_dir / "train.log"
        if log_file.exists():
            client.log_text(mlflow_run_id, log_file.read_text(errors="replace")[-20000:], "train_log_tail.txt")
        client.set_terminated(mlflow_run_id, "KILLED" if kind == "interrupted" else "FAILED")
    except Exception:  # the store itself may be the failure; the original error matters more
        LOG.exception("could not record the failure in MLflow")


def _train(config, client, experiment_id, rid, run_dir, mlflow_run_id, skip_until, say, started) -> TrainResult:
    import torch
    from mlflow.entities import Param

    from lgrpo_bench import tracking as t
    from lgrpo_bench.algorithms import get_algorithm
    from lgrpo_bench.models.loading import load_model_and_tokenizer, resolve_model
    from lgrpo_bench.models.heldout import SMALL_MODEL_PARAMS
    from lgrpo_bench.training.arguments import grpo_config
    from lgrpo_bench.training.callbacks import HeldoutAccuracyCallback, ProgressCallback, SampleTableCallback
    from lgrpo_bench.training.data import build_task_data
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer

    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    cache_dir = Path(config.tracking.cache_dir) if config.tracking.cache_dir else None
    resolved = resolve_model(
        config.model.name, cache_dir=cache_dir, seed=config.model.warm_start_seed,
        sft_steps=config.model.warm_start_steps,
        progress=lambda step, total, loss: say(f"warm start {step}/{total} loss {loss:.3f}") if step % 200 == 0 or step == total else None,
        emit=say,
    )
    tracked = client is not None  # False on ranks other than 0 of a multi-process run
    if resolved.build is not None and tracked:
        log_warm_start(client, experiment_id, config.model.name, resolved.build)
        m = resolved.build.metrics
        say(f"model {config.model.name}: {m.get('n_params', 0):,} parameters, warm-start greedy accuracy "
            f"{m.get('greedy_acc', float('nan')):.3f} ({'cached' if m.get('cached') else 'built'})")

    if mlflow_run_id is None and tracked:
        run = client.create_run(experiment_id, tags=run_tags(config, rid, resolved.size_label, resolved.build))
        mlflow_run_id = run.info.run_id
        params = t.flatten_params(identity_payload(config))
        params["run_id"] = rid
        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per log_batch
            client.log_batch(mlflow_run_id, params=items[start : start + 100])
        client.log_text(mlflow_run_id, dump_yaml(config), "config.yaml")
        say(f"run {rid}: MLflow run {mlflow_run_id} in experiment {config.tracking.experiment!r}")

    model, tokenizer = load_model_and_tokenizer(resolved.name_or_path, dtype=config.model.dtype)
    if config.train.num_threads is None and not torch.cuda.is_available() and model.num_parameters() < SMALL_MODEL_PARAMS:
        torch.set_num_threads(1)  # tiny models: a chain of tiny ops; two threads spin against each other (~10x slower)
    data = build_task_data(config, tokenizer)
    spec = get_algorithm(config.algorithm.name)
    reward_funcs, reward_weights = make_reward_funcs_for(config, spec)
    args = grpo_config(config, run_dir)
    args.reward_weights = reward_weights
    trainer = UnifiedLossGRPOTrainer(
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=data.train, processing_class=tokenizer,
        algorithm=spec, lam_init=config.algorithm.lam_init, lambda_lr=config.algorithm.lambda_lr,
        lambda_learnable=config.algorithm.lambda_learnable, r=config.algorithm.r,
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
        extra["train/reward_timeouts"] = float(sum(f.stats.timeouts for f in reward_funcs if hasattr(f, "stats")))
        correctness = logs.get(f"rewards/{reward_funcs[0].__name__}/mean")
        if correctness is not None:
            extra["train/accuracy"] = correctness
        if logs.get("step_time") and "completions/mean_length" in logs:
            extra["train/tokens_per_s"] = logs["completions/mean_length"] * completions_per_step / logs["step_time"]
        return extra

    from transformers.trainer_callback import PrinterCallback, ProgressCallback as StockProgress

    trainer.remove_callback(PrinterCallback)  # raw log dicts on stdout; ours prints one line per step
    trainer.remove_callback(StockProgress)
    pruning = mlflow_callback = None
    if tracked:
        mlflow_callback = t.MlflowStepCallback(client, mlflow_run_id, extra_metrics_fn=extra_metrics,
                                               skip_steps_up_to=skip_until)
        trainer.add_callback(heldout)
        pruning = _pruning_callback(client, mlflow_run_id, heldout, say, can_stop=world_size() == 1)
        if pruning is not None:  # before the MLflow callback, which consumes the held-out values
            trainer.add_callback(pruning)
        trainer.add_callback(mlflow_callback)
        trainer.add_callback(ProgressCallback(say, every=max(config.train.max_steps // 10, 1)))
        trainer.add_callback(SampleTableCallback(
            trainer, lambda table, name: client.log_table(mlflow_run_id, data=table, artifact_file=name),
            every=config.train.samples_every))

    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        say(f"run {rid}: resuming from {checkpoint.name}")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    final_dir = run_dir / "final"
    trainer.save_model(str(final_dir))  # writes on the main process only
    if not tracked:
        return TrainResult(rid, None, run_dir, model_dir=final_dir, seconds=time.perf_counter() - started)
    mlflow_callback.close()
    tokenizer.save_pretrained(str(final_dir))
    (final_dir / "lambda_state.json").write_text(json.dumps({"lambda": float(trainer.lam.detach())}))
    if trainer.token_weight_records:
        lines = "\n".join(json.dumps({"step": s, "length": n, "weight": w}) for s, n, w in trainer.token_weight_records)
        client.log_text(mlflow_run_id, lines + "\n", "token_weights.jsonl")
    client.log_artifact(mlflow_run_id, str(run_dir / "train.log"))
    client.set_tag(mlflow_run_id, "lgrpo.model_dir", str(final_dir))
    # "done" only once the configured evaluation is logged too (lgrpo_bench.evaluation.evaluate_run sets it)
    final_state = t.STATE_TRAINED if config.eval.benchmarks else t.STATE_DONE
    if pruning is not None and pruning.pruned_at is not None:
        final_state = t.STATE_PRUNED
        say(f"run {rid}: pruned by study {pruning.link.study!r} at step {pruning.pruned_at}")
    client.set_tag(mlflow_run_id, t.TAG_STATE, final_state)
    client.set_terminated(mlflow_run_id, "FINISHED")
    seconds = time.perf_counter() - started
    metrics = dict(client.get_run(mlflow_run_id).data.metrics)
    trajectory = " → ".join(f"{acc:.3f}" for _, acc in heldout.history[:1] + heldout.history[-1:])
    say(f"run {rid}: done in {seconds:.1f} s (MLflow run {mlflow_run_id})"
        + (f"; held-out accuracy {trajectory}" if trajectory else ""))
    return TrainResult(rid, mlflow_run_id, run_dir, model_dir=final_dir, metrics=metrics, seconds=seconds)


def _pruning_callback(client, mlflow_run_id: str, heldout, say, *, can_stop: bool = True):
    """The sweep-trial bridge when this process is a trial (``$LGRPO_TRIAL``), else None; tags the run.

    ``can_stop`` False (a multi-process run): values are reported, the pruner's verdict is not acted on."""
    from lgrpo_bench import tracking as t
    from lgrpo_bench.training.pruning import PruningCallback, TrialLink

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


def make_reward_funcs_for(config: RunConfig, spec) -> tuple[list, list[float]]:
    """The task's reward functions plus DAPO's overlong penalty for ``dapo_full``, and their weights."""
    from lgrpo_bench.tasks.rewards import make_reward_funcs, overlong_penalty

    weighted = make_reward_funcs(config.task.name, timeout_s=config.task.reward_timeout_s,
                                 format_weight=config.task.format_reward_weight)
    funcs = [item.func for item in weighted]
    weights = [item.weight for item in weighted]
    if spec.overlong_penalty:
        max_length = config.train.max_completion_length
        buffer = config.algorithm.overlong_buffer_tokens or max(1, max_length // 5)

        def overlong_reward(completion_ids, **kwargs):
            return overlong_penalty([len(ids) for ids in completion_ids], max_length, buffer)

        funcs.append(overlong_reward)
        weights.append(1.0)
    return funcs, weights
