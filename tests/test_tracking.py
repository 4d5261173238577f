"""Tests of lgrpo_bench.tracking against a real MLflow SQLite store in a temp folder (no mocks).

Two tests wrap a real client's ``log_batch``: one only counts calls, the other injects SQLite's
"database is locked" error (a real lock surfaces only after MLflow's 20 s busy timeout, too slow for a
unit test; a short real lock is exercised separately).
"""

from __future__ import annotations

import json
import math
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from lgrpo_bench.tracking import schema  # noqa: E402
from lgrpo_bench.tracking.logger import BatchedMetricLogger, MetricFlushError  # noqa: E402
from lgrpo_bench.tracking.store import (  # noqa: E402
    TrackingUnavailable,
    check_reachable,
    get_or_create_experiment,
    open_client,
    resolve_tracking_uri,
    sqlite_path,
)
from lgrpo_bench.training import trl_metrics  # noqa: E402
from lgrpo_bench.ui.views import ui_command  # noqa: E402

# A log dict produced by a real TRL 1.16 GRPOTrainer (tiny Qwen2, CPU, beta=0.04, one reward function
# named digit_reward, logging_steps=1), captured with a TrainerCallback: one step, then the end-of-train summary.
REAL_GRPO_STEP_LOGS = {
    "loss": 2.5083620585064637e-06,
    "grad_norm": 1.4068833589553833,
    "learning_rate": 0.0005,
    "num_tokens": 75.0,
    "completions/mean_length": 6.0,
    "completions/min_length": 6.0,
    "completions/max_length": 6.0,
    "completions/clipped_ratio": 1.0,
    "completions/mean_terminated_length": 0.0,
    "completions/min_terminated_length": 0.0,
    "completions/max_terminated_length": 0.0,
    "rewards/digit_reward/mean": 1.5,
    "rewards/digit_reward/std": 1.2909945249557495,
    "reward": 1.5,
    "reward_std": 1.2909945249557495,
    "frac_reward_zero_std": 0.0,
    "kl": 6.280839443206787e-05,
    "entropy": 3.7550742626190186,
    "clip_ratio/low_mean": 0.0,
    "clip_ratio/high_mean": 0.0,
    "clip_ratio/region_mean": 0.0,
    "clip_ratio/low_min": 0.0,
    "clip_ratio/high_max": 0.0,
    "step_time": 2.5820325629999843,
    "epoch": 0.125,
}
REAL_GRPO_END_LOGS = {
    "train_runtime": 5.5663,
    "train_samples_per_second": 1.437,
    "train_steps_per_second": 0.359,
    "total_flos": 0.0,
    "train_loss": -0.08290658642852122,
    "epoch": 0.125,
}
EXPECTED_STEP_NAMES = {
    "loss": "train/loss",
    "grad_norm": "train/grad_norm",
    "learning_rate": "train/learning_rate",
    "num_tokens": "train/num_tokens",
    "completions/mean_length": "train/completion_length_mean",
    "completions/min_length": "train/completion_length_min",
    "completions/max_length": "train/completion_length_max",
    "completions/clipped_ratio": "train/completion_truncated_frac",
    "completions/mean_terminated_length": "train/terminated_length_mean",
    "completions/min_terminated_length": "train/terminated_length_min",
    "completions/max_terminated_length": "train/terminated_length_max",
    "rewards/digit_reward/mean": "train/rewards/digit_reward/mean",
    "rewards/digit_reward/std": "train/rewards/digit_reward/std",
    "reward": "train/reward_mean",
    "reward_std": "train/reward_std",
    "frac_reward_zero_std": "train/frac_zero_std_groups",
    "kl": "train/kl",
    "entropy": "train/entropy",
    "clip_ratio/low_mean": "train/clip_fraction_low",
    "clip_ratio/high_mean": "train/clip_fraction_high",
    "clip_ratio/region_mean": "train/clip_fraction",
    "clip_ratio/low_min": "train/clip_fraction_low_min",
    "clip_ratio/high_max": "train/clip_fraction_high_max",
    "step_time": "train/step_s",
    "epoch": "train/epoch",
}


