"""One training run end to end with the real MLflow SQLite store: schema, resume after SIGKILL, skip when done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lgrpo_bench.runs.resolve import build_run as build_run_config
from lgrpo_bench.runs.resolve import run_id
from lgrpo_bench.tracking import open_client

ALGORITHMS = ["grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full"]


def short_run(tmp_path: Path, model_path: Path, **sections) -> dict:
    config = {
        "model": {"name": str(model_path)},
        "task": {"name": "arith", "num_train_problems": 200, "num_heldout_problems": 40},
        "algorithm": {"name": "lambda_grpo", "r": 0.3, "lambda_lr": 0.1},
        "train": {"max_steps": 2, "num_generations": 4, "prompts_per_step": 4, "max_completion_length": 36,
                  "heldout_every": 1, "heldout_size": 16, "save_every": 1, "samples_every": 1, "seed": 0},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test",
                     "runs_dir": str(tmp_path / "runs")},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


def prepared(config):
    from lgrpo_bench.runs.resolve import prepare_run

    return prepare_run(config)


def execute(config):
    """The run's lifecycle as a worker executes it: (prepared run, outcome)."""
    from lgrpo_bench.runs.lifecycle import execute_run

    run = prepared(config)
    return run, execute_run(run.config, run.run_id)


def metric_steps(client, mlflow_run_id: str, name: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(mlflow_run_id, name))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_short_run_logs_the_documented_schema(warm_tiny, tmp_path, algorithm):
    config = build_run_config(short_run(tmp_path, warm_tiny.path, algorithm={"name": algorithm}))
    prepared_run, result = execute(config)
    client = open_client(config.tracking.uri)
    run = client.get_run(result.mlflow_run_id)
    tags, params = run.data.tags, run.data.params
    assert tags["lgrpo.algorithm"] == algorithm and tags["lgrpo.run_id"] == run_id(config) == result.run_id
    assert tags["lgrpo.seed"] == "0" and tags["lgrpo.task"] == "arith" and tags["lgrpo.state"] == "done"
    assert tags["lgrpo.model_size"].endswith("M") and "torch" in tags["lgrpo.versions"] and tags["lgrpo.git_commit"]
    import torch

    if torch.cuda.is_available():  # training computes on CUDA where there is one
        assert tags["lgrpo.hardware"] == f"cuda:{torch.cuda.get_device_name(0)}x{torch.cuda.device_count()}"
    else:
        assert tags["lgrpo.hardware"].startswith("cpu:") and tags["lgrpo.host.cpu_capability"] in tags["lgrpo.hardware"]
        assert tags["lgrpo.host.torch_threads"] == "1"  # tiny models on CPU: one thread
    assert tags["lgrpo.host.processes"] == "1"
    assert params["algorithm.name"] == algorithm and params["train.max_steps"] == "2" and params["run_id"] == result.run_id
    assert "tracking.uri" not in params  # not part of the identity
    for name in ("train/loss", "train/reward_mean", "train/reward_std", "train/completion_length_mean",
                 "train/entropy", "train/grad_norm", "train/learning_rate", "train/step_s", "train/tokens_per_s",
                 "train/frac_zero_std_groups", "train/reward_timeouts", "train/clip_fraction", "train/accuracy"):
        assert metric_steps(client, result.mlflow_run_id, name) == [1, 2], name
    # weights exist for steps where some completion entered the loss (dapo_full drops uniform-reward groups)
    weight_steps = metric_steps(client, result.mlflow_run_id, "train/weight_mean")
    assert weight_steps == [1, 2] or (algorithm == "dapo_full" and set(weight_steps) <= {1, 2})
    assert metric_steps(client, result.mlflow_run_id, "train/heldout_acc") == [0, 1, 2]
    has_lambda = metric_steps(client, result.mlflow_run_id, "train/lambda")
    assert has_lambda == ([1, 2] if algorithm == "lambda_grpo" else [])
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"config.yaml", "train.log", "token_weights.jsonl", "samples"} <= artifacts
    # token_weights.jsonl is always written (training/run.py), one record per completion that entered the loss:
    # empty when no step had a kept completion (dapo_full steps of uniform groups only), else records of as many
    # steps as logged train/weight_mean, each with a positive length and a finite weight
    import json
    import math

    local = Path(client.download_artifacts(result.mlflow_run_id, "token_weights.jsonl", str(tmp_path / "artifacts")))
    records = [json.loads(line) for line in local.read_text().splitlines()]
    assert len({r["step"] for r in records}) == len(weight_steps)
    assert all(set(r) == {"step", "length", "weight"} and r["length"] > 0 and math.isfinite(r["weight"]) for r in records)
    assert (prepared_run.layout.final_dir / "model.safetensors").exists()
    card = (prepared_run.layout.root / "README.md").read_text()  # TRL's model card, written with each checkpoint
    assert f"trained with {algorithm} (aggregation " in card and "trained with GRPO" not in card, card
    assert "[None]" not in card and 'model="None"' not in card, card  # a local base: its folder, not a hub id
    assert f"fine-tuned version of the local base model `{warm_tiny.path}`" in card, card
    assert f'model="{prepared_run.layout.final_dir}"' in card, card


