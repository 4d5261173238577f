"""Input written to hurt: YAML alias bombs and huge grids end fast, in bounded memory, with a short message.

Each case runs the real CLI in a subprocess under ``RLIMIT_AS`` (1.5 GiB) and a wall-clock timeout, as a hostile
or careless user would meet it (the time limit is the subprocess timeout: how fast they end is measured by
``benchmarks/hostile_input.py``, not asserted here); before these limits existed a 9-level alias bomb in ``description:`` ran ``plan``
for over 60 s at 4.4 GB, an 8-level one in ``base.eval.benchmarks`` printed a 448 MB error, and 10⁵ seeds ran
``plan`` for over 120 s at 1 GB.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

MEMORY_LIMIT_BYTES = 1536 * 1024**2
TIME_LIMIT_S = 60.0


def bomb(levels: int, leaf: str = '"lol"') -> str:
    """A billion-laughs document fragment: ``levels`` anchors, each a list of nine aliases of the previous one."""
    lines = [f"a0: &a0 {leaf}"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join(f"*a{level - 1}" for _ in range(9)) + "]")
    return "\n".join(lines)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def run_cli(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    completed = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", *args], cwd=cwd, capture_output=True, text=True,
                               timeout=TIME_LIMIT_S, preexec_fn=_limit_memory)
    return completed, time.monotonic() - started


@pytest.mark.parametrize("where", ["description", "benchmarks"])
def test_an_alias_bomb_is_refused_fast_with_a_short_message(tmp_path, where):
    anchors = bomb(9 if where == "description" else 8)
    if where == "description":
        text = f"{anchors}\nname: bomb\ndescription: *a9\naxes: {{train.seed: [0]}}\n"
    else:
        text = f"{anchors}\nname: bomb\nbase:\n  eval:\n    benchmarks: *a8\n"
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    completed, _ = run_cli(["plan", str(grid)], tmp_path)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert f"{grid}: the document's anchors and aliases expand to more than 1,000,000 values" in completed.stderr
    assert len(completed.stderr) < 2000, len(completed.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]


def test_a_few_aliases_are_still_welcome(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("defaults: &train {max_steps: 3, seed: 0}\nname: anchors\nbase:\n  train: *train\n"
                    "axes: {algorithm.name: [grpo, dapo]}\n")
    completed, _ = run_cli(["plan", str(grid), "--json"], tmp_path)
    assert completed.returncode == 2 and "defaults: unknown key" in completed.stderr  # the anchor itself is parsed
    grid.write_text("name: anchors\nbase:\n  train: &train {max_steps: 3, seed: 0}\naxes: {algorithm.name: [grpo, dapo]}\n"
                    "include:\n  - {train.max_steps: 4}\n")
    completed, _ = run_cli(["plan", str(grid), "--json"], tmp_path)
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("axes", [{"train.seed": "range(100000)"}, {"train.seed": "range(1000)", "train.max_steps": "range(1, 1001)"}],
                         ids=["1e5 seeds", "1000 x 1000"])
def test_a_huge_grid_is_refused_before_it_is_expanded(tmp_path, axes):
    lines = ["name: huge", "axes:"]
    for key, values in axes.items():
        lines.append(f"  {key}: [{', '.join(str(v) for v in eval(values))}]")  # noqa: S307 - test data
    grid = tmp_path / "grid.yaml"
    grid.write_text("\n".join(lines) + "\n")
    completed, _ = run_cli(["plan", str(grid)], tmp_path)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "above the limit of 20,000; split the grid, or raise the limit with --max-points" in completed.stderr
