"""The bad-input catalog (issue #8): every case is a real CLI call that must exit 2 with a message naming the
file and the key (and the bad value where there is one), launching nothing and writing nothing.

Four tables: run configs (``train`` and ``config show``), grid files (``plan`` and ``run``), sweep files (``sweep``)
and command line arguments. YAML tags such as ``!!python/object`` are never constructed (safe loading only).

Issue 22 ("never silently wrong"): every float must be finite (``.inf``, ``-.inf``, ``.nan``, the strings ``inf`` and
``nan``, wherever they stand), counts the runtime needs at least 1 of are refused at 0, and MATH training data that
leaves no training example (an empty ``task.data``, or ``task.levels`` none of its records have) is refused by
``plan``. Each case runs with the files of :func:`write_math_data` beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lgrpo_bench.cli import app

RUNNER = CliRunner()
INF, NAN = float("inf"), float("nan")  # yaml.safe_dump writes them .inf and .nan
BASE = {"model": {"name": "tiny-s"}, "task": {"name": "arith"}, "train": {"max_steps": 3}}


def write(tmp_path: Path, data, name: str) -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def write_math_data(folder: Path) -> None:
    """The training files the math cases point at: ``empty.jsonl`` (0 records) and ``level1.jsonl`` (3 records, all
    MATH level 1)."""
    (folder / "empty.jsonl").write_text("")
    (folder / "level1.jsonl").write_text("".join(
        json.dumps({"id": f"p{i}", "problem": f"{i}+1", "answer": str(i + 1), "level": "Level 1"}) + "\n"
        for i in range(3)))


def invoke(tmp_path: Path, args: list[str]):
    """Run the CLI in ``tmp_path``; return (result, stderr+stdout, files that appeared)."""
    before = set(os.listdir(tmp_path))
    result = RUNNER.invoke(app, args)
    output = (result.stderr if hasattr(result, "stderr") else "") + result.output
    return result, output, sorted(set(os.listdir(tmp_path)) - before)


# --------------------------------------------------------------------------------------------------------
# Run configs: lgrpo-bench train RUN.yaml
# --------------------------------------------------------------------------------------------------------
BAD_RUN_CONFIGS = [
    ("unknown algorithm", "algorithm:\n  name: ppo\n", "algorithm.name: unknown algorithm 'ppo'"),
    ("unknown key", "train:\n  max_step: 3\n", "train.max_step: unknown key (did you mean max_steps?)"),
    ("unknown section", "trian:\n  max_steps: 3\n", "trian: unknown key (did you mean train?)"),
    ("unknown key far from any", "train:\n  zzqqxx: 3\n", "train.zzqqxx: unknown key (keys here: beta, bf16,"),
    ("a grid file", "name: g\nbase: {model: {name: tiny-s}}\naxes:\n  train.seed: [0, 1]\n",
     "a grid file (it has axes), not a run config: `lgrpo-bench plan"),
    ("a sweep file", "name: s\nspace: {}\nobjective: {metric: x}\nn_trials: 2\n",
     "a sweep file (it has space, objective, n_trials), not a run config: `lgrpo-bench sweep"),
    ("wrong type", "train:\n  learning_rate: fast\n", "train.learning_rate: Input should be a valid number"),
    ("value out of range", "train:\n  num_generations: 1\n", "train.num_generations: Input should be greater than or equal to 2"),
    ("r too large for G", "algorithm:\n  name: lambda_grpo\n  r: 0.5\n", "algorithm.r=0.5 is too large for train.num_generations=8"),
    ("unknown benchmark", "eval:\n  benchmarks: [math5000]\n", "eval.benchmarks: unknown benchmark 'math5000'"),
    ("unknown task", "task:\n  name: chess\n", "task.name: Input should be 'arith', 'lenmix' or 'math'"),
    ("section is not a mapping", "algorithm: [1, 2]\n", "algorithm: Input should be a valid dictionary"),
    ("top level is a list", "- just\n- a list\n", "expected a mapping at the top level"),
    ("malformed YAML", "train: {max_steps: 3\n", "malformed YAML"),
    ("python object tag", "model: !!python/object/apply:os.system ['touch pwned']\n", "malformed YAML"),
    ("avg@k at temperature 0", "eval:\n  benchmarks: [aime24]\n  overrides:\n    aime24: {k: 8, temperature: 0}\n",
     "eval.overrides: aime24: k=8 samples at temperature 0"),
    ("unknown surrogate", "algorithm:\n  name: cispo\n  surrogate: ppo\n",
     "algorithm.surrogate: unknown surrogate 'ppo': choose one of clip, cispo, sapo, gspo"),
    ("CISPO cap below 1", "algorithm:\n  name: cispo\n  cispo_epsilon_max: 0.2\n",
     "algorithm.cispo_epsilon_max=0.2 caps the importance weight below 1"),
    ("duplicate section", "train:\n  max_steps: 3\nmodel:\n  name: tiny-s\ntrain:\n  seed: 4\n",
     "(line 5): duplicate key 'train' (first given on line 1)"),
    ("duplicate key inside a section", "train:\n  seed: 1\n  seed: 2\n", "(line 3): duplicate key 'seed' (first given on line 2)"),
    ("negative seed", "train:\n  seed: -1\n", "train.seed: Input should be greater than or equal to 0 (got -1)"),
    ("seed above 2^32-1", "train:\n  seed: 1180591620717411303424\n", "train.seed: Input should be less than or equal to 4294967295"),
    ("negative warm-start seed", "model:\n  warm_start_seed: -3\n", "model.warm_start_seed: Input should be greater than or equal to 0"),
    ("eval seed too large", "eval:\n  seed: 9223372036854775808\n", "eval.seed: Input should be less than or equal to 4294967295"),
    ("math data file missing", "task:\n  name: math\n  data: ./no/math_train.jsonl\n",
     "task.data: no such file './no/math_train.jsonl'"),
    ("non-UTF-8 file", b"train:\n  seed: \xff\xfe\n", "not UTF-8 text"),
    # issue 22: every float finite, counts at least what the runtime needs, training data that trains
    ("infinite reward weight", "task:\n  format_reward_weight: .inf\n",
     "task.format_reward_weight: must be a finite number (got inf)"),
    ("NaN lambda init", "algorithm:\n  lam_init: .nan\n", "algorithm.lam_init: must be a finite number (got nan)"),
    ("NaN spelled .NaN", "algorithm:\n  lam_init: .NaN\n", "algorithm.lam_init: must be a finite number (got nan)"),
    ("negative infinity", "algorithm:\n  lam_init: -.inf\n", "algorithm.lam_init: must be a finite number (got -inf)"),
    ("infinite learning rate", "train:\n  learning_rate: .inf\n", "train.learning_rate: must be a finite number (got inf)"),
    ("learning rate the string inf", "train:\n  learning_rate: inf\n",
     "train.learning_rate: must be a finite number (got 'inf')"),
    ("a float that overflows to inf", "train:\n  max_grad_norm: 1.0e+999\n",
     "train.max_grad_norm: must be a finite number (got inf)"),
    ("NaN in an eval override", "eval:\n  benchmarks: [aime24]\n  overrides:\n    aime24: {temperature: .nan}\n",
     "eval.overrides.aime24.temperature: must be a finite number (got nan)"),
    ("zero warm-start steps", "model:\n  warm_start_steps: 0\n",
     "model.warm_start_steps: Input should be greater than or equal to 1 (got 0)"),
    ("zero eval batch size", "eval:\n  batch_size: 0\n", "eval.batch_size: must be at least 1, or auto (got 0)"),
    ("empty math data file", "task:\n  name: math\n  data: ./empty.jsonl\n",
     "task.data: empty.jsonl holds 0 records, so training has no example"),
    ("levels that keep no record", "task:\n  name: math\n  data: ./level1.jsonl\n  levels: [5]\n",
     "task.levels: keeps 0 of the 3 records of level1.jsonl (level 1: 3), so training has no example; choose levels "
     "the file holds (got [5])"),
]


@pytest.mark.parametrize("command", [["train"], ["config", "show"]], ids=["train", "config show"])
@pytest.mark.parametrize(("case", "text", "message"), BAD_RUN_CONFIGS, ids=[c[0] for c in BAD_RUN_CONFIGS])
def test_bad_run_config(tmp_path, monkeypatch, case, text, message, command):
    monkeypatch.chdir(tmp_path)
    write_math_data(tmp_path)
    path = write(tmp_path, text, "run.yaml")
    result, output, created = invoke(tmp_path, [*command, str(path)])
    assert result.exit_code == 2, output
    assert str(path) in output and message in output, output
    assert created == [] and not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------------------------------------
# Grid files: lgrpo-bench plan GRID.yaml and lgrpo-bench run GRID.yaml
# --------------------------------------------------------------------------------------------------------
def grid_text(**overrides) -> dict:
    data = {"name": "bad", "base": BASE, "axes": {"algorithm.name": ["grpo", "dapo"], "train.seed": [0, 1]}}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


BAD_GRIDS = [
    ("malformed YAML", "name: x\naxes: [unclosed\n", ["{grid} (line 3, column 1): malformed YAML"]),
    ("top level is a list", "- name: x\n", ["{grid}: expected a mapping at the top level, got list"]),
    ("unknown top-level key", grid_text(axis={"train.seed": [0]}), ["{grid}: axis: unknown key (did you mean axes?)"]),
    ("unknown base key", grid_text(base={**BASE, "train": {"learning_rat": 0.1}}),
     ["{grid}: base.train.learning_rat: unknown key (did you mean learning_rate?)"]),
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
    ("unknown axis value", grid_text(axes={"algorithm.aggregation": ["token_mean", "sum"]}),
     ["{grid}: axes.algorithm.aggregation[1]: unknown aggregation 'sum': choose one of seq_mean_token_mean", "(got 'sum')"]),
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
    ("duplicate name", "name: first\nbase: {}\nname: second\n", ["{grid} (line 3): duplicate key 'name' (first given on line 1)"]),
    ("seeds out of range", grid_text(axes={"train.seed": [-1, -9223372036854775808, 1180591620717411303424]}),
     ["{grid}: axes.train.seed[0]: Input should be greater than or equal to 0 (got -1)",
      "{grid}: axes.train.seed[2]: Input should be less than or equal to 4294967295"]),
    ("too many points", grid_text(axes={"train.seed": list(range(1000)), "train.max_steps": list(range(1, 1001))}),
     ["{grid}: axes: 1,000 train.seed × 1,000 train.max_steps make 1,000,000 points, above the limit of 20,000"]),
    ("a value echoed at most 200 characters", grid_text(name="x" * 5000),
     ["{grid}: name: String should have at most 100 characters (got 'xxxxx", "x…)"]),
    # issue 22: every float finite, counts at least what the runtime needs, training data that trains
    ("infinite axis value", grid_text(axes={"train.learning_rate": [1e-5, INF]}),
     ["{grid}: axes.train.learning_rate[1]: must be a finite number (got inf)"]),
    ("axis value the string inf", "name: x\nbase: {}\naxes:\n  train.learning_rate: [1.0e-5, inf]\n",
     ["{grid}: axes.train.learning_rate[1]: must be a finite number (got 'inf')"]),
    ("NaN override", grid_text(overrides={"algorithm.lam_init": NAN}),
     ["{grid}: overrides.algorithm.lam_init: must be a finite number (got nan)"]),
    ("infinite value in the base", grid_text(base={**BASE, "task": {"format_reward_weight": INF}}),
     ["{grid}: base.task.format_reward_weight: must be a finite number (got inf)"]),
    ("NaN include value", grid_text(include=[{"train.learning_rate": NAN}]),
     ["{grid}: include[0].train.learning_rate: must be a finite number (got nan)"]),
    ("NaN exclude value", grid_text(exclude=[{"train.seed": NAN}]),
     ["{grid}: exclude[0].train.seed: must be a finite number (got nan)"]),
    ("NaN executor setting", grid_text(executor={"kind": "ray", "num_cpus_per_run": NAN}),
     ["{grid}: executor.num_cpus_per_run: must be a finite number (got nan)"]),
    ("infinite Ray runtime_env value", grid_text(executor={"kind": "ray", "runtime_env": {"config": {"setup_timeout_seconds": INF}}}),
     ["{grid}: executor.runtime_env.config.setup_timeout_seconds: must be a finite number (got inf)"]),
    ("zero warm-start steps", grid_text(axes={"model.warm_start_steps": [0, 100]}),
     ["{grid}: axes.model.warm_start_steps[0]: Input should be greater than or equal to 1 (got 0)"]),
    ("zero eval batch size", grid_text(overrides={"eval.batch_size": 0}),
     ["{grid}: overrides.eval.batch_size: must be at least 1, or auto (got 0)"]),
    ("negative GPU index", grid_text(executor={"kind": "local", "gpus": [0, -1]}),
     ["{grid}: executor.gpus.1: Input should be greater than or equal to 0 (got -1)"]),
    ("GPU listed twice", grid_text(executor={"kind": "local", "gpus": [1, 1]}),
     ["{grid}: executor.gpus: each GPU index may be listed once"]),
    ("empty math data file", grid_text(base={**BASE, "task": {"name": "math", "data": "./empty.jsonl"}}),
     ["{grid}: base.task.data: empty.jsonl holds 0 records, so training has no example"]),
    ("levels that keep no record",
     grid_text(base={**BASE, "task": {"name": "math", "data": "./level1.jsonl"}}, axes={"task.levels": [[1], [5]]}),
     ["{grid}: axes.task.levels[1]: keeps 0 of the 3 records of level1.jsonl (level 1: 3)", "(got [5])"]),
]


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize(("case", "content", "expected"), BAD_GRIDS, ids=[case for case, _, _ in BAD_GRIDS])
def test_bad_grid(tmp_path, monkeypatch, case, content, expected, command):
    monkeypatch.chdir(tmp_path)
    write_math_data(tmp_path)
    base_file = write(tmp_path, {**BASE, "train": {"lr": 0.1}}, "base.yaml")
    grid = write(tmp_path, content, "grid.yaml")
    result, output, created = invoke(tmp_path, [command, str(grid)])
    assert result.exit_code == 2, output
    for part in expected:
        assert part.format(grid=grid, base=base_file.resolve()) in output, output
    assert created == []  # no store, no runs folder


# --------------------------------------------------------------------------------------------------------
# Sweep files: lgrpo-bench sweep SWEEP.yaml
# --------------------------------------------------------------------------------------------------------
def write_sweep(tmp_path: Path, text: str | None = None, **fields) -> Path:
    if text is not None:
        return write(tmp_path, text, "sweep.yaml")
    sweep = {
        "name": "bad-study",
        "base": {**BASE, "tracking": {"experiment": "sweep-test"}},
        "space": {"algorithm.lam_init": {"float": [-1.0, 1.0]}, "train.learning_rate": {"float": [1e-5, 1e-3], "log": True}},
        "objective": {"metric": "train/reward_mean", "direction": "maximize"},
        "n_trials": 4,
    }
    sweep.update(fields)
    return write(tmp_path, sweep, "sweep.yaml")


BAD_SWEEPS = [
    ("unknown top-level key", {"n_trails": 3}, "n_trails: unknown key"),
    ("unknown space key", {"space": {"algorithm.lam_inti": {"float": [0, 1]}}}, "space.algorithm.lam_inti: not a run config key (did you mean algorithm.lam_init?)"),
    ("empty range", {"space": {"algorithm.lam_init": {"float": [1.0, 1.0]}}}, "space.algorithm.lam_init: empty range [1.0, 1.0]"),
    ("inverted range", {"space": {"train.max_steps": {"int": [5, 2]}}}, "space.train.max_steps: empty range [5, 2]"),
    ("log range with a zero bound", {"space": {"train.learning_rate": {"float": [0.0, 1e-3], "log": True}}},
     "space.train.learning_rate: log range [0.0, 0.001]: the low bound must be > 0"),
    ("log range with a negative bound", {"space": {"algorithm.lam_init": {"float": [-1.0, 1.0], "log": True}}},
     "the low bound must be > 0"),
    ("two kinds at once", {"space": {"algorithm.r": {"float": [0.1, 0.2], "categorical": [0.1]}}},
     "give exactly one of float, int, categorical (got float, categorical)"),
    ("empty categorical", {"space": {"algorithm.r": {"categorical": []}}}, "categorical: empty list"),
    ("duplicate key", "name: s\nn_trials: 3\nn_trials: 4\n", "(line 3): duplicate key 'n_trials' (first given on line 2)"),
    ("value the run config refuses", {"space": {"algorithm.r": {"categorical": [0.1, 0.6]}}},
     "space.algorithm.r: value 0.6 is refused by the run config: algorithm.r=0.6 is too large"),
    ("wrong type", {"space": {"algorithm.name": {"float": [0.0, 1.0]}}}, "space.algorithm.name: value 0.0 is refused"),
    ("section instead of key", {"space": {"train": {"float": [0.0, 1.0]}}}, "space.train: 'train' is a section"),
    ("empty space", {"space": {}}, "space: empty"),
    ("objective benchmark not evaluated", {"objective": {"metric": "eval/math500/acc"}},
     "objective.metric: 'eval/math500/acc' needs benchmark 'math500' in eval.benchmarks"),
    ("objective not a metric path", {"objective": {"metric": "accuracy"}}, "must start with eval/ or train/"),
    ("zero trials", {"n_trials": 0}, "n_trials: Input should be greater than or equal to 1"),
    ("grid sampler on a continuous range", {"sampler": {"kind": "grid"}}, "the grid sampler needs discrete values"),
    ("pruner on an eval metric", {"pruner": {"kind": "median", "metric": "eval/arith/acc"}}, "use a train/ metric"),
    ("storage not a URL", {"storage": "optuna.db"}, "storage: 'optuna.db' is not an RDB URL"),
    ("in-memory sqlite", {"storage": "sqlite:///:memory:"}, "a sweep needs a file that outlives the process"),
    ("heartbeat slower than grace", {"heartbeat_interval": 10, "grace_period": 5}, "grace_period (5 s) must exceed"),
    ("unknown executor", {"executor": {"kind": "kubernetes"}}, "executor"),
    # issue 22: every float finite, counts at least what the runtime needs, training data that trains
    ("infinite range bound", {"space": {"train.learning_rate": {"float": [1e-5, INF], "log": True}}},
     "space.train.learning_rate.float[1]: must be a finite number (got inf)"),
    ("NaN step", {"space": {"algorithm.lam_init": {"float": [-1.0, 1.0], "step": NAN}}},
     "space.algorithm.lam_init.step: must be a finite number (got nan)"),
    ("NaN category", {"space": {"algorithm.lam_init": {"categorical": [0.0, NAN]}}},
     "space.algorithm.lam_init.categorical[1]: must be a finite number (got nan)"),
    ("category the string nan", {"space": {"algorithm.lam_init": {"categorical": [0.0, "nan"]}}},
     "space.algorithm.lam_init: value 'nan' is refused by the run config: must be a finite number"),
    ("infinite override", {"overrides": {"train.learning_rate": INF}},
     "overrides.train.learning_rate: must be a finite number (got inf)"),
    ("infinite value in the base", {"base": {**BASE, "task": {"format_reward_weight": -INF}}},
     "base.task.format_reward_weight: must be a finite number (got -inf)"),
    ("infinite objective setting", {"objective": {"metric": "train/reward_mean", "last_k": INF}},
     "objective.last_k: must be a finite number (got inf)"),
    ("negative sampler seed", {"sampler": {"kind": "tpe", "seed": -1}},
     "sampler.seed: Input should be greater than or equal to 0 (got -1)"),
    ("zero warm-start steps in the space", {"space": {"model.warm_start_steps": {"int": [0, 10]}}},
     "space.model.warm_start_steps: value 0 is refused by the run config: Input should be greater than or equal to 1"),
    ("empty math data file", {"base": {**BASE, "task": {"name": "math", "data": "./empty.jsonl"}}},
     "base: task.data: empty.jsonl holds 0 records, so training has no example"),
    ("levels that keep no record", {"base": {**BASE, "task": {"name": "math", "data": "./level1.jsonl", "levels": [5]}}},
     "base: task.levels: keeps 0 of the 3 records of level1.jsonl (level 1: 3)"),
]


@pytest.mark.parametrize(("case", "fields", "message"), BAD_SWEEPS, ids=[c[0] for c in BAD_SWEEPS])
def test_bad_sweep(tmp_path, monkeypatch, case, fields, message):
    monkeypatch.chdir(tmp_path)
    write_math_data(tmp_path)
    path = write_sweep(tmp_path, fields) if isinstance(fields, str) else write_sweep(tmp_path, **fields)
    result, output, created = invoke(tmp_path, ["sweep", str(path)])
    assert result.exit_code == 2, output
    assert str(path) in output and message in output, output
    assert created == []  # no optuna.db, no mlflow.db, no runs folder


def test_sqlite_sweep_storage_on_a_flagged_network_filesystem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("LGRPO_NETWORK_FS_PATHS", str(shared))
    path = write_sweep(tmp_path, storage=f"sqlite:///{shared / 'optuna.db'}")
    result, output, created = invoke(tmp_path, ["sweep", str(path)])
    assert result.exit_code == 2
    assert f"{path}: storage: SQLite file {shared / 'optuna.db'} is on a network filesystem (flagged)" in output
    assert "journal:PATH" in output and created == [] and os.listdir(shared) == []


# --------------------------------------------------------------------------------------------------------
# Command-line arguments
# --------------------------------------------------------------------------------------------------------
BAD_ARGUMENTS = [
    ("--set without =", ["train", "{run}", "--set", "train.max_steps"], "--set 'train.max_steps': expected KEY=VALUE"),
    ("--set unknown key", ["train", "{run}", "--set", "train.max_step=3"], "--set train.max_step: unknown key (did you mean max_steps?) in train"),
    ("--set unknown eval override key", ["config", "show", "{run}", "--set", "eval.overrides.gsm8k.max_token=9"],
     "--set eval.overrides.gsm8k.max_token: unknown key (did you mean max_tokens?)"),
    ("--set bad value", ["train", "{run}", "--set", "train.max_steps=-1"], "train.max_steps: Input should be greater than or equal to 1"),
    ("missing run file", ["train", "{tmp}/absent.yaml"], "absent.yaml: no such file"),
    ("missing grid file", ["run", "{tmp}/absent.yaml"], "absent.yaml: no such file"),
    ("eval: unknown benchmark", ["eval", "--model", "oracle:gold", "--benchmarks", "math5000", "--no-log"], "math5000"),
    ("eval: missing data file", ["eval", "--model", "oracle:gold", "--benchmarks", "aime24", "--data-dir", "{tmp}", "--no-log"],
     "aime24.jsonl"),
    ("eval: vLLM not installed", ["eval", "--model", "{tmp}", "--benchmarks", "arith", "--backend", "vllm", "--no-log"],
     "pip install -e \".[vllm]\""),
    ("report: unknown format", ["report", "--experiment", "x", "--format", "docx"], "docx"),
    ("sweep: show without a study", ["sweep", "show"], "give the study name"),
    ("sweep export without seeds", ["sweep", "export", "some-study"], "--seeds is required"),
    ("sweep export with non-integer seeds", ["sweep", "export", "some-study", "--seeds", "a,b", "-o", "{tmp}/best.yaml"],
     "expected comma-separated integers"),
    # issue 22: --set values obey the same rules as the file's
    ("--set the string inf", ["train", "{run}", "--set", "train.learning_rate=inf"],
     "{run}: train.learning_rate: must be a finite number (got 'inf')"),
    ("--set the string nan", ["config", "show", "{run}", "--set", "algorithm.lam_init=nan"],
     "{run}: algorithm.lam_init: must be a finite number (got 'nan')"),
    ("--set .inf", ["train", "{run}", "--set", "task.format_reward_weight=.inf"],
     "{run}: task.format_reward_weight: must be a finite number (got inf)"),
    ("--set .nan", ["config", "show", "{run}", "--set", "train.learning_rate=.nan"],
     "{run}: train.learning_rate: must be a finite number (got nan)"),
    ("--set zero warm-start steps", ["train", "{run}", "--set", "model.warm_start_steps=0"],
     "{run}: model.warm_start_steps: Input should be greater than or equal to 1 (got 0)"),
    ("--set an empty math data file", ["train", "{run}", "--set", "task.name=math", "--set", "task.data=./empty.jsonl"],
     "{run}: task.data: empty.jsonl holds 0 records, so training has no example"),
    ("--set levels that keep no record",
     ["config", "show", "{run}", "--set", "task.name=math", "--set", "task.data=./level1.jsonl", "--set", "task.levels=[4, 5]"],
     "{run}: task.levels: keeps 0 of the 3 records of level1.jsonl (level 1: 3), so training has no example"),
]


@pytest.mark.parametrize(("case", "args", "message"), BAD_ARGUMENTS, ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_arguments(tmp_path, monkeypatch, case, args, message):
    monkeypatch.chdir(tmp_path)
    write_math_data(tmp_path)
    run = write(tmp_path, BASE, "run.yaml")
    argv = [arg.format(run=run, tmp=tmp_path) for arg in args]
    result, output, created = invoke(tmp_path, argv)
    assert result.exit_code == 2, output
    assert message.format(run=run) in output, output
    assert created == []


def test_the_catalog_is_at_least_30_cases():
    cases = len(BAD_RUN_CONFIGS) + len(BAD_GRIDS) + len(BAD_SWEEPS) + 1 + len(BAD_ARGUMENTS)
    assert cases >= 30, cases


# --------------------------------------------------------------------------------------------------------
# Checked before anything starts: data files, grid size
# --------------------------------------------------------------------------------------------------------
def test_a_malformed_benchmark_file_is_found_by_plan_and_run_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "amc23.jsonl").write_text('{"id": "a", "problem": "1+1", "answer": "2"}\n{"id": "b", "problem": \n')
    grid = write(tmp_path, grid_text(base={**BASE, "eval": {"benchmarks": ["arith", "amc23"], "data_dir": str(data)}}),
                 "grid.yaml")
    for command in ("plan", "run"):
        result, output, created = invoke(tmp_path, [command, str(grid)])
        assert result.exit_code == 2, output
        assert f"{grid}: base.eval.benchmarks: amc23: {data / 'amc23.jsonl'}:2: not valid JSON" in output, output
        assert created == []
    (data / "amc23.jsonl").unlink()
    result, output, _ = invoke(tmp_path, ["plan", str(grid)])
    assert result.exit_code == 2 and f"amc23: the data folder {data} has no amc23.jsonl" in output, output


def test_max_points_is_a_limit_the_user_can_raise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = write(tmp_path, grid_text(axes={"algorithm.name": ["grpo", "dapo", "dr_grpo"], "train.seed": [0, 1, 2, 3]}),
                 "grid.yaml")
    result, output, created = invoke(tmp_path, ["plan", str(grid), "--max-points", "11"])
    assert result.exit_code == 2 and "make 12 points, above the limit of 11" in output and created == [], output
    result, output, _ = invoke(tmp_path, ["plan", str(grid), "--max-points", "12", "--json"])
    assert result.exit_code == 0, output
