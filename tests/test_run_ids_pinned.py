"""Run ids are pinned: a refactor of the algorithm declarations, the config schema or the resolve step must leave every
shipped grid's run ids as they were (a changed id orphans every stored run of that configuration: it would train again
and its results would no longer join the report).

The ids were computed before issue 25 moved every axis value's hyperparameters into its module (commit 23d0d52) and
checked equal after it. A deliberate change of identity updates these values in the same commit, saying why.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lgrpo_bench.runs.resolve import load_grid, prepare_run, run_id

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

QUICKSTART_IDS = [
    "492210eaefcb", "fcfb55575b99", "d8a09728032c", "c6bb1297fc2e", "60886b3b6abf", "6aa75c71e700", "7b85d0e37614",
    "ce3aebd4f073", "1f20d88d1eef", "32ba39955140", "95b317d72eae", "db95eda9b91b", "9cf32a0a674e", "5b6b91c63721",
    "fe91b3f629a1",
]
"""experiments/quickstart.yaml: grpo, dapo, dr_grpo, lambda_grpo, dapo_full × seeds 0-2, in the grid's order."""

GRID_DIGESTS = {
    "design_space.yaml": (26, "4af1c0be85fe570f"),  # every surrogate × aggregation (sapo, cispo, gspo, gmpo, λ)
    "findings/dapo_dynamic_sampling.yaml": (20, "7f7348ad54d787b5"),  # group_filter resample, max_generation_batches
    "findings/lambda_sign.yaml": (30, "08d57b3eac6faf19"),  # λ frozen and learned, lam_init ±1, lambda_lr 0.05
}
"""Other grids: (points, first 16 hex of the SHA-256 of their run ids joined by spaces, in the grid's order)."""


def _ids(name: str) -> list[str]:
    return [point.run_id for point in load_grid(EXPERIMENTS / name).points]


def test_quickstart_run_ids_are_pinned():
    assert _ids("quickstart.yaml") == QUICKSTART_IDS


@pytest.mark.parametrize("name", sorted(GRID_DIGESTS))
def test_shipped_grid_run_ids_are_pinned(name):
    ids = _ids(name)
    assert (len(ids), hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16]) == GRID_DIGESTS[name]


def test_the_run_id_of_a_prepared_config_is_the_run_id_it_was_prepared_under(tmp_path):
    """What ``config.yaml`` stores (the prepared config) hashes to the run id of its folder, for every quickstart point."""
    for point in load_grid(EXPERIMENTS / "quickstart.yaml").points:
        config = point.config.model_copy(deep=True)
        config.tracking.runs_dir = str(tmp_path / "runs")
        prepared = prepare_run(config, rid=point.run_id, write=False)
        assert run_id(prepared.config) == point.run_id
