"""Known-biased settings are refused at ``plan`` and ``run`` (issue 27 §2): TRL's vLLM importance-sampling correction
with truncated sampling (top_p < 1 or top_k > 0) scales every ratio by the kept mass (TRL #6789); exit 2, the file
and the keys named, nothing created."""

from __future__ import annotations

import pytest

from lgrpo_bench.algorithms.presets import algorithm_of
from lgrpo_bench.config import RunConfig
from lgrpo_bench.runs.resolve import biased_sampling_problems
from lgrpo_bench.training.arguments import grpo_config
from test_bad_input import BASE, grid_text, invoke, write

VLLM = {**BASE, "train": {"max_steps": 3, "use_vllm": True}}


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize(("where", "grid", "named"), [
    ("base top_p", grid_text(base={**VLLM, "train": {**VLLM["train"], "top_p": 0.95}}), ["train.top_p=0.95"]),
    ("axis top_k", grid_text(base=VLLM, axes={"train.top_k": [0, 20]}), ["train.top_k=20"]),
    ("both", grid_text(base={**VLLM, "train": {**VLLM["train"], "top_p": 0.9, "top_k": 50}}),
     ["train.top_p=0.9 and train.top_k=50"]),
])
def test_is_correction_with_truncated_sampling_is_refused(tmp_path, monkeypatch, command, where, grid, named):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, grid, "grid.yaml")
    result, output, created = invoke(tmp_path, [command, str(path)])
    assert result.exit_code == 2, output
    assert f"{path}: " in output and "train.vllm_importance_sampling_correction" in output, output
    for part in [*named, "TRL #6789", "train.vllm_importance_sampling_correction: false"]:
        assert part in output, output
    assert created == []  # no store, no runs folder


@pytest.mark.parametrize("train", [
    {"use_vllm": True, "top_p": 1.0, "top_k": 0},                                          # untruncated
    {"use_vllm": True, "top_p": 0.95, "vllm_importance_sampling_correction": False},     # correction off
    {"use_vllm": False, "top_p": 0.95, "top_k": 20},                                       # no vLLM: no correction
])
def test_unbiased_combinations_pass(train):
    assert biased_sampling_problems(RunConfig.model_validate({**BASE, "train": train})) == []


def test_a_plan_of_an_unbiased_grid_succeeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, grid_text(base={**VLLM, "train": {**VLLM["train"], "top_p": 0.95,
                                                             "vllm_importance_sampling_correction": False}}), "grid.yaml")
    result, output, _ = invoke(tmp_path, ["plan", str(path)])
    assert result.exit_code == 0, output


def test_the_correction_enters_the_run_id_only_when_turned_off():
    """Runs from before the setting existed had it on: their ids stay (tests/test_run_ids_pinned.py); off is another run."""
    from lgrpo_bench.runs.resolve import build_run, run_id

    on, off, unset = (build_run({**VLLM, "train": {**VLLM["train"], **extra}}) for extra in (
        {"vllm_importance_sampling_correction": True}, {"vllm_importance_sampling_correction": False}, {}))
    assert run_id(on) == run_id(unset) != run_id(off)


def test_the_setting_reaches_trl(tmp_path):
    for value in (True, False):
        config = RunConfig.model_validate({**BASE, "train": {"vllm_importance_sampling_correction": value}})
        args = grpo_config(config, tmp_path, algorithm=algorithm_of(config), cuda=False)
        assert args.vllm_importance_sampling_correction is value