# ---------------------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One SQLite store for the module (creating a store runs MLflow's migrations, about a second)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def client(store_uri) -> MlflowClient:
    return open_client(store_uri)


@pytest.fixture
def run_id(client, request) -> str:
    experiment_id = get_or_create_experiment(client, "tests")
    return client.create_run(experiment_id, run_name=request.node.name).info.run_id


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key))


def count_log_batch_calls(client: MlflowClient) -> list[int]:
    """Wrap the real client's ``log_batch`` so calls (and their sizes) are recorded; returns the size list."""
    sizes: list[int] = []
    real_log_batch = client.log_batch

    def counted(run_id, metrics=(), params=(), tags=(), synchronous=None):
        sizes.append(len(metrics))
        return real_log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    client.log_batch = counted
    return sizes


@pytest.fixture
def fresh_client(store_uri) -> MlflowClient:
    """A client of its own, so wrapping its methods does not leak into other tests."""
    return MlflowClient(store_uri)


# ---------------------------------------------------------------------------------------------------------
# schema
# ---------------------------------------------------------------------------------------------------------
def test_flatten_params_round_trip():
    nested = {
        "model": {"name": "Qwen/Qwen2.5-0.5B", "dtype": None, "size": 0.5},
        "algorithm": {"name": "lambda_grpo", "r": 0.1, "learnable": True, "extra": {}},
        "train": {"steps": 200, "benchmarks": ["arith", "math500"], "lr": 1e-6},
    }
    flat = schema.flatten_params(nested)
    assert flat == {
        "model.name": "Qwen/Qwen2.5-0.5B",
        "model.dtype": "None",
        "model.size": "0.5",
        "algorithm.name": "lambda_grpo",
        "algorithm.r": "0.1",
        "algorithm.learnable": "True",
        "algorithm.extra": "{}",
        "train.steps": "200",
        "train.benchmarks": '["arith", "math500"]',
        "train.lr": "1e-06",
    }
    stringified = {
        "model": {"name": "Qwen/Qwen2.5-0.5B", "dtype": "None", "size": "0.5"},
        "algorithm": {"name": "lambda_grpo", "r": "0.1", "learnable": "True", "extra": {}},
        "train": {"steps": "200", "benchmarks": '["arith", "math500"]', "lr": "1e-06"},
    }
    assert schema.unflatten_params(flat) == stringified
    prefixed = schema.flatten_params(nested, prefix="cfg")
    assert set(prefixed) == {f"cfg.{key}" for key in flat}
    assert schema.unflatten_params(prefixed, prefix="cfg") == stringified


def test_flatten_params_truncates_with_marker_and_mlflow_accepts_it(client, run_id):
    long_value = "x" * 10_000
    flat = schema.flatten_params({"prompt": {"template": long_value}, "short": "ok"})
    value = flat["prompt.template"]
    assert len(value) == schema.MAX_PARAM_VALUE_LENGTH
    assert schema.PARAM_TRUNCATION_MARKER in value and value.endswith("10000 chars in full]")
    assert value.startswith("x" * 5000)
    client.log_batch(run_id, params=[__import__("mlflow").entities.Param(key, val) for key, val in flat.items()])
    assert client.get_run(run_id).data.params == flat  # stored exactly, MLflow did not truncate further


def test_flatten_params_drops_nothing_silently():
    with pytest.raises(ValueError, match="both flatten to param"):
        schema.flatten_params({"a b": 1, "a_b": 2})
    with pytest.raises(ValueError, match="over MLflow's limit"):
        schema.flatten_params({"k" * 300: 1})
    assert schema.flatten_params({"empty": {}}) == {"empty": "{}"}


