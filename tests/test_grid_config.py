"""Grid files: expansion (product, exclude, include, base files, overrides), run ids, and every bad input → exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lgrpo_bench.cli import app
from lgrpo_bench.config import ConfigError
from lgrpo_bench.runs.resolve import build_run as build_run_config
from lgrpo_bench.runs.resolve import load_grid, run_id
from lgrpo_bench.config.grid import SlurmExecutorConfig, parse_slurm_time

BASE = {"model": {"name": "tiny-s"}, "task": {"name": "arith"}, "train": {"max_steps": 3}}


def write(tmp_path: Path, data, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_product_in_written_order_with_partial_exclude_and_include(tmp_path):
    grid = write(tmp_path, {
        "name": "g", "base": BASE,
        "axes": {"algorithm.name": ["grpo", "dapo", "lambda_grpo"], "train.seed": [0, 1]},
        "exclude": [{"algorithm.name": "dapo"}, {"algorithm.name": "grpo", "train.seed": 1}],
        "include": [{"algorithm.name": "dapo_full", "train.seed": 7, "train.max_steps": 5}],
    })
    expanded = load_grid(grid)
    assert [p.values for p in expanded.points] == [
        {"algorithm.name": "grpo", "train.seed": 0},
        {"algorithm.name": "lambda_grpo", "train.seed": 0},
        {"algorithm.name": "lambda_grpo", "train.seed": 1},
        {"algorithm.name": "dapo_full", "train.seed": 7, "train.max_steps": 5},
    ]
    assert [p.origin for p in expanded.points] == ["axes", "axes", "axes", "include[0]"]
    assert [p.index for p in expanded.points] == [0, 1, 2, 3]
    assert expanded.value_keys == ["algorithm.name", "train.seed", "train.max_steps"]
    # each point is the base with its values set, and its id is the run id of that config
    by_hand = build_run_config({"model": {"name": "tiny-s"}, "task": {"name": "arith"},
                                "algorithm": {"name": "lambda_grpo"}, "train": {"max_steps": 3, "seed": 1}})
    assert expanded.points[2].run_id == run_id(by_hand)
    assert expanded.points[3].config.train.max_steps == 5 and expanded.points[0].config.train.max_steps == 3
    assert {p.config.tracking.grid for p in expanded.points} == {"g"}  # tag lgrpo.grid


def test_base_file_relative_to_the_grid_file_plus_overrides(tmp_path):
    (tmp_path / "runs").mkdir()
    write(tmp_path / "runs", {**BASE, "algorithm": {"name": "dr_grpo"}}, "base.yaml")
    sub = tmp_path / "grids"
    sub.mkdir()
    grid = write(sub, {"name": "g", "base": "../runs/base.yaml", "overrides": {"train.max_steps": 9},
                       "axes": {"train.seed": [3]}})
    (point,) = load_grid(grid).points
    assert point.config.algorithm.name == "dr_grpo" and point.config.train.max_steps == 9 and point.config.train.seed == 3


def test_a_grid_without_axes_is_its_base(tmp_path):
    (point,) = load_grid(write(tmp_path, {"name": "one", "base": BASE})).points
    assert point.values == {} and point.run_id == run_id(build_run_config({**BASE, "tracking": {"grid": "one"}}))


def test_plan_speed_scale_grid_expands(tmp_path):
    grid = write(tmp_path, {"name": "big", "base": BASE, "axes": {"train.seed": list(range(50)),
                                                                 "algorithm.name": ["grpo", "dapo", "dr_grpo", "lambda_grpo"]}})
    expanded = load_grid(grid)
    assert len(expanded.points) == 200 and len({p.run_id for p in expanded.points}) == 200


def test_seed_siblings_are_the_configs_and_run_ids_of_full_validation(tmp_path):
    """Points that differ only in train.seed skip the re-checks (expand_grid): each still equals the base with its
    values validated from scratch, and its run id the full hash of that config; include entries that repeat an axis
    point's seed are still duplicates."""
    grid = write(tmp_path, {
        "name": "s", "base": BASE,
        "axes": {"algorithm.name": ["grpo", "lambda_grpo"], "train.learning_rate": [1e-4, 2e-4], "train.seed": [0, 5, 17]},
        "include": [{"algorithm.name": "dapo", "train.seed": 4}, {"algorithm.name": "dapo", "train.seed": 9}],
    })
    expanded = load_grid(grid)
    assert len(expanded.points) == 14
    for point in expanded.points:
        data = {**BASE, "train": dict(BASE["train"]), "algorithm": {}, "tracking": {"grid": "s"}}
        for key, value in point.values.items():
            section, name = key.split(".")
            data[section][name] = value
        by_hand = build_run_config(data)
        assert point.config.model_dump() == by_hand.model_dump(), point.values
        assert point.run_id == run_id(by_hand) == run_id(point.config), point.values
    assert len({p.run_id for p in expanded.points}) == 14
    duplicate = write(tmp_path, {"name": "s", "base": BASE, "axes": {"train.seed": [0, 1]},
                                 "include": [{"train.seed": 1}]}, "duplicate.yaml")
    with pytest.raises(ConfigError, match=r"include\[0\]: point train.seed=1 duplicates point train.seed=1"):
        load_grid(duplicate)


