"""Run configs: validation messages, safe YAML, overrides, run identity, JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lgrpo_bench.config import ConfigError, RunConfig
from lgrpo_bench.runs.resolve import build_run as build_run_config
from lgrpo_bench.runs.resolve import load_run as load_run_config
from lgrpo_bench.runs.resolve import run_id


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("algorithm:\n  name: ppo\n", "algorithm.name: unknown algorithm 'ppo': choose one of grpo, dapo"),
        ("train:\n  max_step: 3\n", "train.max_step: unknown key"),
        ("train:\n  num_generations: 1\n", "train.num_generations: Input should be greater than or equal to 2"),
        ("algorithm:\n  r: 0\n", "algorithm.r: Input should be greater than 0"),
        ("algorithm:\n  r: 0.5\n", "algorithm.r=0.5 is too large for train.num_generations=8"),
        ("train:\n  learning_rate: fast\n", "train.learning_rate: Input should be a valid number"),
        ("task:\n  digits: [0]\n", "task.digits: digits must be a non-empty list of integers between 1 and 9"),
        ("task:\n  name: chess\n", "task.name: Input should be 'arith' or 'math'"),
        ("train:\n  prompts_per_step: 3\n  gradient_accumulation_steps: 2\n", "must be a multiple of"),
        ("task:\n  data_seed: 5\n", "held-out accuracy would be measured on training data"),
        ("algorithm: [1, 2]\n", "algorithm: Input should be a valid dictionary"),
        ("- just\n- a list\n", "expected a mapping at the top level"),
        ("train: {max_steps: 3\n", "malformed YAML"),
        ("model: !!python/object/apply:os.system ['echo pwned']\n", "malformed YAML"),
    ],
)
def test_bad_run_configs_name_file_and_key(tmp_path, yaml_text, message):
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_run_config(tmp_path / "absent.yaml")


def test_overrides_apply_with_yaml_types(tmp_path):
    path = write(tmp_path, "algorithm:\n  name: grpo\n")
    config = load_run_config(path, ["train.learning_rate=2e-6", "algorithm.lam_init=0.5", "task.digits=[2]",
                                    "algorithm.name=lambda_grpo", "model.name=Qwen/Qwen2.5-Math-1.5B"])
    assert config.train.learning_rate == 2e-6 and config.algorithm.lam_init == 0.5
    assert config.task.digits == [2] and config.algorithm.name == "lambda_grpo"
    assert config.model.name == "Qwen/Qwen2.5-Math-1.5B"
    with pytest.raises(ConfigError, match=r"model.name: unknown model './somewhere': no such folder"):
        load_run_config(path, ["model.name=./somewhere"])  # a run config's model is checked before anything starts


@pytest.mark.parametrize("override, message", [("train.lr=1", "--set train.lr: unknown key"), ("nonsense", "expected KEY=VALUE")])
def test_bad_overrides(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(write(tmp_path, ""), [override])


def test_run_id_ignores_tracking_and_verbosity_but_not_results():
    base = RunConfig()
    same = build_run_config({"tracking": {"experiment": "other", "runs_dir": "/elsewhere"}, "train": {"samples_every": 3}})
    assert run_id(base) == run_id(same)
    assert len(run_id(base)) == 12 and all(c in "0123456789abcdef" for c in run_id(base))
    for changed in ({"train": {"seed": 1}}, {"algorithm": {"name": "grpo"}}, {"algorithm": {"lam_init": 0.1}}):
        assert run_id(build_run_config(changed)) != run_id(base)
    # an explicit default is the same run as an implicit one
    assert run_id(build_run_config({"algorithm": {"epsilon_high": 0.2}})) == run_id(base)


def test_run_id_is_stable_across_processes():
    code = "from lgrpo_bench.config import RunConfig; from lgrpo_bench.runs.resolve import run_id; print(run_id(RunConfig()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == run_id(RunConfig())


def test_json_schema_documents_every_field():
    schema = RunConfig.model_json_schema()
    for section in ("ModelConfig", "TaskConfig", "AlgorithmConfig", "TrainConfig", "EvalConfig", "TrackingConfig"):
        for name, field in schema["$defs"][section]["properties"].items():
            assert field.get("description"), f"{section}.{name} has no description"
    assert schema["$defs"]["TrainConfig"]["properties"]["max_completion_length"]["unit"] == "tokens"
    assert schema["$defs"]["TrainConfig"]["additionalProperties"] is False


def test_cli_config_schema_and_show(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "config", "schema"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["title"] == "RunConfig"
    path = write(tmp_path, "algorithm:\n  name: grpo\n")
    shown = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "config", "show", str(path), "--set", "train.seed=3"],
                           capture_output=True, text=True, check=True).stdout
    assert f"# run id: {run_id(build_run_config({'algorithm': {'name': 'grpo'}, 'train': {'seed': 3}}))}" in shown
    assert "seed: 3" in shown
