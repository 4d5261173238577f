"""A grid with non-seed axes, reported from a real MLflow store: one row per configuration, key columns in the
tables and CSVs, Δ against the baseline at the same keys, seeds never pooled with configurations, the CLI's
--group-by / --average-over, and `plan` printing what the grid can detect.

The grid (written below): λ-GRPO at lam_init ∈ {0.0, 1.0} × learning rate ∈ {1e-5, 3e-5} × seeds {0, 1, 2},
and GRPO (lam_init left at its default 0.0) at both learning rates and seeds: 18 runs, logged with the params
and run ids training gives them (tests/report_store.py: grid_specs).
"""

from __future__ import annotations

import csv
import io
import math
import re

import pytest
from report_store import RunSpec, build_store, grid_specs
from typer.testing import CliRunner

from lgrpo_bench.cli import app
from lgrpo_bench.reports import ReportInputError, build_table, generate_report, load_report_table, load_runs
from lgrpo_bench.reports.render import deltas_csv, to_markdown
from lgrpo_bench.reports.report import report_figures
from lgrpo_bench.tracking import schema as t

GRID = """name: lam-grid
base:
  model: {{name: tiny-s}}
  algorithm: {{name: lambda_grpo}}
  tracking: {{uri: '{uri}', experiment: keys}}
axes:
  algorithm.lam_init: [0.0, 1.0]
  train.learning_rate: [1.0e-5, 3.0e-5]
  train.seed: [0, 1, 2]
include:
{include}
"""
BASE = {1e-5: 0.40, 3e-5: 0.50}
"""GRPO's accuracy at seed 0 per learning rate; every run adds 0.02 per seed."""
GAIN = {("grpo", None): (0.0, 0.0, 0.0), ("lambda_grpo", 0.0): (0.01, 0.02, 0.03), ("lambda_grpo", 1.0): (0.05, 0.06, 0.10)}
"""Gain over GRPO at the same learning rate and seed, per seed (grpo's lam_init: unset, its value does not use λ)."""


def _acc(config) -> dict[str, float]:
    seed = config.train.seed
    value = BASE[config.train.learning_rate] + 0.02 * seed + GAIN[(config.algorithm.name, config.algorithm.lam_init)][seed]
    return {"arith": value}


def _curves(config) -> dict:
    curves = {t.TRAIN_REWARD_MEAN: [(0, 0.1), (10, 0.2 + config.train.seed / 10)],
              t.TRAIN_COMPLETION_LENGTH_MEAN: [(0, 10.0), (10, 12.0)]}
    if config.algorithm.name == "lambda_grpo":
        curves[t.TRAIN_LAMBDA] = [(0, config.algorithm.lam_init), (10, config.algorithm.lam_init + 0.5)]
    return curves


@pytest.fixture(scope="module")
def key_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("key-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    include = "\n".join(f"  - {{algorithm.name: grpo, train.learning_rate: {lr}, train.seed: {seed}}}"
                        for lr in ("1.0e-5", "3.0e-5") for seed in range(3))
    grid_file = folder / "grid.yaml"
    grid_file.write_text(GRID.format(uri=uri, include=include))
    specs = grid_specs(grid_file, _acc, curves=_curves)
    assert len(specs) == 18 and len({s.run_id for s in specs}) == 18
    built_uri, client, ids, parent = build_store(folder, specs, experiment="keys", grid="lam-grid")
    assert built_uri == uri
    return uri, client, grid_file