def test_trl_to_schema_covers_a_real_grpo_log():
    for key in [*REAL_GRPO_STEP_LOGS, *REAL_GRPO_END_LOGS]:
        # every key is either listed, or a per-reward-function key handled by the generic rule
        assert key in trl_metrics.TRL_TO_SCHEMA or key.startswith("rewards/"), key
    mapped = trl_metrics.map_trl_logs(REAL_GRPO_STEP_LOGS)
    assert mapped == {EXPECTED_STEP_NAMES[key]: value for key, value in REAL_GRPO_STEP_LOGS.items()}
    assert trl_metrics.map_trl_logs(REAL_GRPO_END_LOGS) == {
        "train/runtime_s": 5.5663,
        "train/samples_per_s": 1.437,
        "train/steps_per_s": 0.359,
        "train/total_flos": 0.0,
        "train/loss_run_mean": -0.08290658642852122,
        "train/epoch": 0.125,
    }


def test_every_schema_metric_name_passes_mlflow_validation():
    from mlflow.utils.validation import _validate_metric_name

    for name in [*schema.TRAIN_METRICS, *trl_metrics.TRL_TO_SCHEMA.values(), schema.eval_metric("math500", "acc")]:
        _validate_metric_name(name)
        assert schema.is_valid_metric_name(name)
        assert name.startswith(("train/", "eval/"))


def test_map_trl_key_rules():
    assert trl_metrics.map_trl_key("train/heldout_acc") == "train/heldout_acc"  # pass-through
    assert trl_metrics.map_trl_key("eval/gsm8k/acc") == "eval/gsm8k/acc"
    assert trl_metrics.map_trl_key("lambda") == "train/lambda"
    assert trl_metrics.map_trl_key("eval_reward") == "eval/trainer_eval/reward_mean"
    assert trl_metrics.map_trl_key("eval_loss") == "eval/trainer_eval/loss"
    assert trl_metrics.map_trl_key("some new/metric (x)") == "train/some_new/metric__x_"
    assert trl_metrics.map_trl_key("a//b/../c:d") == "train/a/b/_/c_d"
    long_a, long_b = "k" * 300 + "a", "k" * 300 + "b"
    assert trl_metrics.map_trl_key(long_a) != trl_metrics.map_trl_key(long_b)
    assert all(len(trl_metrics.map_trl_key(key)) <= 250 and schema.is_valid_metric_name(trl_metrics.map_trl_key(key)) for key in (long_a, long_b))
    with pytest.raises(ValueError, match="both map to metric"):
        trl_metrics.map_trl_logs({"reward": 1.0, "reward_mean": 2.0})


def test_eval_metric_and_parse():
    name = schema.eval_metric("gsm8k", "exact_match,strict-match")
    assert name == "eval/gsm8k/exact_match_strict-match"
    assert schema.parse_eval_metric(name) == ("gsm8k", "exact_match_strict-match")
    assert schema.parse_eval_metric(schema.eval_metric("mmlu/stem", "acc/norm")) == ("mmlu_stem", "acc/norm")
    with pytest.raises(ValueError):
        schema.parse_eval_metric("train/loss")


def test_tags_and_versions():
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    assert schema.TAG_PARENT_RUN_ID == MLFLOW_PARENT_RUN_ID
    assert schema.KINDS == ("train", "warm_start", "eval", "grid", "study")
    assert schema.STATES == ("running", "trained", "done", "failed", "pruned", "stopped")
    versions = json.loads(schema.versions_tag_value())
    assert list(versions) == list(schema.VERSIONED_PACKAGES)
    assert versions["mlflow"] == __import__("mlflow").__version__
    assert len(schema.versions_tag_value()) <= schema.MAX_TAG_VALUE_LENGTH


