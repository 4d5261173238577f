"""The statistics of benchmarks/quickstart_robustness.py on hand-made runs (pure; nothing is trained)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quickstart_robustness.py"


@pytest.fixture(scope="module")
def robustness():
    spec = importlib.util.spec_from_file_location("quickstart_robustness", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runs(values: dict[str, list[float]]) -> list[dict]:
    """values[algorithm] = [(w0,s0), (w0,s1), (w1,s0), (w1,s1)] final accuracies."""
    cells = [(0, 0), (0, 1), (1, 0), (1, 1)]
    return [{"algorithm": name, "warm_start_seed": w, "seed": s, "final": v, "efficiency": None}
            for name, row in values.items() for (w, s), v in zip(cells, row)]


def test_per_algorithm_mean_std_and_spread_over_warm_starts(robustness):
    stats = robustness.per_algorithm(_runs({"grpo": [0.5, 0.6, 0.4, 0.5]}), "final")["grpo"]
    assert stats["n"] == 4 and stats["warm_starts"] == 2
    assert stats["mean"] == pytest.approx(0.5)
    assert stats["std"] == pytest.approx(math.sqrt(0.02 / 3))          # deviations 0, .1, -.1, 0; n - 1 = 3
    assert stats["std_over_warm_starts"] == pytest.approx(math.sqrt(0.005))  # warm means .55, .45


def test_paired_differences_by_warm_start_and_sign_count(robustness):
    runs = _runs({"grpo": [0.5, 0.6, 0.4, 0.5], "dapo": [0.7, 0.7, 0.4, 0.6], "dr_grpo": [0.7, 0.8, 0.3, 0.4]})
    dapo = robustness.paired(runs, "final", "grpo")["dapo"]  # d = .2, .1, 0, .1
    assert dapo["n"] == 4 and dapo["mean"] == pytest.approx(0.1) and dapo["std"] == pytest.approx(math.sqrt(0.02 / 3))
    assert dapo["per_warm_start"] == pytest.approx({0: 0.15, 1: 0.05})
    assert dapo["t"] == pytest.approx(0.1 / (math.sqrt(0.005) / math.sqrt(2)))  # = 2.0
    assert dapo["sign_holds"] == 2
    dr = robustness.paired(runs, "final", "grpo")["dr_grpo"]  # d = .2, .2, -.1, -.1: the sign flips on warm start 1
    assert dr["mean"] == pytest.approx(0.05) and dr["per_warm_start"] == pytest.approx({0: 0.2, 1: -0.1})
    assert dr["sign_holds"] == 1 and "grpo" not in robustness.paired(runs, "final", "grpo")
    against_dapo = robustness.paired(runs, "final", "dapo")["grpo"]
    assert against_dapo["mean"] == pytest.approx(-0.1) and against_dapo["sign_holds"] == 2
