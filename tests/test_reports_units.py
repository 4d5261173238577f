"""Issue 26 items 1, 2 and 10 on a real store: every metric in its unit from the schema, ``--metric`` in every form the
help names (or exit 2 listing what the runs hold), every run's value (``report --per-seed``, ``status GRID``), ties,
CSV units, ``--plain`` table names, where the runs are.

The grid ``units`` (grpo and dapo × seeds 0, 1, 2) logs values chosen so every number below is computed by hand:

=========  ==================  ==================  =====================  ===========================
algorithm  arith acc           b2 acc              arith mean_length      train/reward_mean (last)
=========  ==================  ==================  =====================  ===========================
grpo       0.50, 0.52, 0.54    0.30, 0.31, 0.32    6.8, 6.9, 7.0 tokens   0.250, 0.260, 0.270
dapo       0.60, 0.62, 0.64    0.40, 0.41, 0.42    7.8, 7.9, 8.0 tokens   0.350, 0.360, 0.370
=========  ==================  ==================  =====================  ===========================

so arith acc is 52.0 ± 2.0 and 62.0 ± 2.0 points (Δ +10.0), mean_length 6.9 ± 0.1 and 7.9 ± 0.1 tokens (Δ +1.0),
rewards 0.260 ± 0.010 and 0.360 ± 0.010 reward units (Δ +0.100).
"""

from __future__ import annotations

import csv
import io

import pytest
from report_store import build_store, grid_specs, store_uri
from typer.testing import CliRunner

from lgrpo_bench.cli import app
from lgrpo_bench.reports.loader import RunRecord
from lgrpo_bench.reports.render import to_markdown
from lgrpo_bench.reports.table import build_table
from lgrpo_bench.tracking import schema as t

GRID = "name: units\nbase:\n  tracking: {{uri: '{uri}', experiment: units}}\naxes:\n  algorithm.name: [grpo, dapo]\n  train.seed: [0, 1, 2]\n"
ARITH = {"grpo": 0.50, "dapo": 0.60}
B2 = {"grpo": 0.30, "dapo": 0.40}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("units-store")
    grid_file = folder / "units.yaml"
    grid_file.write_text(GRID.format(uri=store_uri(folder)))
    specs = grid_specs(grid_file, lambda config: {}, model_size="0.2M")
    for spec in specs:
        offset = spec.seed
        spec.acc = {"arith": ARITH[spec.algorithm] + 0.02 * offset, "b2": B2[spec.algorithm] + 0.01 * offset}
        spec.eval_values = {"arith": {"mean_length": (6.8 if spec.algorithm == "grpo" else 7.8) + 0.1 * offset,
                                      "pass_1": ARITH[spec.algorithm] + 0.02 * offset}}
        last = (0.25 if spec.algorithm == "grpo" else 0.35) + 0.01 * offset
        spec.curves = {t.TRAIN_REWARD_MEAN: [(1, 0.9), (2, last)]}  # the last logged value is the run's
    uri, client, _, _ = build_store(folder, specs, experiment="units", grid="units")
    client.create_experiment("elsewhere", artifact_location=(folder / "elsewhere").as_uri())  # searched, holds no run
    return uri, grid_file, folder


def _report(store, tmp_path, *args: str):
    uri, _, _ = store
    return CliRunner().invoke(app, ["report", "--tracking-uri", uri, "--out", str(tmp_path / "out"), "--no-plots", *args])


def _plain_tables(stdout: str) -> dict[str, list[list[str]]]:
    """``{heading: rows (header first)}`` of ``--plain``'s stdout: each table under its ``# name: title`` line."""
    tables: dict[str, list[list[str]]] = {}
    heading = None
    for line in stdout.splitlines():
        if line.startswith("# "):
            heading = line
            tables[heading] = []
        elif line and heading is not None:
            tables[heading].append(line.split("\t"))
    return tables


def _stdout(result) -> str:
    return result.stdout if hasattr(result, "stdout") else result.output