# ---------------------------------------------------------------------------------------------------------
# logger
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("background", [False, True], ids=["sync", "background"])
def test_batched_logger_lands_every_point_with_few_calls(fresh_client, run_id, background):
    sizes = count_log_batch_calls(fresh_client)
    expected = {"train/a": [], "train/b": [], "train/c": []}
    with BatchedMetricLogger(fresh_client, run_id, flush_every_s=3600, max_buffer=1000, background=background) as logger:
        for step in range(1000):
            values = {"train/a": step * 0.5, "train/b": -step, "train/nan": math.nan, "train/none": None}
            if step % 2 == 0:
                values["train/c"] = 1.0 / (step + 1)
            if step == 7:
                values["train/b"] = math.inf
            logger.log(values, step=step)
            for key in expected:
                if key in values and math.isfinite(values[key]):
                    expected[key].append((step, float(values[key])))
    assert sum(len(points) for points in expected.values()) == 2499  # 1000 + 999 (one inf) + 500
    for key, points in expected.items():
        assert history(fresh_client, run_id, key) == points
    assert fresh_client.get_metric_history(run_id, "train/nan") == []
    assert logger.skipped_nonfinite == 1001 and logger.skipped_nonfinite_by_key == {"train/nan": 1000, "train/b": 1}
    assert logger.skipped_none == 1000
    assert logger.written == logger.logged == 2499
    # first log() writes at once (3 metrics), then whole 1000-metric calls, then the rest on close
    assert sizes == [3, 1000, 1000, 496]
    assert max(sizes) <= 1000 and logger.log_batch_calls == len(sizes)


def test_batched_logger_time_trigger_and_validation(client, run_id):
    logger = BatchedMetricLogger(client, run_id, flush_every_s=0.0, background=False)
    logger.log({"train/x": 1.0}, step=0)
    logger.log({"train/x": 2.0}, step=1)
    assert logger.buffered == 0 and history(client, run_id, "train/x") == [(0, 1.0), (1, 2.0)]
    with pytest.raises(ValueError, match="not accepted by MLflow"):
        logger.log({"train/ok": 1.0, "train/a//b": 1.0}, step=2)
    assert logger.buffered == 0  # nothing of a rejected call is kept
    with pytest.raises(TypeError, match="not a number"):
        logger.log({"train/s": "high"}, step=2)
    with pytest.raises(TypeError, match="step must be an integer"):
        logger.log({"train/x": 1.0}, step=2.5)
    logger.close()
    logger.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        logger.log({"train/x": 3.0}, step=3)


