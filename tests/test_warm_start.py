"""The warm start's band check, its stopping rule, its data splits, and the warning and tags of an out-of-band start."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
import torch

from lgrpo_bench.models.presets import (
    TINY_PRESETS,
    WARM_START_BAND,
    StopRule,
    WarmStartBand,
    warm_start_band_check,
)
from lgrpo_bench.models.sft import StopDecision, run_sft, sft_problems, stop_decision
from lgrpo_bench.tasks.arith import (
    ARITH_N_TEST,
    ARITH_N_VALIDATION,
    ARITH_SPLIT_SEED,
    train_test_split,
    validation_problems,
)

RULE = StopRule(target_low=0.35, target_high=0.55, check_every=25, first_check=100)


# ------------------------------------------------------------------------------------------------- band


def test_band_is_the_documented_one_and_refuses_swapped_bounds():
    assert (WARM_START_BAND.low, WARM_START_BAND.high) == (0.25, 0.65)
    assert str(WARM_START_BAND) == "0.25–0.65"
    with pytest.raises(ValueError, match="low < high"):
        WarmStartBand(0.65, 0.25)


@pytest.mark.parametrize(("acc", "in_band"), [
    (0.25, True), (0.65, True), (0.43, True),          # both bounds belong to the band
    (0.2498, False), (0.6502, False), (0.056, False), (0.9, False), (math.nan, False),
])
def test_band_check(acc, in_band):
    verdict = warm_start_band_check("tiny-s", 3, acc)
    assert verdict.in_band is in_band
    assert (verdict.warning is None) == in_band
    assert (verdict.preset, verdict.seed, verdict.band) == ("tiny-s", 3, WARM_START_BAND)


def test_band_check_honours_another_band():
    assert warm_start_band_check("tiny-m", 0, 0.2, WarmStartBand(0.1, 0.3)).in_band
    assert not warm_start_band_check("tiny-m", 0, 0.31, WarmStartBand(0.1, 0.3)).in_band


def test_warning_names_preset_seed_accuracy_band_and_what_to_do():
    low = warm_start_band_check("tiny-s", 2, 0.056).warning
    assert low == ("warning: warm start tiny-s seed 2 has greedy held-out accuracy 0.056, outside its band "
                   "0.25–0.65: too little RL signal; try another model.warm_start_seed or a larger "
                   "model.warm_start_steps (the SFT step budget)")
    high = warm_start_band_check("tiny-l", 4, 0.812).warning
    assert high.startswith("warning: warm start tiny-l seed 4 has greedy held-out accuracy 0.812, outside its band")
    assert "little room left for RL" in high and "model.warm_start_seed" in high
    assert "\n" not in low + high


# -------------------------------------------------------------------------------------------- stop rule


def test_check_steps():
    assert [s for s in range(1, 201) if RULE.is_check_step(s, 1000)] == [100, 125, 150, 175, 200]
    assert RULE.is_check_step(1000, 1000) and RULE.is_check_step(1010, 1010)
    assert [s for s in range(1, 21) if RULE.is_check_step(s, 20)] == [20]  # a budget below the first check


@pytest.mark.parametrize(("checks", "expected"), [
    ([(100, 0.02), (125, 0.10)], None),                                          # below the target: train on
    ([(100, 0.02), (125, 0.10), (150, 0.40)], StopDecision(150, 0.40, "in_target")),
    ([(100, 0.10), (125, 0.35)], StopDecision(125, 0.35, "in_target")),            # the bounds are in the target
    ([(100, 0.10), (125, 0.55)], StopDecision(125, 0.55, "in_target")),
    ([(100, 0.10), (125, 0.30), (150, 0.62)], StopDecision(125, 0.30, "overshoot")),  # 0.05 from it beats 0.07
    ([(100, 0.10), (125, 0.30), (150, 0.57)], StopDecision(150, 0.57, "overshoot")),  # 0.02 beats 0.05
    ([(100, 0.10), (125, 0.20), (1000, 0.15)], StopDecision(125, 0.20, "budget")),  # budget spent: the closest
    ([(1000, 0.0)], StopDecision(1000, 0.0, "budget")),
    ([], None),
])
def test_stop_decision_on_hand_made_trajectories(checks, expected):
    assert stop_decision(checks, RULE, max_steps=1000) == expected


def test_stop_decision_tie_goes_to_the_later_check():
    rule = StopRule(target_low=0.25, target_high=0.5)  # binary fractions: the two distances are exactly equal
    assert stop_decision([(100, 0.125), (125, 0.625)], rule, 1000) == StopDecision(125, 0.625, "overshoot")
    assert stop_decision([(100, 0.125), (125, 0.0), (150, 0.125)], rule, 150) == StopDecision(150, 0.125, "budget")


def test_stop_rule_refuses_an_inverted_target():
    with pytest.raises(ValueError, match="target_low <= target_high"):
        StopRule(target_low=0.55, target_high=0.35)


def test_stop_targets_lie_inside_the_band():
    for spec in TINY_PRESETS.values():
        assert WARM_START_BAND.low < spec.stop.target_low <= spec.stop.target_high < WARM_START_BAND.high


# ------------------------------------------------------------------------------------------------- data


def test_validation_split_is_disjoint_from_the_test_split_and_from_every_sft_stream():
    _, test = train_test_split(ARITH_SPLIT_SEED, 0, ARITH_N_TEST)
    validation = validation_problems()
    test_set, validation_set = {p.problem for p in test}, {p.problem for p in validation}
    assert len(validation) == len(validation_set) == ARITH_N_VALIDATION
    assert not test_set & validation_set
    assert validation_problems(50) == validation[:50]  # a rule's validation_size takes a prefix
    for seed in range(3):
        stream = {p.problem for p in sft_problems(TINY_PRESETS["tiny-s"], 20_000, seed)}
        assert len(stream) > 8_000  # covers most of the 8,100 two-digit problems: an overlap would show
        assert not stream & (test_set | validation_set)


# ----------------------------------------------------------------------------------------- torch-free import


def test_presets_import_without_torch():
    code = ("import sys, lgrpo_bench.models as m, lgrpo_bench.models.presets as p; "
            "assert p.TINY_PRESETS and m.TINY_PRESETS and m.QWEN_PRESETS and m.WARM_START_BAND; "
            "print(sorted(k for k in ('torch', 'transformers') if k in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -------------------------------------------------------------------------------------------- SFT loop


def _tiny_s(**stop):
    rule = dataclasses.replace(TINY_PRESETS["tiny-s"].stop, **stop)
    return dataclasses.replace(TINY_PRESETS["tiny-s"], stop=rule)


def test_sft_loop_keeps_the_weights_of_the_chosen_check():
    """Scripted validation accuracies drive the real loop to an overshoot: the weights of the kept check
    (step 10) are restored, bit-identical to a run whose budget ends at step 10."""
    from lgrpo_bench.models.heldout import torch_threads
    from lgrpo_bench.models.tiny import make_tiny_model
    from lgrpo_bench.models.tokenizer import make_tokenizer

    spec = _tiny_s(target_low=0.35, target_high=0.55, check_every=5, first_check=5)
    tokenizer = make_tokenizer()
    scripted = iter([0.10, 0.30, 0.62])  # checks at steps 5, 10, 15 → overshoot, keep step 10
    model = make_tiny_model(spec, tokenizer, seed=0)
    with torch_threads(1):  # as the build does (bit-reproducible)
        outcome = run_sft(model, tokenizer, spec, 40, 0, validate=lambda: next(scripted))
    assert outcome.checks == [(5, 0.10), (10, 0.30), (15, 0.62)]
    assert outcome.decision == StopDecision(10, 0.30, "overshoot") and outcome.steps_run == 15

    reference = make_tiny_model(spec, tokenizer, seed=0)
    with torch_threads(1):
        budget = run_sft(reference, tokenizer, spec, 10, 0, validate=iter([0.0, 0.0]).__next__)
    assert budget.decision == StopDecision(10, 0.0, "budget") and budget.losses == outcome.losses[:10]
    for (name, kept), (_, wanted) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(kept, wanted), name


def test_reduced_build_stops_by_the_rule(tmp_path):
    """A real build with real validation: it stops at the first check in the target, before its budget, and
    the saved model scores there on the validation problems what the rule saw."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lgrpo_bench.models.heldout import greedy_accuracy
    from lgrpo_bench.models.tiny import build_tiny

    # the first right answer of 100 comes within ~50-100 steps; the rule must stop there, well before the budget
    spec = _tiny_s(target_low=0.01, target_high=1.0, check_every=10, first_check=50, validation_size=100)
    budget = 300
    result = build_tiny(spec, cache_dir=tmp_path, seed=1, sft_steps=budget, eval_problems=20, sampled_prompts=4)
    m = result.metrics
    checks = [tuple(check) for check in m["validation_checks"]]
    assert m["stop_reason"] == "in_target" and m["sft_steps"] == m["sft_steps_run"] == checks[-1][0] < budget
    assert [step for step, _ in checks] == list(range(50, checks[-1][0] + 1, 10))
    assert all(acc < 0.01 for _, acc in checks[:-1]) and checks[-1][1] >= 0.01
    assert stop_decision(checks, spec.stop, budget) == StopDecision(m["sft_steps"], m["validation_acc"], "in_target")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(result.path), AutoTokenizer.from_pretrained(result.path)
    assert greedy_accuracy(model, tokenizer, validation_problems(100))["acc"] == m["validation_acc"]


