"""The paper grid's protocol (experiments/paper_qwen25.yaml) follows the field's anchors knowingly (issue 27 §6):
sampled evaluation with its temperature and top-p stated in the file (open-r1's 0.6 / 0.95 or SimpleRL-Zoo's
1.0 / 0.95) and at least 10 evaluation samples per problem on AIME24/25 and AMC23, greedy where the anchors are greedy
(MATH-500 and the other large benchmarks), AIME25 as the held-out check, and rollouts the biased-correction check
lets through."""

from __future__ import annotations

from pathlib import Path

import pytest

from lgrpo_bench.config.loading import read_yaml
from lgrpo_bench.evaluation.benchmarks import load_problems
from lgrpo_bench.evaluation.protocol import resolve_settings
from lgrpo_bench.runs.resolve import biased_sampling_problems, load_grid

GRID = Path(__file__).resolve().parent.parent / "experiments" / "paper_qwen25.yaml"
ANCHORS = {(0.6, 0.95): "open-r1 / lighteval", (1.0, 0.95): "SimpleRL-Zoo"}
SAMPLED = ("aime24", "aime25", "amc23")
GREEDY = ("math500", "minerva_math", "olympiadbench", "gsm8k", "gaokao2023en", "college_math")
MIN_EVAL_SEEDS = 10


@pytest.fixture(scope="module")
def grid():
    return load_grid(GRID)


def test_sampled_benchmarks_state_an_anchor_protocol_with_at_least_ten_evaluation_seeds(grid):
    stated = read_yaml(GRID)["base"]["eval"]["overrides"]
    for point in grid.points:
        for name in SAMPLED:
            assert name in point.config.eval.benchmarks
            # written in the file, not left to the task pack's defaults (which may change)
            assert {"k", "temperature", "top_p"} <= set(stated[name]), name
            settings = resolve_settings(name, point.config.eval)
            assert (settings.temperature, settings.top_p) in ANCHORS, (name, settings)
            assert settings.k >= MIN_EVAL_SEEDS and settings.protocol == f"avg@{settings.k}", (name, settings)


def test_greedy_where_the_anchors_are_greedy(grid):
    for point in grid.points:
        for name in GREEDY:
            assert name in point.config.eval.benchmarks
            settings = resolve_settings(name, point.config.eval)
            assert (settings.k, settings.temperature, settings.protocol) == (1, 0.0, "greedy"), (name, settings)


def test_every_benchmark_of_the_grid_has_a_stated_protocol(grid):
    stated = read_yaml(GRID)["base"]["eval"]["overrides"]
    assert set(grid.points[0].config.eval.benchmarks) == set(SAMPLED) | set(GREEDY) == set(stated)


def test_aime25_is_read_from_the_data_folder(data_dir):
    problems = load_problems("aime25", data_dir)
    assert len(problems) == 30 and all(p.answer for p in problems)


def test_rollouts_are_not_refused_as_biased(grid):
    for point in grid.points:
        assert point.config.train.use_vllm
        assert biased_sampling_problems(point.config) == []
