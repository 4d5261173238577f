"""A run's algorithm is resolved once, when the run is prepared: ``config.yaml`` states it in full (every axis value
and hyperparameter), and training reads that back as it is (``stored_algorithm``), resolving nothing again."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lgrpo_bench.algorithms import presets
from lgrpo_bench.algorithms.presets import AlgorithmError, algorithm_of, stored_algorithm
from lgrpo_bench.config import dump_yaml, read_yaml
from lgrpo_bench.runs.resolve import build_run, prepare_run, read_resolved, run_id

PACKAGE = Path(__file__).resolve().parent.parent / "lgrpo_bench"


def _config(tmp_path: Path, algorithm: dict, **train):
    return build_run({"algorithm": algorithm, "train": {"max_completion_length": 40, **train},
                      "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "runs_dir": str(tmp_path / "runs")}})


@pytest.fixture
def no_resolution(monkeypatch):
    """Resolving an algorithm section raises from here on (and counts the tries): the planted tripwire."""
    calls = []

    def refuse(section, **_):
        calls.append(dict(section))
        raise AssertionError(f"the algorithm was resolved again: {dict(section)}")

    presets._resolve_cached.cache_clear()
    monkeypatch.setattr(presets, "resolve_algorithm", refuse)
    yield calls
    presets._resolve_cached.cache_clear()


def test_config_yaml_states_the_resolved_algorithm_and_keeps_the_run_id(tmp_path):
    config = _config(tmp_path, {"name": "dapo_full", "max_generation_batches": 3})
    prepared = prepare_run(config)
    stored = read_yaml(prepared.layout.config_file)["algorithm"]
    used = {
        "name": "dapo_full", "aggregation": "token_mean", "surrogate": "clip", "advantage": "group_std",
        "group_filter": "resample", "epsilon_low": 0.2, "epsilon_high": 0.28, "max_generation_batches": 3,
        "mask_truncated_completions": True, "overlong_penalty": True, "overlong_buffer_tokens": 8,  # 20 % of 40
    }
    assert {key: stored[key] for key in used} == used
    assert {key: value for key, value in stored.items() if key not in used} == dict.fromkeys(
        set(presets.HYPERPARAMETERS) - set(used))  # λ's, cispo's, sapo's, ...: unused, None
    assert prepared.run_id == run_id(config) == run_id(read_resolved(prepared.layout.root)[0])


def test_a_frozen_lambda_is_stored_without_its_unused_rate(tmp_path):
    prepared = prepare_run(_config(tmp_path, {"name": "cispo", "aggregation": "lambda", "lambda_learnable": False,
                                              "lambda_lr": 0.5}))
    stored = read_yaml(prepared.layout.config_file)["algorithm"]
    assert {k: stored[k] for k in ("aggregation", "surrogate", "r", "lam_init", "lambda_learnable", "lambda_lr",
                                    "lambda_optimizer", "cispo_epsilon_max", "epsilon_low")} == {
        "aggregation": "lambda", "surrogate": "cispo", "r": 1 / 9, "lam_init": 0.0, "lambda_learnable": False,
        "lambda_lr": None, "lambda_optimizer": None, "cispo_epsilon_max": 5.0, "epsilon_low": None}


@pytest.mark.parametrize("algorithm", [
    {"name": "lambda_grpo"}, {"name": "gspo", "aggregation": "token_mean"}, {"name": "sapo"}, {"name": "dapo_full"},
    {"name": "grpo", "surrogate": "gmpo", "group_filter": "drop", "advantage": "batch_std"},
    {"name": "cispo", "aggregation": "lambda", "lambda_learnable": False},
])
def test_training_reads_the_stored_algorithm_without_resolving_it(tmp_path, no_resolution, algorithm):
    """What training gets from a prepared run's folder equals what resolving gave (notes included), with every
    resolution refused once the run is prepared: the run folder is read as it is."""
    with pytest.MonkeyPatch.context() as allow:  # loading and preparing are where an algorithm is resolved
        allow.setattr(presets, "resolve_algorithm", _original_resolve)
        config = _config(tmp_path, algorithm, num_iterations=2)
        expected = algorithm_of(config)
        folder = prepare_run(config).layout.root
    presets._resolve_cached.cache_clear()
    read_back, _ = read_resolved(folder)
    assert stored_algorithm(read_back) == expected and stored_algorithm(read_back).notes == expected.notes
    assert no_resolution == []


_original_resolve = presets.resolve_algorithm


def test_an_unprepared_config_is_refused_by_training_with_the_reason(tmp_path):
    with pytest.raises(AlgorithmError, match=r"not resolved \(aggregation, surrogate, advantage, group_filter, .*prepare_run"):
        stored_algorithm(_config(tmp_path, {"name": "dapo"}))


def test_a_folder_prepared_before_the_resolved_section_is_resolved_on_reading(tmp_path):
    """A config.yaml written before config.yaml stated the resolved algorithm (only ``name``) still runs, with the
    same run id."""
    config = _config(tmp_path, {"name": "sapo", "sapo_temperature_neg": 1.2})
    prepared = prepare_run(config)
    prepared.layout.config_file.write_text(dump_yaml(config))  # the old form: the section as written
    assert read_yaml(prepared.layout.config_file)["algorithm"]["surrogate"] is None
    read_back, rid = read_resolved(prepared.layout.root)
    assert rid == prepared.run_id == run_id(read_back)
    assert stored_algorithm(read_back) == algorithm_of(config)


def test_training_never_calls_the_resolution():
    """No module of training/ calls or imports ``algorithm_of``, ``resolve_algorithm`` or ``preset_algorithm``."""
    names = {"algorithm_of", "resolve_algorithm", "preset_algorithm", "_resolve_cached"}
    offenders = []
    for path in sorted((PACKAGE / "training").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            used = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None)
            imported = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            if used in names or names & set(imported):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert offenders == [], f"training resolves the algorithm again: {offenders}"


@pytest.mark.slow
def test_a_real_training_step_resolves_nothing(warm_tiny, tmp_path, monkeypatch, no_resolution):
    """train() of a prepared run (one optimizer step of tiny-s, the real TRL trainer) with every resolution refused."""
    from lgrpo_bench.training.run import train

    monkeypatch.setenv("RANK", "1")  # no MLflow run: the training path alone (as a non-main rank trains)
    with pytest.MonkeyPatch.context() as allow:
        allow.setattr(presets, "resolve_algorithm", _original_resolve)
        presets._resolve_cached.cache_clear()
        prepared = prepare_run(build_run({
            "model": {"name": str(warm_tiny.path)},
            "task": {"name": "arith", "num_train_problems": 64, "num_heldout_problems": 16},
            "algorithm": {"name": "lambda_grpo", "r": 0.3},
            "train": {"max_steps": 1, "num_generations": 4, "prompts_per_step": 2, "max_completion_length": 24,
                      "heldout_every": 0, "save_every": 0, "samples_every": 0},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "runs_dir": str(tmp_path / "runs")}}))
    presets._resolve_cached.cache_clear()
    config, rid = read_resolved(prepared.layout.root)
    result = train(config, rid, None)
    assert result.health.learned and no_resolution == []