def test_finished_run_is_skipped(warm_tiny, tmp_path):
    config = build_run_config(short_run(tmp_path, warm_tiny.path, train={"max_steps": 1, "heldout_every": 0}))
    _, first = execute(config)
    _, second = execute(config)
    assert first.trained_now and first.state == "done"
    assert not second.trained_now and second.state == "done" and second.mlflow_run_id == first.mlflow_run_id
    client = open_client(config.tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("test").experiment_id], f"tags.`lgrpo.run_id` = '{first.run_id}'")
    assert len(runs) == 1


@pytest.mark.e2e  # SIGKILL of the command line and resume
def test_sigkilled_run_resumes_into_the_same_mlflow_run(warm_tiny, tmp_path):
    steps = 16
    config = short_run(tmp_path, warm_tiny.path, train={"max_steps": steps, "save_every": 2, "heldout_every": 4})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    rid = run_id(build_run_config(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "lgrpo_bench.cli", "train", str(config_file)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = tmp_path / "runs" / "test" / rid / "checkpoint-2" / "lgrpo-manifest.json"  # complete once it exists
    deadline = time.time() + 240
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed:\n" + process.stdout.read()
    process.send_signal(signal.SIGKILL)
    process.wait()

    client = open_client(config["tracking"]["uri"])
    experiment_id = client.get_experiment_by_name("test").experiment_id
    killed = client.search_runs([experiment_id], f"tags.`lgrpo.run_id` = '{rid}'")
    assert len(killed) == 1 and killed[0].data.tags["lgrpo.state"] == "running"

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from checkpoint-" in resumed.stdout
    runs = client.search_runs([experiment_id], f"tags.`lgrpo.run_id` = '{rid}'")
    assert [r.info.run_id for r in runs] == [killed[0].info.run_id]
    assert runs[0].data.tags["lgrpo.state"] == "done"
    assert metric_steps(client, runs[0].info.run_id, "train/loss") == list(range(1, steps + 1))
    assert metric_steps(client, runs[0].info.run_id, "train/lambda") == list(range(1, steps + 1))
    assert metric_steps(client, runs[0].info.run_id, "train/heldout_acc") == [0, 4, 8, 12, 16]


def test_train_cli_rejects_bad_config_with_exit_2(tmp_path):
    """Schema problems first (every one of them), then the registries (algorithm, model, benchmarks)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithm:\n  name: grpo\ntrain:\n  max_step: 3\n  learning_rate: -1\n")
    result = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "train", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{bad}: train.max_step: unknown key" in result.stderr
    assert f"{bad}: train.learning_rate:" in result.stderr
    bad.write_text("algorithm:\n  name: ppo\n")
    result = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "train", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{bad}: algorithm.name: unknown algorithm 'ppo'" in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_train_cli_evaluates_in_a_fresh_process_and_both_steps_are_idempotent(warm_tiny, tmp_path):
    """train → state trained → eval subprocess logs eval/arith/* → state done; running either again logs nothing."""
    config = short_run(tmp_path, warm_tiny.path, train={"max_steps": 1, "heldout_every": 0},
                       eval={"benchmarks": ["arith"], "limit": 20})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config))
    rid = run_id(build_run_config(config))
    trained = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "train", str(config_file)], capture_output=True,
                             text=True, timeout=600)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    client = open_client(config["tracking"]["uri"])
    experiment_id = client.get_experiment_by_name("test").experiment_id
    (run,) = client.search_runs([experiment_id], f"tags.`lgrpo.run_id` = '{rid}'")
    assert run.data.tags["lgrpo.state"] == "done" and run.data.tags["lgrpo.eval.arith.n"] == "20"
    assert 0 <= run.data.metrics["eval/arith/acc"] <= 1
    assert "eval.benchmarks" not in run.data.params  # evaluation settings are not part of the run identity

    again = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "train", str(config_file)], capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already done" in again.stdout and "nothing to do" in again.stdout
    assert "evaluating" not in again.stdout  # a done run has nothing left: no evaluation process is started
    assert len(client.search_runs([experiment_id], f"tags.`lgrpo.run_id` = '{rid}'")) == 1
    assert len(client.get_metric_history(run.info.run_id, "eval/arith/acc")) == 1


@pytest.mark.slow
def test_trained_but_unevaluated_run_is_not_retrained(warm_tiny, tmp_path):
    """A run that is trained but not evaluated (the evaluation was interrupted) only gets its evaluation."""
    from lgrpo_bench.runs.lifecycle import execute_run
    from lgrpo_bench.runs.owner import claim_run
    from lgrpo_bench.runs.tracked import open_tracked_run
    from lgrpo_bench.training.run import train

    config = build_run_config(short_run(tmp_path, warm_tiny.path, train={"max_steps": 1, "heldout_every": 0},
                                        eval={"benchmarks": ["arith"], "limit": 8}))
    run = prepared(config)
    with claim_run(run.layout) as _:  # what the lifecycle does before evaluating: train, then state trained
        tracked = open_tracked_run(run.config, run.run_id, run.layout, print)
        train(run.config, run.run_id, tracked)
        tracked.move("trained")
    client = open_client(config.tracking.uri)
    assert client.get_run(tracked.mlflow_run_id).data.tags["lgrpo.state"] == "trained"
    steps = metric_steps(client, tracked.mlflow_run_id, "train/loss")
    outcome = execute_run(run.config, run.run_id)
    assert not outcome.trained_now and outcome.state == "done" and outcome.mlflow_run_id == tracked.mlflow_run_id
    assert metric_steps(client, tracked.mlflow_run_id, "train/loss") == steps == [1]  # not trained again
    assert len(client.get_metric_history(tracked.mlflow_run_id, "eval/arith/acc")) == 1


def test_rank_detection_from_the_launcher_environment():
    from lgrpo_bench.training.run import is_main_process, world_size

    assert is_main_process({}) and world_size({}) == 1
    assert is_main_process({"RANK": "0", "WORLD_SIZE": "4"}) and world_size({"WORLD_SIZE": "4"}) == 4
    assert not is_main_process({"RANK": "3", "WORLD_SIZE": "4"})


@pytest.mark.slow
def test_a_non_main_rank_trains_without_touching_mlflow(warm_tiny, tmp_path, monkeypatch):
    """Under accelerate launch every rank runs `train`; only rank 0 may create and log the MLflow run."""
    from lgrpo_bench.training.run import train

    monkeypatch.setenv("RANK", "1")  # WORLD_SIZE stays 1: no process group, the rank-1 code path alone
    config = build_run_config(short_run(tmp_path, warm_tiny.path, train={"max_steps": 2, "heldout_every": 1}))
    run = prepared(config)
    result = train(run.config, run.run_id, None)
    assert result.mlflow_run_id is None and result.health.learned
    assert (result.model_dir / "model.safetensors").exists()
    client = open_client(config.tracking.uri)
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert [r.data.tags.get("lgrpo.kind") for r in runs if r.data.tags.get("lgrpo.kind") == "train"] == []