def _markdown_rows(markdown: str, block: int = 0) -> list[list[str]]:
    tables = [b for b in markdown.split("\n\n") if b.startswith("|")]
    return [[c.strip().replace("\\_", "_") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in tables[block].splitlines() if not line.startswith("|--")]


def test_one_row_per_configuration_never_more_runs_than_seeds(key_store):
    uri, _, _ = key_store
    table, data, _ = load_report_table(uri, grid="lam-grid", key_order=["algorithm.lam_init", "train.learning_rate", "train.seed"])
    assert len(data.runs) == 18
    # the presets' resolved axes (aggregation, λ options) differ between grpo and lambda_grpo but follow from the
    # algorithm: no row keys; grpo has no lam_init (logged as None)
    assert table.row_keys.keys == ("algorithm.lam_init", "train.learning_rate") and table.key_labels == ["lam_init", "learning_rate"]
    rows = table.groups[0].rows
    assert [(r.algorithm, r.key_values) for r in rows] == [
        ("grpo", ("None", "1e-05")), ("grpo", ("None", "3e-05")),
        ("lambda_grpo", ("0.0", "1e-05")), ("lambda_grpo", ("0.0", "3e-05")),
        ("lambda_grpo", ("1.0", "1e-05")), ("lambda_grpo", ("1.0", "3e-05")),
    ]
    for row in rows:
        assert row.n == 3 and sorted(run.seed for run in row.runs) == ["0", "1", "2"]
    lam1 = rows[4]
    # seeds 0, 1, 2 at lr 1e-5: 0.40 + 0.02·s + (0.05, 0.06, 0.10) = 0.45, 0.48, 0.54 → mean 0.49, sd 0.0458258
    assert lam1.cells["arith"].stats.mean == pytest.approx(0.49)
    assert lam1.cells["arith"].stats.std == pytest.approx(math.sqrt(((0.04) ** 2 + (0.01) ** 2 + (0.05) ** 2) / 2))
    markdown = to_markdown(table)
    lines = _markdown_rows(markdown)
    assert lines[0] == ["Size", "Algorithm", "lam_init", "learning_rate", "n", "arith"]  # one benchmark: no Average
    assert ["0.2M", "lambda_grpo", "1.0", "1e-05", "3", "49.0 ± 4.6"] in lines
    assert "one row per lam\\_init, learning\\_rate" in markdown


def test_delta_against_the_baseline_at_the_same_keys(key_store):
    uri, _, _ = key_store
    table, _, _ = load_report_table(uri, grid="lam-grid")
    deltas = {(d.algorithm, d.key_values): d for d in table.groups[0].deltas}
    assert len(deltas) == 4
    lam1 = deltas[("lambda_grpo", ("1.0", "1e-05"))]
    # grpo has no lam_init: matched on the learning rate only, nothing unmatched to state
    assert lam1.match.matched == ("train.learning_rate",) and dict(lam1.match.unmatched) == {}
    assert lam1.baseline_keys_text == ""
    interval = lam1.cells["arith"].interval
    # paired by seed against grpo at lr 1e-5: d = (0.05, 0.06, 0.10), mean 0.07, sd √0.0007, df 2
    half = 4.302652729749464 * math.sqrt(0.0007) / math.sqrt(3)
    assert interval.method == "paired t" and interval.n_pairs == 3
    assert (interval.delta, interval.low, interval.high) == pytest.approx((0.07, 0.07 - half, 0.07 + half), abs=1e-9)
    lam0 = deltas[("lambda_grpo", ("0.0", "3e-05"))]
    assert lam0.match.matched == ("train.learning_rate",) and not lam0.match.unmatched
    assert lam0.cells["arith"].delta == pytest.approx(0.02)
    markdown = to_markdown(table)
    delta_lines = _markdown_rows(markdown, block=1)
    assert delta_lines[0] == ["Size", "Algorithm", "lam_init", "learning_rate", "vs", "arith"]
    assert any(line[:5] == ["0.2M", "lambda_grpo", "1.0", "1e-05", "grpo"] and line[5].startswith("+7.0 [")
               for line in delta_lines)
    assert "with the same model size, learning\\_rate" in markdown
    # the power rows pool the four paired comparisons; 3 seeds
    power = table.groups[0].power["arith"]
    assert power.paired and power.n == 3 and power.std_df == 8
    assert any(line[1] == "MDE (80 % power)" for line in delta_lines)


def test_a_row_without_matching_baseline_says_so(key_store):
    """Without GRPO at 3e-5 the λ-GRPO rows at 3e-5 have no baseline, and the Δ table and deltas.csv say which."""
    uri, client, _ = key_store
    runs = [r for r in load_runs(client, grid="lam-grid").runs if not (r.algorithm == "grpo" and r.params["train.learning_rate"] == "3e-05")]
    table = build_table(runs)
    deltas = {d.key_values: d for d in table.groups[0].deltas}
    orphan = deltas[("1.0", "3e-05")]
    assert orphan.match.index is None and orphan.match.reason == "no grpo row with learning_rate=3e-05"
    assert all(cell.delta is None for cell in orphan.cells.values())
    assert deltas[("1.0", "1e-05")].cells["arith"].delta == pytest.approx(0.07)
    assert "no grpo row with learning\\_rate=3e-05" in to_markdown(table)
    rows = list(csv.DictReader(io.StringIO(deltas_csv(table))))
    orphan_rows = [r for r in rows if (r["lam_init"], r["learning_rate"]) == ("1.0", "3e-05")]
    assert orphan_rows and all(r["delta"] == "" and r["no_interval"] == "no grpo row with learning_rate=3e-05" for r in orphan_rows)


def test_csvs_carry_one_column_per_key(key_store, tmp_path):
    uri, _, _ = key_store
    generate_report(uri, grid="lam-grid", formats=["csv"], out_dir=tmp_path, plots=False,
                    key_order=["algorithm.lam_init", "train.learning_rate"])
    results = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("algorithm") + 1:header.index("algorithm") + 3] == ["lam_init", "learning_rate"]
    acc_rows = [r for r in results if r["metric"] == "acc"]
    assert len(acc_rows) == 18
    assert {(r["algorithm"], r["lam_init"], r["learning_rate"], r["seed"]) for r in acc_rows} == (
        {("grpo", "None", lr, str(s)) for lr in ("1e-05", "3e-05") for s in range(3)}
        | {("lambda_grpo", lam, lr, str(s)) for lam in ("0.0", "1.0") for lr in ("1e-05", "3e-05") for s in range(3)})
    deltas = list(csv.DictReader(io.StringIO((tmp_path / "deltas.csv").read_text())))
    one = next(r for r in deltas if (r["algorithm"], r["lam_init"], r["learning_rate"], r["column"]) == ("lambda_grpo", "1.0", "1e-05", "arith"))
    assert float(one["delta"]) == pytest.approx(7.0) and one["unit"] == "points" and one["matched_keys"] == "learning_rate" and one["baseline_keys"] == ""
    assert one["method"] == "paired t" and one["df"] == "2.0" and one["n_seeds"] == "3"


