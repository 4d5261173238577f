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
        ("task:\n  name: chess\n", "task.name: Input should be 'arith', 'lenmix' or 'math'"),
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


# --------------------------------------------------------------------------------------------------------
# Issue 22: every float of every config model is finite (the schemas' own guard, behind the YAML check)
# --------------------------------------------------------------------------------------------------------
def _config_models():
    from lgrpo_bench.config import schema
    from lgrpo_bench.config.grid import GridConfig, LocalExecutorConfig, RayExecutorConfig, SlurmExecutorConfig
    from lgrpo_bench.config.sweep import ObjectiveConfig, PrunerConfig, SamplerConfig, SpaceEntry, SweepConfig

    required = {ObjectiveConfig: {"metric": "train/reward_mean"}, GridConfig: {"name": "g"},
                SpaceEntry: {"float": [0.0, 1.0]},
                SweepConfig: {"name": "s", "space": {}, "objective": {"metric": "train/reward_mean"}, "n_trials": 1}}
    models = [schema.ModelConfig, schema.TaskConfig, schema.AlgorithmConfig, schema.TrainConfig, schema.EvalConfig,
              schema.BenchmarkEvalConfig, schema.TrackingConfig, schema.RunConfig, GridConfig, LocalExecutorConfig,
              RayExecutorConfig, SlurmExecutorConfig, SpaceEntry, ObjectiveConfig, SamplerConfig, PrunerConfig,
              SweepConfig]
    return [(model, required.get(model, {})) for model in models]


def _float_fields(model):
    """(YAML key, a float value in the shape the field takes) of every field that holds floats."""
    import typing

    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation)
        key = field.alias or name
        if annotation is float or float in args:
            yield key, lambda bad: bad
        elif any(typing.get_args(arg) == (float, float) for arg in args):  # a sweep's [low, high]
            yield key, lambda bad: [0.0, bad]


FLOAT_FIELDS = [(model, required, key, shape) for model, required in _config_models() for key, shape in _float_fields(model)]


def test_the_float_fields_are_found():
    found = {f"{model.__name__}.{key}" for model, _, key, _ in FLOAT_FIELDS}
    assert {"TaskConfig.format_reward_weight", "AlgorithmConfig.lam_init", "TrainConfig.learning_rate",
            "BenchmarkEvalConfig.temperature", "EvalConfig.gpu_memory_utilization", "RayExecutorConfig.num_gpus_per_run",
            "SpaceEntry.float", "SpaceEntry.step"} <= found, found
    assert len(found) >= 23, found  # when written: 19 in run configs, 2 in Ray executors, 2 in sweep spaces


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), "inf", "-Infinity", "nan", "1e999"])
@pytest.mark.parametrize(("model", "required", "key", "shape"), FLOAT_FIELDS,
                         ids=[f"{model.__name__}.{key}" for model, _, key, _ in FLOAT_FIELDS])
def test_every_float_field_refuses_non_finite_values(model, required, key, shape, bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        model.model_validate({**required, key: shape(bad)})
    assert any(item["type"] == "finite_number" for item in info.value.errors()), info.value.errors()


def test_assigning_a_non_finite_value_is_refused():
    from pydantic import ValidationError

    config = RunConfig()
    with pytest.raises(ValidationError, match="finite number"):
        config.train.learning_rate = float("inf")
    assert config.train.learning_rate == 3e-5


def test_a_mapping_with_a_non_finite_value_names_the_key():
    with pytest.raises(ConfigError, match=r"<mapping>: task.format_reward_weight: must be a finite number \(got inf\)"):
        build_run_config({"task": {"format_reward_weight": float("inf")}}, "<mapping>")


def test_first_non_finite_walks_in_document_order_and_once_per_alias():
    from lgrpo_bench.config.loading import first_non_finite

    shared = [1.0, float("nan")]
    data = {"a": {"b": [0.5, shared]}, "c": shared, "d": float("inf"), "e": True, "f": "inf"}
    assert first_non_finite(data) == ("a.b[1][1]", data["a"]["b"][1][1])
    assert first_non_finite({"axes": {"train.learning_rate": [1e-5, float("-inf")]}}) == \
        ("axes.train.learning_rate[1]", float("-inf"))
    assert first_non_finite({"x": [1, 2.5, "nan", None, False]}) is None
