"""``report --grid G`` reports G's current points (issue 18 §9): after a value of the grid file is edited, the runs of
the earlier version (same ``lgrpo.grid`` tag, run ids no longer in the file) are counted in one line, not pooled;
``--all-versions`` shows them, keyed by the value that differs; ``status`` prints the same table, with ``--baseline``.
"""

from __future__ import annotations

import re

import pytest
from report_store import build_store, grid_specs, log_run, store_uri
from typer.testing import CliRunner

from lgrpo_bench.cli import app

GRID = """name: versions
base:
  model: {{name: tiny-s}}
  train: {{learning_rate: {lr}}}
  tracking: {{uri: '{uri}', experiment: versions}}
axes:
  algorithm.name: [grpo, dapo]
  train.seed: [0, 1]
"""


def _acc(config) -> dict[str, float]:
    """Version 1 (lr 1e-5) scores about 30 %, version 2 (lr 3e-5) about 60 %; dapo 10 points above grpo."""
    base = 0.3 if config.train.learning_rate < 2e-5 else 0.6
    return {"arith": base + 0.1 * (config.algorithm.name == "dapo") + 0.02 * config.train.seed}


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("versions")
    grid_file = folder / "grid.yaml"
    grid_file.write_text(GRID.format(lr="1.0e-5", uri=store_uri(folder)))
    first = grid_specs(grid_file, _acc)
    _, client, _, parent = build_store(folder, first, experiment="versions", grid="versions")
    grid_file.write_text(GRID.format(lr="3.0e-5", uri=store_uri(folder)))  # the user edits the learning rate
    second = grid_specs(grid_file, _acc)
    assert not {s.run_id for s in first} & {s.run_id for s in second}
    experiment_id = client.get_experiment_by_name("versions").experiment_id
    for spec in second:
        log_run(client, experiment_id, spec, parent)
    return grid_file, folder


def _rows(markdown: str) -> list[list[str]]:
    table = next(b for b in markdown.split("\n\n") if b.startswith("|"))
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in table.splitlines() if not line.startswith("|--")]


def test_default_report_shows_only_the_current_points(versions, tmp_path):
    grid_file, _ = versions
    result = CliRunner().invoke(app, ["report", "--grid", str(grid_file), "--format", "md", "--out", str(tmp_path), "--no-plots"])
    assert result.exit_code == 0, result.output
    rows = _rows((tmp_path / "table.md").read_text())
    assert rows[0] == ["Size", "Algorithm", "n", "arith"]
    assert rows[1:3] == [["0.2M", "grpo", "2", "61.0 ± 1.4"], ["0.2M", "dapo", "2", "**71.0 ± 1.4**"]]
    note = "4 runs of earlier versions of this grid are not shown; lgrpo-bench report --all-versions includes them"
    assert note in (tmp_path / "table.md").read_text() and note in " ".join(result.output.split())
    assert "4 runs of grid versions in experiment versions; wrote 1 file to" in result.output


def test_all_versions_keys_rows_by_the_value_that_differs(versions, tmp_path):
    grid_file, _ = versions
    result = CliRunner().invoke(app, ["report", "--grid", str(grid_file), "--all-versions", "--format", "md", "--out", str(tmp_path),
                                      "--no-plots"])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "table.md").read_text()
    rows = _rows(markdown)
    assert rows[0] == ["Size", "Algorithm", "learning\\_rate", "n", "arith"]
    assert rows[1:5] == [["0.2M", "grpo", "1e-05", "2", "31.0 ± 1.4"], ["0.2M", "grpo", "3e-05", "2", "61.0 ± 1.4"],
                         ["0.2M", "dapo", "1e-05", "2", "41.0 ± 1.4"], ["0.2M", "dapo", "3e-05", "2", "**71.0 ± 1.4**"]]
    assert "4 runs of earlier versions of this grid are included (--all-versions), keyed by the values that differ: learning\\_rate" in markdown
    assert "8 runs of grid versions in experiment versions" in result.output
    bad = CliRunner().invoke(app, ["report", "--all-versions", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--all-versions needs --grid" in bad.output


def test_status_table_has_the_current_points_and_takes_a_baseline(versions):
    grid_file, folder = versions
    result = CliRunner().invoke(app, ["status", str(grid_file), "--baseline", "dapo"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Δ vs dapo" in text and "4 runs of earlier versions of this grid are not shown" in text
    assert re.search(r"grpo\s*│\s*2\s*│\s*61\.0 ± 1\.4", result.output)
    assert re.search(r"grpo\s*│\s*-10\.0 \[", result.output)  # grpo − dapo, paired over the 2 seeds
