"""The mutation harnesses stay current: every mutant's original text occurs exactly once in its file, so a refactor
that moves or rewrites a guarded line fails here (loudly, at once) instead of leaving a mutant that can never be
planted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

import mutants_design_space  # noqa: E402
import mutants_run_life  # noqa: E402

ALL = [("design_space", m) for m in mutants_design_space.MUTANTS] + [("run_life", m) for m in mutants_run_life.MUTANTS]


@pytest.mark.parametrize("harness,mutant", ALL, ids=[f"{h}:{m[0]}" for h, m in ALL])
def test_every_mutant_can_be_planted(harness, mutant):
    name, file, original, replacement, selection = mutant
    source = (TESTS.parent / file).read_text()
    assert source.count(original) == 1, f"{harness} mutant {name!r}: its original text occurs {source.count(original)} times in {file}"
    assert original != replacement
    test_file = selection[0].split("::")[0]
    assert (TESTS.parent / test_file).is_file(), f"{harness} mutant {name!r}: no test file {test_file}"