def test_plots_draw_one_series_per_row(key_store):
    uri, _, _ = key_store
    table, data, histories = load_report_table(uri, grid="lam-grid", extra_histories=[t.TRAIN_REWARD_MEAN, t.TRAIN_LAMBDA,
                                                                                       t.TRAIN_COMPLETION_LENGTH_MEAN])
    figures = report_figures(table, data.runs, histories)
    expected = {"grpo (lam_init=None, learning_rate=1e-05)", "grpo (lam_init=None, learning_rate=3e-05)"} | {
        f"lambda_grpo (lam_init={lam}, learning_rate={lr})" for lam in ("0.0", "1.0") for lr in ("1e-05", "3e-05")}
    curves = figures["training_curves"].axes[0].get_legend_handles_labels()[1]
    assert {label.rsplit(" (n=", 1)[0] for label in curves} == expected and all(label.endswith("(n=3)") for label in curves)
    scatter = figures["accuracy_vs_compute"].axes[0].get_legend_handles_labels()[1]
    assert set(scatter) == expected
    lambdas = [label for label in figures["token_preference"].axes[0].get_legend_handles_labels()[1] if "λ=" in label]
    # λ per row: the mean final λ of the row's 3 runs (lam_init + 0.5), never of both lam_init values together
    assert sorted(lambdas) == sorted(f"lambda_grpo (lam_init={lam}, learning_rate={lr}) (λ={float(lam) + 0.5:.3g})"
                                     for lam in ("0.0", "1.0") for lr in ("1e-05", "3e-05"))


def test_group_by_and_average_over(key_store):
    uri, _, _ = key_store
    with pytest.raises(ReportInputError, match="lam_init differ among the reported runs but are in neither --group-by nor --average-over"):
        load_report_table(uri, grid="lam-grid", group_by=["learning_rate"])
    table, _, _ = load_report_table(uri, grid="lam-grid", group_by=["learning_rate"], average_over=["lam_init"])
    rows = {(r.algorithm, r.key_values): r for r in table.groups[0].rows}
    assert rows[("lambda_grpo", ("1e-05",))].n == 6 and rows[("grpo", ("1e-05",))].n == 3
    markdown = to_markdown(table)
    assert "rows also average over lam\\_init (--average-over" in markdown
    # pooled on purpose: lam_init joins the seed as the replicate id, so λ-GRPO (6 runs) vs GRPO (3) is unpaired
    delta = next(d for d in table.groups[0].deltas if d.key_values == ("1e-05",))
    assert delta.cells["arith"].interval.method == "Welch t"
    with pytest.raises(ReportInputError, match="a seed is a replicate"):
        load_report_table(uri, grid="lam-grid", group_by=["train.seed"])
    with pytest.raises(ReportInputError, match="not a config key the reported runs logged"):
        load_report_table(uri, grid="lam-grid", group_by=["no_such_key"])
    with pytest.raises(ReportInputError, match="ambiguous"):
        load_report_table(uri, grid="lam-grid", group_by=["name"])