def test_mean_length_is_in_tokens_not_points(store, tmp_path):
    """Issue 26 §1: mean_length printed 687.6 ± 38.1 "points" for 6.9-token lengths (× 100)."""
    result = _report(store, tmp_path, "--metric", "mean_length", "--plain")
    assert result.exit_code == 0, result.output
    tables = _plain_tables(_stdout(result))
    summary = tables["# summary: mean_length (tokens, mean ± std over seeds)"]
    assert summary[0] == ["Size", "Algorithm", "n", "arith", "b2", "Average"]  # no Sample eff.: an accuracy, in points
    assert [row[:5] for row in summary[1:3]] == [["0.2M", "grpo", "3", "6.9 ± 0.1", "20.0 ± 0.0"],
                                                 ["0.2M", "dapo", "3", "7.9 ± 0.1", "20.0 ± 0.0"]]
    deltas = tables["# deltas: Δ vs grpo (tokens, difference of seed means)"]
    assert deltas[1][:3] == ["0.2M", "dapo", deltas[1][2]] and deltas[1][2].startswith("+1.0 [")
    assert [row[1] for row in deltas[2:]] == ["MDE (80 % power)", "seeds for 1 / 2 tokens"]
    assert "mean_length in tokens" in result.output and "no best marked" in result.output
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert "**" not in markdown.split("\n\n")[0]  # a length has no better direction: nothing bold


@pytest.mark.parametrize("metric", ["eval/arith/acc", "acc"])
def test_eval_metric_forms_keep_their_columns(store, tmp_path, metric):
    """``eval/<benchmark>/<metric>`` (the form the help names) is that benchmark's column; ``acc`` every benchmark's."""
    result = _report(store, tmp_path, "--metric", metric, "--plain")
    assert result.exit_code == 0, result.output
    summary = _plain_tables(_stdout(result))["# summary: acc (points, mean ± std over seeds)"]
    expected_columns = ["arith"] if metric.startswith("eval/") else ["arith", "b2", "Average"]
    assert summary[0] == ["Size", "Algorithm", "n", *expected_columns]
    assert summary[1][3] == "52.0 ± 2.0" and summary[2][3] == "62.0 ± 2.0"


@pytest.mark.parametrize("metric", ["pass@1", "pass_1"])
def test_pass_at_k_in_either_spelling(store, tmp_path, metric):
    result = _report(store, tmp_path, "--metric", metric, "--plain")
    assert result.exit_code == 0, result.output
    summary = _plain_tables(_stdout(result))["# summary: pass_1 (points, mean ± std over seeds)"]
    assert summary[0] == ["Size", "Algorithm", "n", "arith"] and summary[1][3] == "52.0 ± 2.0"


def test_train_metric_is_its_last_logged_value_in_reward(store, tmp_path):
    result = _report(store, tmp_path, "--metric", "train/reward_mean", "--plain", "--per-seed", "--format", "md,csv")
    assert result.exit_code == 0, result.output
    tables = _plain_tables(_stdout(result))
    summary = tables["# summary: train/reward_mean (reward units, mean ± std over seeds)"]
    assert summary[1:3] == [["0.2M", "grpo", "3", "0.260 ± 0.010"], ["0.2M", "dapo", "3", "0.360 ± 0.010"]]
    per_run = tables["# per run: train/reward_mean (reward units), every run"]
    assert [row[-1] for row in per_run[1:]] == ["0.250", "0.260", "0.270", "0.350", "0.360", "0.370"]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "results.csv").read_text())))
    reward = sorted((float(r["value"]), r["unit"]) for r in rows if r["metric"] == t.TRAIN_REWARD_MEAN)
    assert reward == [(pytest.approx(v), "reward units") for v in (0.25, 0.26, 0.27, 0.35, 0.36, 0.37)]
    assert float(next(r for r in csv.DictReader(io.StringIO((tmp_path / "out" / "deltas.csv").read_text())))["delta"]) == pytest.approx(0.1)


@pytest.mark.parametrize("metric", ["bogus", "eval/arith/bogus", "eval/nobench/acc", "train/nothing", "pass_8"])
def test_a_metric_no_run_logged_is_exit_2_listing_what_they_hold(store, tmp_path, metric):
    result = _report(store, tmp_path, "--metric", metric)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"metric {metric!r}" in message
    assert "eval metrics acc, acc_stderr, mean_length, n, pass_1 of benchmarks arith, b2" in message
    assert "training metrics (last logged value) train/reward_mean" in message
    assert not (tmp_path / "out").exists()