def test_seed_identity_hashes_equal_the_identity_hash():
    from lgrpo_bench.config import identity_hash, identity_payload, seed_identity_hashes
    from lgrpo_bench.runs.resolve import run_ids_by_seed

    config = build_run_config({**BASE, "algorithm": {"name": "lambda_grpo"}, "train": {"max_steps": 3, "seed": 2}})
    ids = run_ids_by_seed(config)
    payload = identity_payload(config, {"name": "x"})
    hashes = seed_identity_hashes(payload)
    for seed in (0, 1, 2, 9, 10, 123_456, 2**32 - 1):
        assert hashes(seed) == identity_hash({**payload, "train": {**payload["train"], "seed": seed}})
        assert ids(seed) == run_id(config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})}))
    assert len({ids(seed) for seed in range(100)}) == 100


@pytest.mark.parametrize("text, minutes", [
    (90, 90), ("90", 90), ("30:00", 30), ("30:01", 31), ("02:00:00", 120), ("1-00", 1440), ("1-02:30", 1590),
    ("2-00:00:30", 2881),
])
def test_slurm_time(text, minutes):
    assert parse_slurm_time(text) == minutes
    assert SlurmExecutorConfig(time=text).timeout_min == minutes


# ---------------------------------------------------------------------------------------------------------
# Bad input: exit code 2, a message naming the file, the key path and the bad value; nothing written
# ---------------------------------------------------------------------------------------------------------
def grid_text(**overrides) -> dict:
    data = {"name": "bad", "base": BASE, "axes": {"algorithm.name": ["grpo", "dapo"], "train.seed": [0, 1]}}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_more_gpus_than_the_machine_has_exits_2_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    grid = write(tmp_path, grid_text(executor={"kind": "local", "gpus_per_run": 2}))
    result = CliRunner().invoke(app, ["run", str(grid)])
    assert result.exit_code == 2
    assert f"{grid}: executor: runs need 2 GPUs each but 0 are available" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["grid.yaml"]


def test_load_grid_raises_config_error_listing_every_bad_axis_value(tmp_path):
    grid = write(tmp_path, grid_text(axes={"algorithm.name": ["ppo", "grpo"], "train.max_steps": ["x", 2]}))
    with pytest.raises(ConfigError) as caught:
        load_grid(grid)
    lines = str(caught.value).splitlines()
    assert any(line.startswith(f"{grid}: axes.algorithm.name[0]: unknown algorithm 'ppo'") for line in lines)
    assert any(line.startswith(f"{grid}: axes.train.max_steps[0]: Input should be a valid integer") for line in lines)
    assert len(lines) == len(set(lines))  # one line per problem, not one per point


def test_a_non_finite_value_in_a_base_file_names_that_file(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model: {name: tiny-s}\ntrain:\n  max_steps: 3\n  learning_rate: -.inf\n")
    grid = write(tmp_path, {"name": "g", "base": "base.yaml", "axes": {"train.seed": [0, 1]}})
    with pytest.raises(ConfigError, match=rf"^{base}: train.learning_rate: must be a finite number \(got -inf\)$"):
        load_grid(grid)


def test_math_training_data_is_read_once_per_version_and_checked_again_when_it_changes(tmp_path):
    """The no-training-example check reads task.data once per version of the file (cached on its mtime and size),
    however many points name it, and sees the file again once it changes."""
    import json

    from lgrpo_bench.runs.resolve import _jsonl_read

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"{i}+1", "answer": str(i + 1), "level": "Level 1"})
                            + "\n" for i in range(4)))
    base = {"model": {"name": "tiny-s"}, "task": {"name": "math", "data": str(data), "levels": [1]}}
    grid = write(tmp_path, {"name": "m", "base": base,
                            "axes": {"train.max_steps": list(range(1, 41)), "train.seed": [0, 1, 2]}})
    before = _jsonl_read.cache_info()
    assert len(load_grid(grid).points) == 120
    after = _jsonl_read.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 39  # one read; one check per non-seed point
    five = {**base, "task": {**base["task"], "levels": [5]}}
    with pytest.raises(ConfigError, match=rf"task.levels: keeps 0 of the 4 records of {data} \(level 1: 4\)"):
        build_run_config(five)
    with data.open("a") as handle:
        handle.write(json.dumps({"id": "hard", "problem": "x", "answer": "1", "level": "Level 5"}) + "\n")
    assert build_run_config(five).task.levels == [5]
    data.write_text("\n\n")  # blank lines are no records
    with pytest.raises(ConfigError, match=rf"task.data: {data} holds 0 records, so training has no example"):
        build_run_config(base)


@pytest.mark.parametrize("written, minutes", [("24:00:00", 1440), ("1:30", 2), ("90", 90)])
def test_an_unquoted_time_limit_is_read_as_slurm_writes_it_not_as_a_base_60_number(tmp_path, written, minutes):
    """YAML 1.1 reads an unquoted ``24:00:00`` as 86400 (base 60), which the schema took as 86400 minutes."""
    grid = write(tmp_path, "name: g\nbase:\n  model: {name: tiny-s}\n  task: {name: arith}\n"
                           f"executor:\n  kind: slurm\n  time: {written}\n")
    assert load_grid(grid).grid.executor.timeout_min == minutes
