"""Grid files: expansion (product, exclude, include, base files, overrides), run ids, and every bad input → exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lgrpo_bench.cli import app
from lgrpo_bench.config import ConfigError, build_run_config, load_grid, run_id
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


BAD_GRIDS = [
    ("malformed YAML", "name: x\naxes: [unclosed\n", ["{grid} (line 3, column 1): malformed YAML"]),
    ("top level is a list", "- name: x\n", ["{grid}: expected a mapping at the top level, got list"]),
    ("unknown top-level key", grid_text(axis={"train.seed": [0]}), ["{grid}: axis: unknown key"]),
    ("missing name", grid_text(name=None), ["{grid}: name: Field required"]),
    ("bad name", grid_text(name="my grid"), ["{grid}: name: String should match pattern", "(got 'my grid')"]),
    ("axis on a missing key", grid_text(axes={"train.max_step": [1, 2]}),
     ["{grid}: axes.train.max_step: not a run config key (did you mean train.max_steps?)"]),
    ("axis on a section", grid_text(axes={"train": [1]}), ["{grid}: axes.train: 'train' is a section, not a value"]),
    ("axis values not a list", grid_text(axes={"train.seed": 3}), ["{grid}: axes.train.seed: Input should be a valid list (got 3)"]),
    ("empty axis", grid_text(axes={"train.seed": []}), ["{grid}: axes.train.seed: empty list, so the product has no points"]),
    ("repeated axis value", grid_text(axes={"train.seed": [0, 1, 0]}), ["{grid}: axes.train.seed[2]: value 0 repeats axes.train.seed[0]"]),
    ("unknown algorithm", grid_text(axes={"algorithm.name": ["grpo", "ppo"]}),
     ["{grid}: axes.algorithm.name[1]: unknown algorithm 'ppo': choose one of grpo, dapo", "(got 'ppo')"]),
    ("wrong value type", grid_text(axes={"train.max_steps": [5, "ten"]}),
     ["{grid}: axes.train.max_steps[1]: Input should be a valid integer", "(got 'ten')"]),
    ("value out of range", grid_text(axes={"train.num_generations": [1]}),
     ["{grid}: axes.train.num_generations[0]: Input should be greater than or equal to 2 (got 1)"]),
    ("unknown model", grid_text(axes={"model.name": ["tiny-s", "tiny-xs"]}),
     ["{grid}: axes.model.name[1]: unknown model 'tiny-xs': not a preset", "(did you mean tiny-s?)"]),
    ("missing model folder", grid_text(axes={"model.name": ["./no/such/model"]}),
     ["{grid}: axes.model.name[0]: unknown model './no/such/model': no such folder"]),
    ("unknown benchmark", grid_text(base={**BASE, "eval": {"benchmarks": ["math5000"]}}),
     ["{grid}: base.eval.benchmarks: unknown benchmark 'math5000'", "(got ['math5000'])"]),
    ("unknown key in the base", grid_text(base={**BASE, "train": {"max_step": 3}}), ["{grid}: base.train.max_step: unknown key"]),
    ("missing base file", grid_text(base="nowhere.yaml"), ["{grid}: base: no such run config file 'nowhere.yaml'"]),
    ("unknown key in the base file", grid_text(base="base.yaml"), ["{base}: train.lr: unknown key"]),
    ("unknown override key", grid_text(overrides={"train.lr": 1e-3}), ["{grid}: overrides.train.lr: not a run config key"]),
    ("bad override value", grid_text(overrides={"train.max_steps": -1}),
     ["{grid}: overrides.train.max_steps: Input should be greater than or equal to 1 (got -1)"]),
    ("unknown include key", grid_text(include=[{"train.sed": 1}]), ["{grid}: include[0].train.sed: not a run config key (did you mean train.seed?)"]),
    ("exclude on a non-axis", grid_text(exclude=[{"train.max_steps": 3}]), ["{grid}: exclude[0].train.max_steps: not an axis"]),
    ("everything excluded", grid_text(exclude=[{"train.seed": 0}, {"train.seed": 1}]),
     ["{grid}: exclude: every point of the product is excluded; nothing to run"]),
    ("include duplicates a point", grid_text(include=[{"algorithm.name": "dapo", "train.seed": 1}]),
     ["{grid}: include[0]: point algorithm.name=dapo, train.seed=1 duplicates point algorithm.name=dapo, train.seed=1 (axes)"]),
    ("axis that does not change results", grid_text(axes={"tracking.experiment": ["a", "b"]}),
     ["{grid}: axes: point tracking.experiment=b duplicates point tracking.experiment=a", "tracking.*"]),
    ("invalid combination", grid_text(axes={"algorithm.r": [0.1, 0.5]}, base={**BASE, "algorithm": {"name": "lambda_grpo"}}),
     ["{grid}: axes: point algorithm.r=0.5: algorithm.r=0.5 is too large for train.num_generations=8"]),
    ("unknown executor kind", grid_text(executor={"kind": "k8s"}),
     ["{grid}: executor: Input tag 'k8s' found using 'kind' does not match any of the expected tags: 'local', 'ray', 'slurm'"]),
    ("executor without kind", grid_text(executor={"slots": 2}), ["{grid}: executor.kind: missing; one of local, ray, slurm"]),
    ("zero slots", grid_text(executor={"kind": "local", "slots": 0}),
     ["{grid}: executor.slots: Input should be greater than or equal to 1 (got 0)"]),
    ("unknown executor key", grid_text(executor={"kind": "slurm", "partitions": "gpu"}), ["{grid}: executor.partitions: unknown key"]),
    ("bad SLURM time", grid_text(executor={"kind": "slurm", "time": "3 hours"}),
     ["{grid}: executor.time: expected minutes or [D-]HH:MM:SS (got '3 hours')"]),
    ("fractional multi-GPU request", grid_text(executor={"kind": "ray", "num_gpus_per_run": 1.5}),
     ["{grid}: executor.num_gpus_per_run: more than one GPU per run must be a whole number (got 1.5)"]),
]


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("case, content, expected", BAD_GRIDS, ids=[case for case, _, _ in BAD_GRIDS])
def test_bad_grid_exits_2_naming_file_key_and_value(tmp_path, monkeypatch, case, content, expected, command):
    monkeypatch.chdir(tmp_path)
    base_file = write(tmp_path, {**BASE, "train": {"lr": 0.1}}, "base.yaml")
    grid = write(tmp_path, content)
    before = sorted(os.listdir(tmp_path))
    result = CliRunner().invoke(app, [command, str(grid)])
    assert result.exit_code == 2, result.output
    message = result.stderr if hasattr(result, "stderr") else result.output
    for part in expected:
        assert part.format(grid=grid, base=base_file.resolve()) in message, message
    assert sorted(os.listdir(tmp_path)) == before  # no store, no runs folder


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
