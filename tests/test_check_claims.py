"""benchmarks/check_claims.py's rule (issue 24 §4): a machine agrees with the README's quickstart claims when every
cell is within the tolerance and every label agrees where the claim's p-value is below 0.01 or above 0.2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_claims", ROOT / "benchmarks" / "check_claims.py")
check_claims = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_claims)


def claims(delta: float, p: float, mean: float = 40.0) -> dict:
    return {"cells": {"dapo": {"arith": {"mean": mean, "std": 1.0, "n": 3}}},
            "deltas": {"dapo": {"arith": {"delta": delta, "p": p}}}}


def test_cells_within_the_tolerance_agree_and_beyond_it_do_not():
    assert check_claims.compare(claims(1.0, 0.5), claims(1.0, 0.5, mean=42.9), 3.0) == []
    assert check_claims.compare(claims(1.0, 0.5), claims(1.0, 0.5, mean=37.1), 3.0) == []
    assert len(check_claims.compare(claims(1.0, 0.5), claims(1.0, 0.5, mean=43.1), 3.0)) == 1
    assert len(check_claims.compare(claims(1.0, 0.5), claims(1.0, 0.5, mean=36.9), 3.0)) == 1


def test_a_claimed_significant_delta_must_stay_significant_with_its_sign():
    strong = claims(+3.0, 0.005)
    assert check_claims.compare(strong, claims(+2.0, 0.03), 3.0) == []
    assert len(check_claims.compare(strong, claims(+2.0, 0.08), 3.0)) == 1  # n.s. here
    assert len(check_claims.compare(strong, claims(-2.0, 0.01), 3.0)) == 1  # significant, other sign


def test_a_claimed_null_must_stay_null_and_borderline_claims_are_not_checked():
    null = claims(+0.2, 0.6)
    assert check_claims.compare(null, claims(+1.0, 0.07), 3.0) == []
    assert len(check_claims.compare(null, claims(+1.0, 0.04), 3.0)) == 1
    borderline = claims(+1.0, 0.05)
    assert check_claims.compare(borderline, claims(-1.0, 0.001), 3.0) == []
    assert check_claims.compare(borderline, claims(+1.0, 0.9), 3.0) == []


def test_the_recorded_claims_cover_every_quickstart_algorithm():
    import json

    import yaml

    recorded = json.loads((ROOT / "benchmarks" / "quickstart_claims.json").read_text())
    algorithms = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())["axes"]["algorithm.name"]
    assert set(recorded["cells"]) == set(algorithms)
    assert set(recorded["deltas"]) == set(algorithms) - {"grpo"}
    assert recorded["machine"]["cpu"] and recorded["machine"]["aten_cpu_capability"]
