"""``lgrpo-bench report`` end to end on a real store: formats, grid selection, exit code 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_store import RunSpec, build_store, empty_store, grid_specs, store_uri
from typer.testing import CliRunner

from lgrpo_bench.cli import app

GRID = "name: quick\nbase:\n  tracking: {{uri: '{uri}', experiment: cli}}\naxes:\n  algorithm.name: [grpo, dapo]\n  train.seed: [0, 1]\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The runs of the grid file ``quick.yaml`` (2 algorithms × 2 seeds), logged with its points' run ids."""
    folder = tmp_path_factory.mktemp("cli-store")
    grid_file = folder / "quick.yaml"
    grid_file.write_text(GRID.format(uri=store_uri(folder)))
    specs = grid_specs(grid_file, lambda config: {}, model_size="0.5B")
    for spec in specs:
        spec.records = {"math_500": [bool((i + spec.seed + (spec.algorithm == "dapo")) % 3) for i in range(30)]}
    uri, client, _, parent = build_store(folder, specs, experiment="cli", grid="quick")
    client.create_experiment("empty", artifact_location=(folder / "empty").as_uri())
    return uri, client, parent, folder


def _invoke(*args: str):
    return CliRunner().invoke(app, ["report", *args])


def test_all_formats_written(store, tmp_path):
    uri, _, _, _ = store
    result = _invoke("--experiment", "cli", "--format", "md,latex,csv,html", "--out", str(tmp_path), "--tracking-uri", uri,
                     "--no-plots")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deltas.csv", "deltas.tex", "report.html", "results.csv", "table.md", "table.tex"]
    assert "| 0.5B | grpo | 2 |" in (tmp_path / "table.md").read_text()
    assert "4 runs of experiment cli; wrote 6 files" in result.output


def test_grid_file_selects_the_grid_and_logs_plots(store, tmp_path):
    uri, client, parent, folder = store
    grid_file = folder / "quick.yaml"
    result = _invoke("--grid", str(grid_file), "--format", "md", "--out", str(tmp_path / "out"), "--no-stats")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "plots" / "token_preference.png").stat().st_size > 0
    assert not list((tmp_path / "out" / "plots").glob("*.pdf"))  # PDFs are for LaTeX: written with --format latex
    assert f"plots logged to grid run(s) {parent}" in result.output
    # logged in place into the local artifact root: MLflow lists and downloads exactly what was written
    logged = {Path(a.path).name for a in client.list_artifacts(parent, "report/plots")}
    assert logged == {path.name for path in (tmp_path / "out" / "plots").iterdir()}
    downloaded = Path(client.download_artifacts(parent, "report/plots/training_curves.png", str(tmp_path / "dl")))
    assert downloaded.read_bytes() == (tmp_path / "out" / "plots" / "training_curves.png").read_bytes()
    latex = _invoke("--grid", str(grid_file), "--format", "latex", "--out", str(tmp_path / "tex"), "--no-stats")
    assert latex.exit_code == 0 and (tmp_path / "tex" / "plots" / "token_preference.pdf").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "nope"], "no experiment named 'nope'"),
        (["--experiment", "empty"], "no finished train run in experiment(s) empty"),
        (["--filter", "tags.`lgrpo.grid` = 'other'"], "no finished train run"),
        (["--format", "md,docx"], "--format 'md,docx': choose from md, latex, csv, html"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(store, tmp_path, args, message):
    out = tmp_path / "out"
    result = _invoke(*args, "--tracking-uri", store[0], "--out", str(out))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_missing_store_exit_1_and_bad_grid_file_exit_2(tmp_path):
    result = _invoke("--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "error: no MLflow store at" in result.output  # store trouble: one line, exit 1
    assert not (tmp_path / "none.db").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    result = _invoke("--grid", str(bad), "--tracking-uri", empty_store(tmp_path / "s"))
    assert result.exit_code == 2 and str(bad) in result.output


def test_mixed_hashes_exit_2_naming_the_runs(tmp_path):
    specs = [RunSpec("grpo", 0, acc={"aime24": 0.1}), RunSpec("grpo", 1, acc={"aime24": 0.2}, identity={"aime24": {"hash": "h40"}})]
    uri, _, _, _ = build_store(tmp_path, specs)
    result = _invoke("--tracking-uri", uri, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "grpo-tiny-s0" in result.output and "grpo-tiny-s1" in result.output and "hash=h40" in result.output
    split = _invoke("--tracking-uri", uri, "--out", str(tmp_path / "out"), "--split", "--no-plots")
    assert split.exit_code == 0, split.output
    assert "aime24 (greedy, h40)" in (tmp_path / "out" / "table.md").read_text()