def test_the_schema_is_the_one_place_of_units():
    assert t.metric_spec("acc") == t.metric_spec("eval/gsm8k/acc") == t.MetricSpec(t.UNIT_POINTS, True)
    assert t.metric_spec("eval/arith/mean_length").unit == t.UNIT_TOKENS
    assert t.metric_spec("pass_16") == t.MetricSpec(t.UNIT_POINTS, True)
    assert t.metric_spec(t.TRAIN_REWARD_MEAN).unit == t.UNIT_REWARD
    assert t.metric_spec(t.TRAIN_STEP_S).higher_is_better is False
    assert t.metric_spec("train/some_trl_key").unit == t.UNIT_VALUE
    assert t.UNIT_POINTS.format(0.4193333) == "41.9" and t.UNIT_POINTS.format(-0.031, signed=True) == "-3.1"
    assert t.UNIT_TOKENS.format(6.94) == "6.9" and t.UNIT_REWARD.format(0.2604) == "0.260"
    assert all(t.metric_spec(name).unit != t.UNIT_VALUE for name in (
        t.TRAIN_ACCURACY, t.TRAIN_COMPLETION_LENGTH_MEAN, t.TRAIN_HELDOUT_ACC, t.TRAIN_CLIP_FRACTION, t.TRAIN_ENTROPY))


def test_per_seed_lists_every_run_and_group_by_seed_points_to_it(store, tmp_path):
    result = _report(store, tmp_path, "--per-seed", "--plain", "--metric", "eval/arith/acc")
    assert result.exit_code == 0, result.output
    per_run = _plain_tables(_stdout(result))["# per run: acc (points), every run"]
    assert per_run[0] == ["Size", "Algorithm", "seed", "run id", "arith"]
    assert [(row[1], row[2], row[4]) for row in per_run[1:]] == [
        ("grpo", "0", "50.0"), ("grpo", "1", "52.0"), ("grpo", "2", "54.0"),
        ("dapo", "0", "60.0"), ("dapo", "1", "62.0"), ("dapo", "2", "64.0")]
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert "| 0.2M | dapo | 2 |" in markdown and "one line per run" in markdown
    refused = _report(store, tmp_path / "seed", "--group-by", "algorithm.name,train.seed")
    assert refused.exit_code == 2 and "--per-seed" in refused.output and "a seed is a replicate" in refused.output


def test_status_shows_each_runs_result_in_its_unit(store):
    _, grid_file, _ = store
    result = CliRunner().invoke(app, ["status", str(grid_file), "--plain"])
    assert result.exit_code == 0, result.output
    lines = _stdout(result).splitlines()
    header = lines[0].split("\t")
    assert header[header.index("state") + 1:header.index("state") + 3] == ["arith acc (points)", "b2 acc (points)"]
    rows = [line.split("\t") for line in lines[1:7]]
    at = header.index("arith acc (points)")
    assert sorted((row[header.index("algorithm.name")], row[header.index("train.seed")], row[at], row[at + 1]) for row in rows) == sorted([
        ("grpo", "0", "50.0", "30.0"), ("grpo", "1", "52.0", "31.0"), ("grpo", "2", "54.0", "32.0"),
        ("dapo", "0", "60.0", "40.0"), ("dapo", "1", "62.0", "41.0"), ("dapo", "2", "64.0", "42.0")])
    lengths = CliRunner().invoke(app, ["status", str(grid_file), "--plain", "--metric", "mean_length"])
    assert "arith mean_length (tokens)" in _stdout(lengths).splitlines()[0].split("\t")


def test_plain_names_each_table_and_the_run_line_says_where_the_runs_are(store, tmp_path):
    result = _report(store, tmp_path, "--plain", "--format", "md")
    assert result.exit_code == 0, result.output
    stdout = _stdout(result).splitlines()
    assert stdout[0] == "# summary: acc (points, mean ± std over seeds)" and stdout[1].startswith("Size\tAlgorithm\tn\t")
    second = stdout.index("# deltas: Δ vs grpo (points, difference of seed means)")
    assert stdout[second - 1] == "" and stdout[second + 1].startswith("Size\tAlgorithm\t")
    # every experiment of the store was searched (Default, elsewhere, units); the runs are in one of them
    assert "6 runs of experiment units; wrote 1 file to" in result.output


