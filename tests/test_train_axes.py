"""New points of the design space train end to end through ``train()`` into a real MLflow store: GSPO, CISPO, SAPO,
BNPO and λ-weighted CISPO with their axis values as params and tags; DAPO's re-sampling on tiny-s logs extra
generation rounds and trains every step on the configured number of mixed groups."""

from __future__ import annotations

import pytest

from lgrpo_bench.algorithms.presets import algorithm_of

from lgrpo_bench.runs.resolve import build_run as build_run_config
from lgrpo_bench.tracking import open_client
from lgrpo_bench.tracking.schema import (
    ALGORITHM_AXIS_TAGS,
    TAG_LAMBDA_RATE_LIMITED_FRAC,
    TRAIN_GENERATION_BATCHES,
    TRAIN_GROUP_FILTER_CAP_REACHED,
    TRAIN_GROUPS_FILTERED_FRAC,
    TRAIN_LAMBDA_RATE_LIMITED,
)
from test_train_run import execute, metric_steps, short_run


def history(client, run_id: str, name: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]


POINTS = {
    "gspo": {"name": "gspo"},
    "cispo": {"name": "cispo"},
    "sapo": {"name": "sapo"},
    "bnpo": {"name": "bnpo"},
    "lambda_cispo": {"name": "cispo", "aggregation": "lambda", "r": 0.3, "lambda_lr": 0.1},
}


@pytest.mark.parametrize("point", list(POINTS))
def test_new_points_train_into_mlflow_with_their_axes(warm_tiny, tmp_path, point):
    config = build_run_config(short_run(tmp_path, warm_tiny.path, algorithm=POINTS[point],
                                        train={"num_iterations": 2, "heldout_every": 0, "samples_every": 0, "save_every": 0}))
    _, result = execute(config)
    client = open_client(config.tracking.uri)
    run = client.get_run(result.mlflow_run_id)
    axes = algorithm_of(config).axes
    assert [run.data.tags[tag] for tag in ALGORITHM_AXIS_TAGS] == [axes[a] for a in ("aggregation", "surrogate", "advantage", "group_filter")]
    assert all(run.data.params[f"algorithm.{axis}"] == value for axis, value in axes.items())
    assert run.data.tags["lgrpo.state"] == "done" and run.data.tags["lgrpo.algorithm"] == POINTS[point]["name"]
    for name in ("train/loss", "train/entropy"):
        assert metric_steps(client, result.mlflow_run_id, name) == [1, 2], name
    # num_iterations 2: step 2 trains again (off-policy) on step 1's generation, so generation metrics are at step 1
    for name in (TRAIN_GENERATION_BATCHES, TRAIN_GROUPS_FILTERED_FRAC, "train/reward_mean"):
        assert metric_steps(client, result.mlflow_run_id, name) == [1], name
    assert history(client, result.mlflow_run_id, TRAIN_GENERATION_BATCHES) == [1.0]
    learns_lambda = axes["aggregation"] == "lambda"
    assert metric_steps(client, result.mlflow_run_id, TRAIN_LAMBDA_RATE_LIMITED) == ([1, 2] if learns_lambda else [])
    assert (TAG_LAMBDA_RATE_LIMITED_FRAC in run.data.tags) == learns_lambda
    if learns_lambda:
        flags = history(client, result.mlflow_run_id, TRAIN_LAMBDA_RATE_LIMITED)
        assert set(flags) <= {0.0, 1.0} and float(run.data.tags[TAG_LAMBDA_RATE_LIMITED_FRAC]) == pytest.approx(sum(flags) / 2)
    if axes["surrogate"] in ("clip", "gspo"):
        assert metric_steps(client, result.mlflow_run_id, "train/clip_fraction") == [1, 2]


def test_dapo_full_says_when_its_cap_is_reached(warm_tiny, tmp_path):
    """The short test warm start solves almost no arith problem, so mixed groups are rare: steps reach the cap of
    2 generation rounds, train on the mixed groups they have and say so (the full-batch path is tested in
    test_trainer_axes on a reward with mixed groups)."""
    prompts = 4
    config = build_run_config(short_run(tmp_path, warm_tiny.path, algorithm={"name": "dapo_full", "max_generation_batches": 2},
                                        train={"max_steps": 2, "prompts_per_step": prompts, "heldout_every": 0,
                                               "samples_every": 0, "save_every": 0}))
    _, result = execute(config)
    client = open_client(config.tracking.uri)
    run_id = result.mlflow_run_id
    rounds = history(client, run_id, TRAIN_GENERATION_BATCHES)
    filtered = history(client, run_id, TRAIN_GROUPS_FILTERED_FRAC)
    capped = history(client, run_id, TRAIN_GROUP_FILTER_CAP_REACHED)
    assert len(rounds) == len(filtered) == len(capped) == 2 and any(capped)
    for step_rounds, step_filtered, step_capped in zip(rounds, filtered, capped):
        in_loss = round((1 - step_filtered) * step_rounds * prompts)
        if step_capped:
            assert step_rounds == 2 and in_loss < prompts
        else:
            assert in_loss == prompts
    assert metric_steps(client, run_id, "train/loss") == [1, 2]  # capped steps still train
    assert client.get_run(run_id).data.tags["lgrpo.algorithm.group_filter"] == "resample"
