"""The design space as config: presets expand to four axes, overrides compose, nonsense is refused with its reason,
warned-about combinations carry a note, the run id is the resolved algorithm, grids cross the axes; no torch needed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from lgrpo_bench.algorithms.presets import (
    AXES,
    PRESETS,
    AlgorithmError,
    preset_algorithm,
    resolve_algorithm,
    trl_equivalent,
)
from lgrpo_bench.algorithms.presets import algorithm_of
from lgrpo_bench.config import ConfigError, identity_payload
from lgrpo_bench.runs.resolve import build_run as build_run_config
from lgrpo_bench.runs.resolve import load_grid, run_id

REPO = Path(__file__).resolve().parent.parent


def test_presets_module_and_config_checks_do_not_import_torch():
    code = ("import sys, lgrpo_bench.algorithms.presets, lgrpo_bench.algorithms\n"
            "from lgrpo_bench.runs.resolve import build_run as build_run_config, run_id\n"
            "config = build_run_config({'algorithm': {'name': 'cispo', 'aggregation': 'lambda'}})\n"
            "run_id(config)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# preset -> (aggregation, surrogate, advantage, group_filter, hyperparameters that must be set)
EXPANSIONS = {
    "grpo": ("seq_mean_token_mean", "clip", "group_std", "none", {"epsilon_low": 0.2, "epsilon_high": 0.2}),
    "dapo": ("token_mean", "clip", "group_std", "none", {"epsilon_low": 0.2, "epsilon_high": 0.2}),
    "dr_grpo": ("constant", "clip", "group_mean", "none", {"epsilon_low": 0.2, "epsilon_high": 0.2}),
    "lambda_grpo": ("lambda", "clip", "group_std", "none", {"r": 1 / 9, "lam_init": 0.0, "lambda_lr": 1e-2,
                                                            "lambda_learnable": True, "lambda_optimizer": "adam"}),
    "dapo_full": ("token_mean", "clip", "group_std", "resample", {"epsilon_high": 0.28, "mask_truncated_completions": True,
                                                                  "overlong_penalty": True, "overlong_buffer_tokens": 8,
                                                                  "max_generation_batches": 10}),
    "gspo": ("seq_mean_token_mean", "gspo", "group_std", "none", {"epsilon_low": 3e-4, "epsilon_high": 4e-4}),
    "cispo": ("token_mean", "cispo", "group_std", "none", {"cispo_epsilon_max": 5.0}),
    "sapo": ("seq_mean_token_mean", "sapo", "group_std", "none", {"sapo_temperature_pos": 1.0, "sapo_temperature_neg": 1.05}),
    "bnpo": ("local_token_mean", "clip", "group_std", "none", {"epsilon_low": 0.2}),
}


@pytest.mark.parametrize("name", list(EXPANSIONS))
def test_each_preset_expands_to_its_axes_and_hyperparameters(name):
    aggregation, surrogate, advantage, group_filter, hyper = EXPANSIONS[name]
    resolved = preset_algorithm(name, num_generations=8, max_completion_length=40)
    assert resolved.axes == {"aggregation": aggregation, "surrogate": surrogate, "advantage": advantage,
                             "group_filter": group_filter}
    for key, value in hyper.items():
        assert getattr(resolved, key) == pytest.approx(value), key
    # hyperparameters the axes do not use are None, so they never split a run id
    if surrogate not in ("clip", "gspo"):
        assert resolved.epsilon_low is None and resolved.epsilon_high is None
    if aggregation != "lambda":
        assert resolved.r is None and resolved.lambda_lr is None and resolved.lambda_optimizer is None
    if group_filter != "resample":
        assert resolved.max_generation_batches is None


def test_every_preset_is_listed_and_every_axis_value_used_by_some_config():
    assert set(PRESETS) == set(EXPANSIONS)
    assert set(AXES) == {"aggregation", "surrogate", "advantage", "group_filter"}


def test_overrides_compose_with_a_preset():
    lambda_cispo = preset_algorithm("cispo", aggregation="lambda", lam_init=0.5, lambda_optimizer="sgd")
    assert lambda_cispo.axes == {"aggregation": "lambda", "surrogate": "cispo", "advantage": "group_std", "group_filter": "none"}
    assert (lambda_cispo.lam_init, lambda_cispo.lambda_optimizer, lambda_cispo.cispo_epsilon_max) == (0.5, "sgd", 5.0)
    filtered = preset_algorithm("gspo", group_filter="drop", advantage="batch_std", epsilon_high=1e-3)
    assert (filtered.group_filter, filtered.advantage, filtered.epsilon_low, filtered.epsilon_high) == ("drop", "batch_std", 3e-4, 1e-3)
    frozen = preset_algorithm("lambda_grpo", lambda_learnable=False, lam_init=0.7)
    assert frozen.lambda_learnable is False and frozen.lambda_lr is None and frozen.lambda_optimizer is None


@pytest.mark.parametrize("section, key, message", [
    ({"name": "ppo"}, "algorithm.name", "unknown algorithm 'ppo': choose one of grpo, dapo, dr_grpo, lambda_grpo, dapo_full, gspo"),
    ({"surrogate": "ppo"}, "algorithm.surrogate", "unknown surrogate 'ppo': choose one of clip, cispo, sapo, gspo"),
    ({"aggregation": "sum"}, "algorithm.aggregation", "unknown aggregation 'sum': choose one of seq_mean_token_mean"),
    ({"advantage": "rloo"}, "algorithm.advantage", "unknown advantage 'rloo'"),
    ({"group_filter": "all"}, "algorithm.group_filter", "unknown group_filter 'all': choose one of none, drop, resample"),
    ({"name": "lambda_grpo", "r": 0.4}, None, "algorithm.r=0.4 is too large for train.num_generations=8"),
    ({"name": "grpo", "aggregation": "lambda", "r": 0.4}, None, "algorithm.r=0.4 is too large"),
    ({"name": "cispo", "cispo_epsilon_max": 0.2}, None, "algorithm.cispo_epsilon_max=0.2 caps the importance weight below 1"),
    ({"name": "dapo_full", "overlong_buffer_tokens": 41}, None, "overlong_buffer_tokens=41 is longer than train.max_completion_length=40"),
])
def test_nonsense_is_refused_with_the_reason(section, key, message):
    with pytest.raises(AlgorithmError) as info:
        resolve_algorithm(section, num_generations=8, max_completion_length=40)
    assert message in str(info.value) and info.value.key == key


def test_unused_options_are_ignored_not_refused():
    # r would be too large for λ, but grpo has no λ: ignored (a grid crossing presets with a λ setting stays valid)
    assert preset_algorithm("grpo", r=0.9, num_generations=8).r is None
    assert preset_algorithm("sapo", epsilon_high=0.28).epsilon_high is None
    assert preset_algorithm("dapo", max_generation_batches=3).max_generation_batches is None


def test_a_frozen_lambdas_rate_and_optimizer_are_unused_and_never_split_a_run_id():
    frozen = [preset_algorithm("lambda_grpo", lambda_learnable=False, lam_init=1.0, lambda_lr=lr, lambda_optimizer=opt)
              for lr, opt in ((0.5, "sgd"), (0.01, "adam"))]
    assert [(a.lambda_lr, a.lambda_optimizer, a.lam_init, a.lambda_learnable) for a in frozen] == [(None, None, 1.0, False)] * 2
    assert frozen[0].identity() == frozen[1].identity()
    learned = preset_algorithm("lambda_grpo", lambda_lr=0.5, lambda_optimizer="sgd")
    assert (learned.lambda_lr, learned.lambda_optimizer) == (0.5, "sgd")


def test_r_at_the_bound_is_refused_just_below_it_accepted():
    """1 + r·z reaches exactly 0 at r = 1/sqrt(G−1) (z = −sqrt(G−1) for one long and G−1 short completions)."""
    bound = 1 / math.sqrt(7)
    with pytest.raises(AlgorithmError, match="too large for train.num_generations=8"):
        preset_algorithm("lambda_grpo", r=bound, num_generations=8)
    assert preset_algorithm("lambda_grpo", r=bound * (1 - 1e-9), num_generations=8).r == bound * (1 - 1e-9)


def test_warned_combinations_are_allowed_with_a_note():
    notes = " ".join(preset_algorithm("gspo", aggregation="token_mean").notes)
    assert "each completion counts |o_i| times" in notes
    assert not any("|o_i| times" in n for n in preset_algorithm("gspo", num_iterations=2).notes)
    assert "ρ ≡ 1, so its gradient equals clip's" in " ".join(preset_algorithm("sapo").notes)
    assert not preset_algorithm("sapo", num_iterations=2).notes and not preset_algorithm("grpo").notes
    assert "depend on gradient_accumulation_steps" in " ".join(preset_algorithm("bnpo").notes)
    assert "the batch shrinks" in " ".join(preset_algorithm("dapo", group_filter="drop").notes)


def test_trl_equivalents():
    expected = {
        "grpo": ("grpo", "token", "group"), "dapo": ("dapo", "token", "group"), "dr_grpo": ("dr_grpo", "token", "none"),
        "bnpo": ("bnpo", "token", "group"), "cispo": ("cispo", "token", "group"), "sapo": ("sapo", "token", "group"),
        "gspo": ("grpo", "sequence", "group"),
    }
    for name, (loss_type, level, scale) in expected.items():
        options = trl_equivalent(preset_algorithm(name))
        assert (options["loss_type"], options["importance_sampling_level"], options["scale_rewards"]) == (loss_type, level, scale)
    assert trl_equivalent(preset_algorithm("cispo"))["epsilon_high"] == 5.0  # TRL reads CISPO's cap from epsilon_high
    assert trl_equivalent(preset_algorithm("dapo", advantage="batch_std"))["scale_rewards"] == "batch"
    for name, overrides in (("lambda_grpo", {}), ("dapo_full", {}), ("dapo", {"aggregation": "prompt_mean"}),
                            ("cispo", {"aggregation": "seq_mean_token_mean"}), ("dapo", {"group_filter": "drop"})):
        assert trl_equivalent(preset_algorithm(name, **overrides)) is None, (name, overrides)


# --- through the run config ---------------------------------------------------------------------------------------
def test_config_errors_name_the_key_and_the_value():
    with pytest.raises(ConfigError) as info:
        build_run_config({"algorithm": {"name": "cispo", "surrogate": "ppo"}}, "run.yaml")
    choices = ", ".join(AXES["surrogate"])  # every registered surrogate (clip, cispo, sapo, gspo, gmpo, ...)
    assert f"run.yaml: algorithm.surrogate: unknown surrogate 'ppo': choose one of {choices} (got 'ppo')" in str(info.value)
    with pytest.raises(ConfigError, match="algorithm.max_generation_batches: Input should be greater than or equal to 1"):
        build_run_config({"algorithm": {"name": "dapo_full", "max_generation_batches": 0}}, "run.yaml")
    with pytest.raises(ConfigError, match="lambda_optimizer: Input should be 'adam' or 'sgd'"):
        build_run_config({"algorithm": {"lambda_optimizer": "rmsprop"}}, "run.yaml")


def test_run_id_is_the_resolved_algorithm_plus_the_preset_name():
    def rid(algorithm: dict, **train) -> str:
        return run_id(build_run_config({"algorithm": algorithm, "train": train}))

    # the identity holds the axis values and the hyperparameters they use
    config = build_run_config({"algorithm": {"name": "cispo", "aggregation": "lambda"}})
    algorithm = identity_payload(config, algorithm_of(config).identity())["algorithm"]
    assert algorithm["aggregation"] == "lambda" and algorithm["cispo_epsilon_max"] == 5.0 and algorithm["r"] == pytest.approx(1 / 9)
    # a preset's own value given explicitly does not change the run id; an unused option does not either
    assert rid({"name": "dapo"}) == rid({"name": "dapo", "aggregation": "token_mean", "epsilon_high": 0.2})
    assert rid({"name": "grpo"}) == rid({"name": "grpo", "lambda_lr": 0.05, "r": 0.3, "cispo_epsilon_max": 9.0})
    # a value the run uses does
    assert rid({"name": "lambda_grpo"}) != rid({"name": "lambda_grpo", "lambda_optimizer": "sgd"})
    assert rid({"name": "dapo"}) != rid({"name": "dapo", "group_filter": "resample"})
    # the same training under two preset names: two run ids (the name is part of the identity, reports group by it)
    assert rid({"name": "dapo"}) != rid({"name": "grpo", "aggregation": "token_mean"})
    # the on-policy note is not part of the identity, num_iterations is (a train key)
    assert rid({"name": "sapo"}) != rid({"name": "sapo"}, num_iterations=2)


def test_design_space_grid_crosses_surrogate_and_aggregation():
    grid = load_grid(REPO / "experiments" / "design_space.yaml")
    combos = {(algorithm_of(p.config).surrogate, algorithm_of(p.config).aggregation,
               algorithm_of(p.config).group_filter) for p in grid.points}
    assert {(s, a, "none") for s in ("clip", "cispo", "sapo", "gspo")
            for a in ("seq_mean_token_mean", "token_mean", "lambda")} <= combos
    assert ("clip", "token_mean", "resample") in combos
    assert len(grid.points) == 26 and len({p.run_id for p in grid.points}) == 26


def test_issue_grid_of_surrogates_by_aggregations_is_valid(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(
        "name: axes\nbase: {algorithm: {name: dapo}, train: {num_iterations: 2}}\n"
        "axes:\n  algorithm.surrogate: [clip, cispo, sapo, gspo]\n  algorithm.aggregation: [token_mean, lambda]\n")
    assert len(load_grid(grid_file).points) == 8
    grid_file.write_text("name: bad\nbase: {algorithm: {name: cispo}}\naxes:\n  algorithm.cispo_epsilon_max: [5.0, 0.5]\n")
    with pytest.raises(ConfigError) as info:
        load_grid(grid_file)
    assert f"{grid_file}: axes: point algorithm.cispo_epsilon_max=0.5: algorithm.cispo_epsilon_max=0.5 caps" in str(info.value)


def test_algorithms_command_lists_presets_and_axes():
    result = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "algorithms"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in PRESETS:
        assert f"\n  {name} " in result.stdout
    for axis, choices in AXES.items():
        assert f"axis algorithm.{axis}:" in result.stdout
        for value in choices:
            assert f"\n  {value} " in result.stdout


def test_config_fields_follow_from_the_declared_hyperparameters():
    """Each axis value's hyperparameter is declared once, in its module; the ``algorithm.<name>`` field is built from
    that declaration: default None (= the preset's), the declared type, choices and bounds, and a description that
    says which values use it, what it means, its default and the presets that set another value. The section has no
    other field than the preset, the four axes, the declared hyperparameters and the three shaping options."""
    import typing

    from lgrpo_bench.algorithms.presets import AXIS_NAMES, HYPERPARAMETERS, PRESETS, VALUE_HYPERPARAMETERS
    from lgrpo_bench.config.schema import AlgorithmConfig

    shaping = {"mask_truncated_completions", "overlong_penalty", "overlong_buffer_tokens"}
    assert set(AlgorithmConfig.model_fields) == {"name", *AXIS_NAMES, *HYPERPARAMETERS, *shaping}
    for name, declared in HYPERPARAMETERS.items():
        field = AlgorithmConfig.model_fields[name]
        bounds = {k: v for m in field.metadata for k in ("gt", "ge", "lt", "le") if (v := getattr(m, k, None)) is not None}
        assert (field.default, bounds) == (None, declared.bounds), name
        kinds = set(typing.get_args(field.annotation)) - {type(None)}
        expected = typing.Literal[declared.choices] if declared.choices else declared.kind
        assert kinds == {expected}, name
        users = [value for (axis, value), hs in VALUE_HYPERPARAMETERS.items() for h in hs if h.name == name]
        assert field.description.startswith(f"{next(a for (a, v) in VALUE_HYPERPARAMETERS if v == users[0])} "
                                             f"{'/'.join(users)}: {declared.description}; None = "), field.description
        assert declared.describe_default() in field.description
        for preset in PRESETS.values():
            if name in preset.hyperparameters:
                assert f"{preset.name} {preset.hyperparameters[name]:g}" in field.description, (name, preset.name)
    assert "dapo_full 0.28" in AlgorithmConfig.model_fields["epsilon_high"].description
    assert AlgorithmConfig.model_fields["lambda_lr"].description.endswith("used only with lambda_learnable true")
    for axis in AXIS_NAMES:
        for value, summary in AXES[axis].items():
            assert f"{value} ({summary})" in AlgorithmConfig.model_fields[axis].description