# ------------------------------------------------------------------------------------ warning and tags


def test_out_of_band_start_warns_once_and_is_tagged(tmp_path):
    """A 1-step build lands far below the band: one warning line (fresh and cached), and the warm-start run
    and the train runs built on it carry in_band=false and the accuracy."""
    from lgrpo_bench import tracking as t
    from lgrpo_bench.tracking.schema import TAG_WARM_START_GREEDY_ACC, TAG_WARM_START_IN_BAND
    from lgrpo_bench.models.tiny import build_tiny
    from lgrpo_bench.training.run import log_warm_start, warm_start_tags

    spec = _tiny_s(validation_size=8)
    lines: list[str] = []
    build = build_tiny(spec, cache_dir=tmp_path / "cache", seed=5, sft_steps=1, eval_problems=16, sampled_prompts=2,
                       emit=lines.append)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [warm_start_band_check("tiny-s", 5, build.metrics["greedy_acc"]).warning]
    assert "tiny-s seed 5" in warnings[0] and "0.25–0.65" in warnings[0]
    assert not build.band.in_band

    again: list[str] = []
    cached = build_tiny(spec, cache_dir=tmp_path / "cache", seed=5, sft_steps=1, eval_problems=16, sampled_prompts=2,
                        emit=again.append)
    assert cached.cached and again == warnings  # a cached out-of-band start still warns, once

    client = t.open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = t.get_or_create_experiment(client, "warm")
    log_warm_start(client, experiment_id, "tiny-s", build, tmp_path / "runs")
    (run,) = client.search_runs([experiment_id])
    acc = build.metrics["greedy_acc"]
    assert run.data.tags[TAG_WARM_START_IN_BAND] == "false"
    assert float(run.data.tags[TAG_WARM_START_GREEDY_ACC]) == pytest.approx(acc, abs=1e-4)
    assert run.data.tags[t.TAG_HARDWARE] == build.metrics["provenance"][t.TAG_HARDWARE]  # the machine that built it

    tags = warm_start_tags(build)  # what the train runs resting on the build are tagged with
    assert (tags[TAG_WARM_START_IN_BAND], tags[TAG_WARM_START_GREEDY_ACC]) == (
        "false", run.data.tags[TAG_WARM_START_GREEDY_ACC])