def test_html_subtitle_says_in_words_where_the_runs_are(store, tmp_path):
    _, grid_file, _ = store
    result = CliRunner().invoke(app, ["report", "--grid", str(grid_file), "--format", "html", "--out", str(tmp_path / "out"),
                                      "--no-plots"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "report.html").read_text()
    assert '<p class="selection">6 runs of grid units in experiment units, in the MLflow store sqlite:///' in page
    assert "tags." not in page and " where " not in page
    assert "6 runs of grid units in experiment units; wrote 1 file to" in result.output


def _record(name: str, algorithm: str, seed: int, acc: float) -> RunRecord:
    return RunRecord(name, name, algorithm, "tiny-s", "0.2M", str(seed), t.STATE_DONE, None, "1", 0,
                     eval_metrics={"arith": {"acc": acc}})


def test_ties_as_shown_are_bold_on_every_tied_row():
    """86.666666 % and 86.666667 % both show 86.7: both rows are best (issue 26 §10: only one was bold)."""
    runs = [_record(f"{algorithm}-{seed}", algorithm, seed, acc) for algorithm, acc in
            (("grpo", 0.8), ("dapo", 0.86666666), ("dapo_full", 0.86666667)) for seed in (0, 1)]
    table = build_table(runs, statistics=False)
    best = {row.algorithm: row.cells["arith"].best for row in table.groups[0].rows}
    assert best == {"grpo": False, "dapo": True, "dapo_full": True}
    assert to_markdown(table).count("**86.7 ± 0.0**") == 2


def test_sample_efficiency_joins_only_accuracy_like_metrics():
    """Sample eff. is a held-out accuracy (points, higher better): it stays beside acc, never beside a length."""
    runs = [_record(f"{algorithm}-{seed}", algorithm, seed, 0.5) for algorithm in ("grpo", "dapo") for seed in (0, 1)]
    for run in runs:
        run.eval_metrics["arith"]["mean_length"] = 7.0
    curves = {run.mlflow_run_id: ([0, 10], [0.4, 0.6]) for run in runs}
    assert build_table(runs, metric="acc", heldout_curves=curves, statistics=False).has_efficiency
    lengths = build_table(runs, metric="mean_length", heldout_curves=curves, statistics=False)
    assert not lengths.has_efficiency and lengths.unit == t.UNIT_TOKENS and lengths.value_keys == ["arith"]


def test_deltas_and_results_csv_share_units(store, tmp_path):
    """Δ in deltas.csv = difference of the seed means of results.csv's values, both in points, each row naming its unit."""
    result = _report(store, tmp_path, "--format", "csv", "--metric", "eval/arith/acc")
    assert result.exit_code == 0, result.output
    results = list(csv.DictReader(io.StringIO((tmp_path / "out" / "results.csv").read_text())))
    arith = [r for r in results if r["benchmark"] == "arith" and r["metric"] == "acc"]
    assert {r["unit"] for r in arith} == {"points"}
    mean = {a: sum(float(r["value"]) for r in arith if r["algorithm"] == a) / 3 for a in ("grpo", "dapo")}
    assert mean == {"grpo": pytest.approx(52.0), "dapo": pytest.approx(62.0)}
    lengths = {r["unit"] for r in results if r["metric"] == "mean_length"}
    assert lengths == {"tokens"}
    delta = next(r for r in csv.DictReader(io.StringIO((tmp_path / "out" / "deltas.csv").read_text())) if r["column"] == "arith")
    assert delta["unit"] == "points" and float(delta["delta"]) == pytest.approx(mean["dapo"] - mean["grpo"])
    assert float(delta["ci_low"]) == pytest.approx(10.0) == float(delta["ci_high"])  # paired, every seed +10 points


def test_runs_that_evaluated_no_benchmark_keep_their_sample_efficiency_table(tmp_path):
    """A grid trained without benchmarks (eval.benchmarks empty) still gets the default table after `run`: its
    held-out accuracy (Sample eff.); a metric named explicitly that no run logged is still exit 2."""
    grid_file = tmp_path / "units.yaml"
    grid_file.write_text(GRID.format(uri=store_uri(tmp_path)))
    specs = grid_specs(grid_file, lambda config: {}, model_size="0.2M")
    for spec in specs:
        spec.curves = {t.TRAIN_HELDOUT_ACC: [(0, 0.2), (1, 0.3 + 0.01 * spec.seed)]}
    uri, _, _, _ = build_store(tmp_path, specs, experiment="units", grid="units")
    store = (uri, grid_file, tmp_path)
    result = _report(store, tmp_path, "--plain")
    assert result.exit_code == 0, result.output
    assert "Sample eff." in _stdout(result)
    assert _report(store, tmp_path / "again", "--metric", "pass_8").exit_code == 2