def test_two_runs_of_one_row_with_one_seed_are_an_error(tmp_path):
    """Runs logged without their config params (older versions): two configurations look like one; refuse."""
    specs = [RunSpec("grpo", 0, acc={"b": 0.4}, params={}, name="aaaa1111"), RunSpec("grpo", 0, acc={"b": 0.6}, params={}, name="bbbb2222"),
             RunSpec("grpo", 1, acc={"b": 0.5}, params={}, name="cccc3333")]
    uri, client, ids, _ = build_store(tmp_path, specs)
    with pytest.raises(ReportInputError) as error:
        load_report_table(uri)
    message = str(error.value)
    for spec in specs[:2]:
        assert spec.run_id in message and ids[spec.run_id] in message
    assert "same replicate (seed 0)" in message
    result = CliRunner().invoke(app, ["report", "--tracking-uri", uri, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "aaaa1111" in result.output and "bbbb2222" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_reports_the_grid_with_key_columns(key_store, tmp_path):
    uri, _, grid_file = key_store
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "--grid", str(grid_file), "--format", "md,csv,latex,html", "--out", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    lines = _markdown_rows((out / "table.md").read_text())
    assert lines[0][:5] == ["Size", "Algorithm", "lam_init", "learning_rate", "n"]
    body = [line for line in lines[1:] if line[1] != "seed std (pooled)"]
    assert len(body) == 6 and all(line[4] == "3" for line in body)
    assert "lam\\_init" in (out / "table.tex").read_text() and "<th class=\"l\">lam_init</th>" in (out / "report.html").read_text()
    assert "MDE (80 % power)" in result.output
    bad = CliRunner().invoke(app, ["report", "--grid", str(grid_file), "--out", str(tmp_path / "bad"), "--group-by", "learning_rate"])
    assert bad.exit_code == 2 and "--average-over" in bad.output and not (tmp_path / "bad").exists()
    averaged = CliRunner().invoke(app, ["report", "--grid", str(grid_file), "--out", str(tmp_path / "avg"), "--no-plots",
                                        "--group-by", "learning_rate", "--average-over", "lam_init"])
    assert averaged.exit_code == 0, averaged.output


def test_plan_prints_what_the_grid_can_detect(key_store):
    """`lgrpo-bench plan` on the same grid: the store's earlier runs of tiny-s on arith give the pooled std of
    paired differences; the line states the MDE for the grid's 3 seeds (from the std's 80 % upper limit) and the seeds 1 and 2 points need."""
    from lgrpo_bench.reports.power import minimum_detectable_effect, seeds_needed, std_upper_limit
    from lgrpo_bench.reports.power_lines import plan_power_lines

    uri, _, grid_file = key_store
    result = CliRunner().invoke(app, ["plan", str(grid_file)])
    assert result.exit_code == 0, result.output
    table, _, _ = load_report_table(uri)
    power = table.groups[0].power["arith"]
    mde = minimum_detectable_effect(float(std_upper_limit(power.std, power.std_df)), 3, paired=True)
    text = " ".join(result.output.split())
    assert f"with 3 seeds the minimum detectable effect is {100 * mde:.1f} points" in text
    assert f"1 point: {seeds_needed(0.01, power.std, paired=True)} seeds" in text
    assert "of paired per-seed differences" in text
    assert " earlier runs of tiny-s on arith): " in text  # the task's benchmark named once
    assert "arith, arith" not in text
    assert plan_power_lines(uri, "tiny-s", "math", 3) == []  # no earlier runs of that task


def test_algorithm_options_that_follow_from_the_algorithm_are_not_shown():
    """dapo_full's resolved epsilon_high (0.28 against 0.2) varies among the runs but only with the algorithm: no row
    key (the Algorithm column says it) and --group-by need not name it; varied within an algorithm it is a key."""
    from lgrpo_bench.reports.loader import RunRecord
    from lgrpo_bench.reports.render import results_csv

    def run(algorithm, seed, epsilon_high, acc):
        name = f"{algorithm}{seed}"
        return RunRecord(name, name, algorithm, "tiny-s", "0.2M", str(seed), "done", None, "0", 0,
                         eval_metrics={"arith": {"acc": acc}}, eval_identity={"arith": {"hash": "h"}}, eval_source={"arith": name},
                         params={"algorithm.name": algorithm, "algorithm.epsilon_high": epsilon_high, "train.seed": str(seed)})

    runs = [run("grpo", s, "0.2", 0.5 + 0.01 * s) for s in range(2)] + [run("dapo_full", s, "0.28", 0.6 + 0.02 * s) for s in range(2)]
    table = build_table(runs)
    assert table.row_keys.keys == () and table.row_keys.shown == ()
    assert [r.n for r in table.groups[0].rows] == [2, 2]
    delta = table.groups[0].deltas[0]
    assert delta.cells["arith"].delta == pytest.approx(0.105) and delta.baseline_keys_text == ""
    assert _markdown_rows(to_markdown(table))[0] == ["Size", "Algorithm", "n", "arith"]
    assert build_table(runs, group_by=[]).row_keys.keys == ()
    header = results_csv(table, runs).splitlines()[0].split(",")
    assert "epsilon_high" not in header
    varied = runs + [run("dapo_full", s + 2, "0.3", 0.7) for s in range(2)]
    assert build_table(varied).row_keys.keys == ("algorithm.epsilon_high",)
    with pytest.raises(ReportInputError, match="epsilon_high differ"):
        build_table(varied, group_by=[])