def test_logger_retries_database_locked_then_succeeds(fresh_client, run_id):
    real_log_batch = fresh_client.log_batch
    failures = {"left": 2}

    def locked_twice(*args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise MlflowException("(sqlite3.OperationalError) database is locked", error_code="TEMPORARILY_UNAVAILABLE")
        return real_log_batch(*args, **kwargs)

    fresh_client.log_batch = locked_twice
    logger = BatchedMetricLogger(fresh_client, run_id, background=False)
    started = time.monotonic()
    logger.log({"train/y": 1.0}, step=0)
    assert logger.lock_retries == 2 and time.monotonic() - started < 2.0  # backoff 0.1 s + 0.2 s
    assert history(fresh_client, run_id, "train/y") == [(0, 1.0)]
    logger.close()


def test_logger_gives_up_on_lock_after_budget_and_keeps_metrics(fresh_client, run_id):
    real_log_batch = fresh_client.log_batch
    locked = {"on": True}

    def maybe_locked(*args, **kwargs):
        if locked["on"]:
            raise MlflowException("(sqlite3.OperationalError) database is locked", error_code="TEMPORARILY_UNAVAILABLE")
        return real_log_batch(*args, **kwargs)

    fresh_client.log_batch = maybe_locked
    logger = BatchedMetricLogger(fresh_client, run_id, background=False, retry_budget_s=0.5)
    started = time.monotonic()
    with pytest.raises(MetricFlushError, match="stayed locked") as raised:
        logger.log({"train/z": 1.0, "train/w": 2.0}, step=0)
    assert time.monotonic() - started < 1.5
    assert len(raised.value.unsent) == 2 and logger.buffered == 2
    locked["on"] = False
    logger.log({"train/z": 3.0}, step=1)
    logger.close()
    assert history(fresh_client, run_id, "train/z") == [(0, 1.0), (1, 3.0)]
    assert history(fresh_client, run_id, "train/w") == [(0, 2.0)]


def test_background_failure_surfaces_on_next_call_and_nothing_is_lost(fresh_client, run_id):
    real_log_batch = fresh_client.log_batch
    broken = {"on": True}

    def fails_once(*args, **kwargs):
        if broken["on"]:
            broken["on"] = False
            raise MlflowException("store exploded")
        return real_log_batch(*args, **kwargs)

    fresh_client.log_batch = fails_once
    logger = BatchedMetricLogger(fresh_client, run_id, background=True)
    logger.log({"train/q": 0.0}, step=0)  # first write goes to the writer thread and fails there
    deadline = time.monotonic() + 10
    while logger._inflight is not None and not logger._inflight.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(MetricFlushError, match="store exploded"):
        logger.log({"train/q": 1.0}, step=1)
    logger.close()
    assert history(fresh_client, run_id, "train/q") == [(0, 0.0), (1, 1.0)]


def test_short_real_sqlite_lock_is_waited_out(client, run_id, store_uri):
    holder = sqlite3.connect(str(sqlite_path(store_uri)), timeout=30, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    releaser = threading.Timer(0.5, holder.rollback)
    releaser.start()
    try:
        logger = BatchedMetricLogger(client, run_id, background=False)
        logger.log({"train/locked": 1.0}, step=0)
        logger.close()
    finally:
        releaser.join()
        holder.close()
    assert history(client, run_id, "train/locked") == [(0, 1.0)]


# ---------------------------------------------------------------------------------------------------------
# callback
# ---------------------------------------------------------------------------------------------------------
def test_callback_logs_schema_names_at_global_step(client, run_id, tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from lgrpo_bench.tracking.callback import MlflowStepCallback

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    state, control = TrainerState(), TrainerControl()
    callback = MlflowStepCallback(client, run_id, metric_name=trl_metrics.map_trl_key, extra_metrics_fn=lambda state, logs: {"heldout_acc": state.global_step / 10} if "loss" in logs else None)
    callback.on_train_begin(args, state, control)
    for step in (1, 2, 3):
        state.global_step = step
        logs = {**REAL_GRPO_STEP_LOGS, "reward": step * 1.0, "lambda": 0.5 + step, "note": "text", "kl": None}
        callback.on_log(args, state, control, logs=logs)
    callback.on_log(args, state, control, logs=dict(REAL_GRPO_END_LOGS))
    callback.on_train_end(args, state, control)
    assert history(client, run_id, "train/reward_mean") == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert history(client, run_id, "train/lambda") == [(1, 1.5), (2, 2.5), (3, 3.5)]
    assert history(client, run_id, "train/heldout_acc") == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert history(client, run_id, "train/rewards/digit_reward/mean") == [(1, 1.5), (2, 1.5), (3, 1.5)]
    assert history(client, run_id, "train/runtime_s") == [(3, 5.5663)]
    assert client.get_metric_history(run_id, "train/kl") == []
    stored = set(client.get_run(run_id).data.metrics)
    assert set(EXPECTED_STEP_NAMES.values()) - {"train/kl"} <= stored
    assert not any(name.startswith(("loss", "reward", "completions/")) for name in stored)
    assert callback.skipped_non_numeric == 3 and callback.metric_logger.skipped_none == 3
    callback.close()


def test_callback_does_nothing_off_the_main_process(client, run_id, tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from lgrpo_bench.tracking.callback import MlflowStepCallback

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    state = TrainerState(is_world_process_zero=False, global_step=1)
    callback = MlflowStepCallback(client, run_id, metric_name=trl_metrics.map_trl_key)
    callback.on_log(args, state, TrainerControl(), logs=dict(REAL_GRPO_STEP_LOGS))
    callback.on_train_end(args, state, TrainerControl())
    callback.close()
    assert callback.metric_logger is None
    assert client.get_run(run_id).data.metrics == {}


@pytest.mark.slow
def test_callback_in_a_real_grpo_training(client, run_id, tmp_path):
    """Two steps of TRL's GRPOTrainer on a tiny random Qwen2 (CPU): metrics arrive under schema names."""
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    from transformers.integrations import MLflowCallback
    from trl import GRPOConfig, GRPOTrainer

    from lgrpo_bench.tracking.callback import attach_step_callback

    vocab = {"<pad>": 0, "<eos>": 1, **{char: index + 2 for index, char in enumerate("0123456789+= ")}}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    word_level.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    word_level.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="<pad>", eos_token="<eos>")
    config = Qwen2Config(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=32, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)

    def digit_reward(completions, **kwargs):
        return [float(sum(char.isdigit() for char in completion)) for completion in completions]

    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4, max_completion_length=4,
                      max_steps=2, logging_steps=1, report_to=["mlflow"], use_cpu=True, save_strategy="no", bf16=False)
    trainer = GRPOTrainer(model=model, reward_funcs=digit_reward, args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_dict({"prompt": [f"{i}+{i}=" for i in range(8)]}))
    callback = attach_step_callback(trainer, client, run_id, metric_name=trl_metrics.map_trl_key)
    assert not any(isinstance(item, MLflowCallback) for item in trainer.callback_handler.callbacks)
    trainer.train()
    callback.close()
    for name in ("train/loss", "train/reward_mean", "train/entropy", "train/clip_fraction", "train/step_s", "train/rewards/digit_reward/mean"):
        assert [step for step, _ in history(client, run_id, name)] == [1, 2], name
    assert history(client, run_id, "train/runtime_s")[0][0] == 2
    # every key this TRL version logs is mapped explicitly (a new key would land under the generic train/<key>)
    logged_keys = {key for entry in trainer.state.log_history for key in entry if key != "step"}
    assert {key for key in logged_keys if key not in trl_metrics.TRL_TO_SCHEMA and not key.startswith("rewards/")} == set()


# ---------------------------------------------------------------------------------------------------------
# store
# ---------------------------------------------------------------------------------------------------------
def test_resolve_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("  ") == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:////data/x.db") == "sqlite:////data/x.db"
    assert resolve_tracking_uri("sqlite:///rel/x.db") == f"sqlite:///{tmp_path.resolve()}/rel/x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/env.db"


_CREATE_EXPERIMENT_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, time
    from mlflow import MlflowClient  # imports done before the barrier, so both processes pass it together
    from lgrpo_bench.tracking.store import get_or_create_experiment, open_client
    uri, barrier, index = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
    (barrier / f"ready-{index}").touch()
    deadline = time.time() + 120
    while len(list(barrier.glob("ready-*"))) < 2 and time.time() < deadline:
        time.sleep(0.005)
    client = open_client(uri)
    print(get_or_create_experiment(client, "shared"))
    """
)


@pytest.mark.e2e  # real processes
def test_concurrent_experiment_creation_from_two_processes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"  # brand-new file: both processes also race to create the store
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    processes = [
        subprocess.Popen([sys.executable, "-c", _CREATE_EXPERIMENT_SCRIPT, uri, str(barrier), str(index)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=180) for process in processes]
    for process, (_out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    ids = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(ids) == 1
    experiments = [experiment for experiment in MlflowClient(uri).search_experiments() if experiment.name == "shared"]
    assert [experiment.experiment_id for experiment in experiments] == list(ids)


def _clauses(sql: str | None) -> list[str] | None:
    """A CREATE statement's lines as a sorted list: MLflow's batch migrations write a table's CHECK constraints in an
    order that varies from one process to the next (PYTHONHASHSEED), so two stores MLflow makes differ in it too."""
    return None if sql is None else sorted(line.strip().rstrip(",") for line in sql.splitlines())


def _store_contents(db_file) -> dict:
    """Everything a store holds that does not depend on when it was made: its schema, its revision, every table's
    rows (the Default experiment's times left out), its journal mode and user version."""
    with sqlite3.connect(db_file) as db:
        schema_rows = sorted(((kind, name, table, _clauses(sql)) for kind, name, table, sql in db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex%'")), key=repr)
        tables = [name for kind, name, _, _ in schema_rows if kind == "table"]
        rows = {}
        for table in tables:
            columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]
            kept = [column for column in columns if column not in ("creation_time", "last_update_time")]
            rows[table] = sorted(db.execute(f'SELECT {", ".join(kept)} FROM "{table}"').fetchall(), key=repr)
        pragmas = [db.execute(f"PRAGMA {name}").fetchone() for name in ("journal_mode", "user_version")]
    return {"schema": schema_rows, "rows": rows, "pragmas": pragmas}


def test_a_new_store_begun_from_the_schema_copy_equals_one_mlflow_creates(tmp_path, monkeypatch, caplog):
    """open_client places a copy of an empty, fully migrated store where none exists (tracking/store.py
    _place_empty_schema); MLflow then opens it. The result must be the store MLflow makes from nothing — same
    tables, indexes, revision and rows — and the second new store must skip MLflow's migrations."""
    import logging

    monkeypatch.setenv("LGRPO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # both stores' Default experiment lives under ./mlruns
    MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'by_mlflow.db'}").search_experiments()
    open_client(f"sqlite:///{tmp_path / 'first.db'}")  # builds the copy, then begins a store from it
    assert (tmp_path / "cache" / "mlflow-schema").is_dir()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlflow.store.db.utils"):
        client = open_client(f"sqlite:///{tmp_path / 'second.db'}")
    assert caplog.records == []  # begun from the copy: MLflow created no table and ran no migration
    expected = _store_contents(tmp_path / "by_mlflow.db")
    assert expected["rows"]["alembic_version"] and expected["rows"]["experiments"]
    for name in ("first.db", "second.db"):
        assert _store_contents(tmp_path / name) == expected, name
    experiment = client.get_experiment(client.create_experiment("e"))
    run = client.create_run(experiment.experiment_id)
    client.log_metric(run.info.run_id, "m", 1.5, step=3)
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "m")] == [(3, 1.5)]
    assert not list(tmp_path.glob(".*.partial"))


def test_the_schema_copy_never_replaces_a_store(tmp_path, monkeypatch):
    monkeypatch.setenv("LGRPO_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'kept.db'}"
    client = open_client(uri)
    experiment_id = client.create_experiment("kept")
    before = (tmp_path / "kept.db").read_bytes()
    assert open_client(uri).get_experiment(experiment_id).name == "kept"
    assert (tmp_path / "kept.db").read_bytes() == before


def test_without_a_writable_cache_mlflow_creates_the_store_itself(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("LGRPO_CACHE_DIR", str(blocked))
    client = open_client(f"sqlite:///{tmp_path / 'plain.db'}")
    assert [experiment.name for experiment in client.search_experiments()] == ["Default"]


def test_duplicate_create_raises_the_error_get_or_create_relies_on(client):
    get_or_create_experiment(client, "dup")
    with pytest.raises(MlflowException) as raised:
        client.create_experiment("dup")
    assert raised.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert get_or_create_experiment(client, "dup") == client.get_experiment_by_name("dup").experiment_id


def test_deleted_experiment_gives_a_clear_error(client):
    experiment_id = get_or_create_experiment(client, "to-delete")
    client.delete_experiment(experiment_id)
    with pytest.raises(RuntimeError, match="mlflow experiments restore"):
        get_or_create_experiment(client, "to-delete")


def _closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_http_store_fails_fast_with_a_clear_error():
    uri = f"http://127.0.0.1:{_closed_loopback_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable) as raised:
        check_reachable(uri, timeout_s=2)
    assert time.monotonic() - started < 2.5
    assert uri in str(raised.value) and "mlflow server" in str(raised.value)
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable):
        open_client(uri, timeout_s=2)
    assert time.monotonic() - started < 2.5


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/health" and self.server.healthy else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("healthy", [True, False])
def test_check_reachable_against_a_local_http_server(healthy):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.healthy = healthy
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        if healthy:
            check_reachable(uri, timeout_s=2)
        else:
            with pytest.raises(TrackingUnavailable, match="does not look like an MLflow"):
                check_reachable(uri, timeout_s=2)
    finally:
        server.shutdown()
        server.server_close()


def test_ui_command_binds_loopback_by_default():
    command = ui_command("sqlite:////data/mlflow.db")
    assert command[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert command[command.index("--backend-store-uri") + 1] == "sqlite:////data/mlflow.db"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5000"
    assert ui_command("x", host="0.0.0.0", port=8080)[-4:] == ["--host", "0.0.0.0", "--port", "8080"]
    with pytest.raises(ValueError):
        ui_command("x", port=70000)
