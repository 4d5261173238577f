"""Reports against real MLflow SQLite stores filled with hand-chosen values (tests/report_store.py)."""

from __future__ import annotations

import csv
import io
import math
import re

import pytest
from report_store import RunSpec, build_store

from lgrpo_bench.reports import IncomparableRuns, ReportInputError, build_table, generate_report, load_report_table, load_runs
from lgrpo_bench.reports.render import escape_latex, escape_markdown, to_latex, to_latex_deltas, to_markdown
from lgrpo_bench.reports.loader import load_problem_records, open_store
from lgrpo_bench.reports.stats import (
    aggregate_curves,
    generated_tokens,
    learning_curve_mean,
    per_problem_accuracy,
    pooled_seed_std,
    seed_stats,
)
from lgrpo_bench.reports.table import AVERAGE, EFFICIENCY
from lgrpo_bench.tracking import schema as t


def _heldout(start: float, end: float) -> dict:
    return {t.TRAIN_HELDOUT_ACC: [(0, start), (20, end)]}


def paper_specs() -> list[RunSpec]:
    """Two model sizes; every number of the expected table below is computed by hand from these."""
    specs = [
        RunSpec("grpo", 0, "1B", acc={"b1": 0.40, "b2": 0.20}, curves=_heldout(0.0, 0.4)),  # eff 0.2
        RunSpec("grpo", 1, "1B", acc={"b1": 0.50, "b2": 0.20}, curves=_heldout(0.1, 0.5)),  # eff 0.3
        RunSpec("grpo", 2, "1B", acc={"b1": 0.60, "b2": 0.20}, curves=_heldout(0.2, 0.6)),  # eff 0.4
        RunSpec("lambda_grpo", 0, "1B", acc={"b1": 0.50, "b2": 0.10}, curves=_heldout(0.2, 0.6)),  # eff 0.4
        RunSpec("lambda_grpo", 1, "1B", acc={"b1": 0.60, "b2": 0.40}, curves=_heldout(0.3, 0.7)),  # eff 0.5
        RunSpec("lambda_grpo", 2, "1B", acc={"b1": 0.70}, curves=_heldout(0.4, 0.8), eval_in_child=True),  # eff 0.6, no b2
        RunSpec("grpo", 0, "2B", acc={"b1": 0.80, "b2": 0.50}),
        RunSpec("dapo", 0, "2B", acc={"b1": 0.70, "b2": 0.70}),
        RunSpec("dapo", 1, "2B", acc={"b1": 0.90}, state=t.STATE_FAILED),  # left out
    ]
    specs[3].curves[t.TRAIN_LAMBDA] = [(0, 0.0), (10, 0.2), (20, 0.4)]
    return specs


@pytest.fixture(scope="module")
def paper_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper-store")
    uri, client, ids, parent = build_store(folder, paper_specs(), experiment="paper", grid="g1")
    return uri, client, ids, parent


# ---------------------------------------------------------------------------------------------------------
# pure statistics
# ---------------------------------------------------------------------------------------------------------
def test_seed_stats_and_pooled_std_by_hand():
    assert seed_stats([0.4, 0.5, 0.6]) == pytest.approx(seed_stats([0.4, 0.5, 0.6]))
    stats = seed_stats([0.4, 0.5, None, 0.6, float("nan")])
    assert stats.n == 3 and stats.mean == pytest.approx(0.5) and stats.std == pytest.approx(0.1)
    single = seed_stats([0.7])
    assert (single.mean, single.std, single.n) == (0.7, None, 1)
    assert seed_stats([]).mean is None and seed_stats([None]).n == 0
    # SS = 0.02 + 0.045 over 2 + 1 degrees of freedom
    assert pooled_seed_std([[0.4, 0.5, 0.6], [0.1, 0.4], [0.9]]) == pytest.approx(math.sqrt(0.065 / 3))
    assert pooled_seed_std([[0.3], [0.2]]) is None


def test_learning_curve_mean_is_the_trapezoid_time_average():
    assert learning_curve_mean([0, 10, 20], [0.0, 0.5, 1.0]) == pytest.approx(0.5)
    # uneven spacing: (0.5·(0+1)·10 + 0.5·(1+1)·30) / 40 = 0.875
    assert learning_curve_mean([0, 10, 40], [0.0, 1.0, 1.0]) == pytest.approx(0.875)
    assert learning_curve_mean([5], [0.3]) == 0.3
    assert learning_curve_mean([], []) is None


def test_aggregate_curves_mean_band_and_coverage():
    steps, mean, std, count = aggregate_curves([([0, 10, 20], [0.0, 1.0, 2.0]), ([0, 20], [2.0, 2.0]), ([0, 10], [1.0, 3.0])])
    assert list(steps) == [0, 10, 20]
    assert list(count) == [3, 3, 2]
    assert mean == pytest.approx([1.0, 2.0, 2.0])
    assert std == pytest.approx([1.0, 1.0, 0.0])


def test_generated_tokens():
    assert generated_tokens([10.0, 20.0, 30.0], completions_per_step=8) == 480.0


# ---------------------------------------------------------------------------------------------------------
# table from a real store
# ---------------------------------------------------------------------------------------------------------
def _rows(markdown: str, block: int = 0) -> dict[tuple[str, str], list[str]]:
    """Cells after (Size, Algorithm) of the ``block``-th Markdown table, keyed by (Size, Algorithm)."""
    rows = {}
    tables = [b for b in markdown.split("\n\n") if b.startswith("|")]
    for line in tables[block].splitlines():
        if line.startswith("| ") and not line.startswith("| Size"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def test_table_cells_bold_n_and_missing_by_hand(paper_store):
    uri, _, _, _ = paper_store
    table, data, _ = load_report_table(uri, experiments=["paper"], statistics=False)
    assert data.skipped == {"failed": 1}
    assert [c.key for c in table.columns] == ["b1", "b2"] and table.has_average and table.has_efficiency
    markdown = to_markdown(table)
    rows = _rows(markdown)
    # columns after Size, Algorithm: n, b1, b2, Average, Sample eff.
    assert rows[("1B", "grpo")] == ["3", "50.0 ± 10.0", "20.0 ± 0.0", "35.0 ± 5.0", "30.0 ± 10.0"]
    assert rows[("1B", "lambda\\_grpo")] == ["3", "**60.0 ± 10.0**", "**25.0 ± 21.2** (n=2)", "**40.0 ± 14.1** (n=2)", "**50.0 ± 10.0**"]
    assert rows[("1B", "seed std (pooled)")] == ["", "10.0", "12.2", "9.1", "10.0"]
    assert rows[("2B", "grpo")] == ["1", "**80.0 ± —**", "50.0 ± —", "65.0 ± —", "—"]
    assert rows[("2B", "dapo")] == ["1", "70.0 ± —", "**70.0 ± —**", "**70.0 ± —**", "—"]
    assert rows[("2B", "seed std (pooled)")] == ["", "—", "—", "—", "—"]
    # Δ table: lambda_grpo − grpo = +10.0, +5.0, +5.0 (averages), +20.0 (efficiency); 2B: dapo − grpo
    delta_rows = _rows(markdown, block=1)
    assert delta_rows[("1B", "lambda\\_grpo")] == ["+10.0", "+5.0", "+5.0", "+20.0"]
    assert delta_rows[("2B", "dapo")] == ["-10.0", "+20.0", "+5.0", "—"]
    assert "runs left out (not finished): 1 failed" in markdown


def test_markdown_is_a_well_formed_table(paper_store):
    table, _, _ = load_report_table(paper_store[0], experiments=["paper"], statistics=False)
    blocks = [b for b in to_markdown(table).split("\n\n") if b.startswith("|")]
    assert len(blocks) == 2
    for block in blocks:
        lines = block.splitlines()
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in lines}
        assert len(widths) == 1, block
        assert re.fullmatch(r"\|(---:?\|)+", lines[1])


def test_eval_child_runs_are_merged_into_their_train_run(paper_store):
    uri, client, ids, _ = paper_store
    data = load_runs(client, ["paper"])
    merged = next(r for r in data.runs if r.run_id == "lambda_grpo-1B-s2")
    assert merged.eval_metrics["b1"]["acc"] == 0.70
    assert merged.eval_source["b1"] != ids["lambda_grpo-1B-s2"]  # the child eval run holds it
    assert merged.eval_identity["b1"]["hash"] == "hash-b1"
    assert len(data.runs) == 8 and data.grid_runs == {paper_store[3]: "g1"} and data.grid_parents == [paper_store[3]]


def test_latex_escaping_and_structure():
    assert escape_latex("a_b%c&d#e$f{g}h~i^j\\k") == r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    assert escape_markdown("dr_grpo|x*") == r"dr\_grpo\|x\*"
    specs = [RunSpec("grpo", s, "7B_%&#", acc={"math_500%": 0.5 + 0.1 * s, "aime#24&": 0.1}) for s in range(2)]
    specs += [RunSpec("lambda_grpo", s, "7B_%&#", acc={"math_500%": 0.6, "aime#24&": 0.2}) for s in range(2)]
    runs = [_record(spec) for spec in specs]
    table = build_table(runs)
    latex = to_latex(table)
    body = [line for line in latex.splitlines() if line.endswith(r"\\")]
    assert r"aime\#24\&" in latex and r"math\_500\%" in latex and r"7B\_\%\&\#" in latex and r"lambda\_grpo" in latex
    for line in body:  # Size, Algorithm, n, 2 benchmarks, Average: 5 unescaped & per row (a \multicolumn{k} stands for k cells)
        spans = sum(int(k) - 1 for k in re.findall(r"\\multicolumn\{(\d+)\}", line))
        assert len(re.findall(r"(?<!\\)&", line)) + spans == 5, line
    assert latex.count("{") - latex.count(r"\{") == latex.count("}") - latex.count(r"\}")
    assert latex.count(r"\begin{tabular}") == latex.count(r"\end{tabular}") == 1
    assert [line for line in latex.splitlines() if "rule" in line] == [r"\toprule", r"\midrule", r"\bottomrule"]
    assert r"$\pm$" in latex and r"\textbf{" in latex
    assert not re.search(r"(?<!\\)[%#_](?![^$]*\$)", "\n".join(line for line in latex.splitlines() if not line.startswith("%")))
    deltas = to_latex_deltas(table)
    assert "+10.0" in deltas and r"\bottomrule" in deltas


def _record(spec: RunSpec):
    from lgrpo_bench.reports.loader import RunRecord

    return RunRecord(
        mlflow_run_id=spec.run_id, run_id=spec.run_id, algorithm=spec.algorithm, model=spec.model, model_size=spec.model_size,
        seed=str(spec.seed), state="done", grid=None, experiment_id="0", start_time=0,
        eval_metrics={b: {"acc": v} for b, v in spec.acc.items()},
        eval_identity={b: {"hash": f"hash-{b}", "protocol": "greedy", "k": "1", "temperature": "0.0", "top_p": "1.0"} | spec.identity.get(b, {})
                       for b in spec.acc},
        eval_source={b: spec.run_id for b in spec.acc},
    )


def test_csv_round_trip(paper_store, tmp_path):
    uri, client, ids, _ = paper_store
    result = generate_report(uri, experiments=["paper"], formats=["csv"], out_dir=tmp_path, plots=False, statistics=False)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    data = load_runs(client, ["paper"])
    # in the tables' units, named in the unit column: fractions × 100 in points, lengths in tokens, counts in problems
    units = {"acc": ("points", 100.0), "acc_stderr": ("points", 100.0), "mean_length": ("tokens", 1.0), "n": ("problems", 1.0)}
    expected = {(r.mlflow_run_id, b, m): (units[m][0], units[m][1] * v) for r in data.runs for b, metrics in r.eval_metrics.items()
                for m, v in metrics.items()}
    got = {(row["mlflow_run_id"], row["benchmark"], row["metric"]): (row["unit"], float(row["value"])) for row in rows
           if row["benchmark"] != "train"}
    assert got == expected
    assert len(got) == 4 * (6 + 4 + 1 + 2 + 2)  # 4 metrics × (run, benchmark) pairs of the 8 reported runs
    efficiency = {row["run_id"]: (float(row["value"]), row["unit"]) for row in rows if row["benchmark"] == "train"}
    assert efficiency["grpo-1B-s0"] == (pytest.approx(20.0), "points") and len(efficiency) == 6
    one = next(row for row in rows if row["run_id"] == "grpo-1B-s1" and row["benchmark"] == "b1" and row["metric"] == "acc")
    assert (one["algorithm"], one["seed"], one["model_size"], one["hash"], one["protocol"]) == ("grpo", "1", "1B", "hash-b1", "greedy")
    deltas = list(csv.DictReader(io.StringIO((tmp_path / "deltas.csv").read_text())))
    avg = next(d for d in deltas if d["algorithm"] == "lambda_grpo" and d["column"] == AVERAGE)
    assert float(avg["delta"]) == pytest.approx(5.0) and avg["unit"] == "points"  # the table's 0.05 fraction, in points
    assert avg["ci_low"] == "" and avg["significant"] == ""
    assert {d["column"] for d in deltas} == {"b1", "b2", AVERAGE, EFFICIENCY}
    assert result.files == [tmp_path / "results.csv", tmp_path / "deltas.csv"]


def test_mixed_hashes_or_protocols_are_refused_naming_the_runs_or_split():
    specs = [RunSpec("grpo", 0, acc={"b1": 0.5}), RunSpec("grpo", 1, acc={"b1": 0.6}, identity={"b1": {"hash": "other"}}),
             RunSpec("dapo", 0, acc={"b1": 0.4}, identity={"b1": {"protocol": "avg@16", "k": "16", "temperature": "0.6"}})]
    runs = [_record(s) for s in specs]
    with pytest.raises(IncomparableRuns) as error:
        build_table(runs)
    message = str(error.value)
    assert "benchmark 'b1' was evaluated 3 different ways" in message
    for spec in specs:
        assert spec.run_id in message
    assert "hash=other" in message and "protocol=avg@16" in message and "--split" in message
    table = build_table(runs, split=True)
    assert len(table.columns) == 3 and not table.has_average
    assert all(sum(row.cells[c.key].stats.n for c in table.columns) == row.n for g in table.groups for row in g.rows)


def test_statistics_from_the_store(tmp_path):
    """Δ intervals from the logged accuracies: identical runs → [0, 0] n.s.; a clearly better row → significant,
    with the paired t interval computed by hand; the power rows under the Δ table."""
    base = [0.40, 0.50, 0.45]
    specs = [RunSpec("grpo", s, acc={"b1": base[s]}) for s in range(3)]
    specs += [RunSpec("dapo", s, acc={"b1": base[s]}) for s in range(3)]  # identical values
    specs += [RunSpec("lambda_grpo", s, acc={"b1": base[s] + d}) for s, d in enumerate([0.10, 0.20, 0.30])]
    uri, _, _, _ = build_store(tmp_path, specs)
    result = generate_report(uri, formats=["md", "csv"], out_dir=tmp_path / "out", plots=False)
    deltas = {row.algorithm: row.cells["b1"] for row in result.table.groups[0].deltas}
    assert deltas["dapo"].delta == 0 and not deltas["dapo"].interval.significant
    assert (deltas["dapo"].interval.low, deltas["dapo"].interval.high, deltas["dapo"].interval.p_value) == (0.0, 0.0, 1.0)
    lam = deltas["lambda_grpo"].interval
    # d = (0.1, 0.2, 0.3): mean 0.2, sd 0.1, SE 0.1/√3; t_{0.975, 2} = 4.302653 → 0.2 ± 0.248414
    assert lam.method == "paired t" and lam.n_pairs == 3 and lam.df == 2
    assert (lam.low, lam.high) == pytest.approx((0.2 - 0.248414, 0.2 + 0.248414), abs=1e-6)
    assert not lam.significant  # 3 seeds: a 20-point gain with a 10-point spread of differences is not enough
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert re.search(r"\| tiny \| dapo \| \+0\.0 \[\+0\.0, \+0\.0\] p=1\.000 n\.s\. \|", markdown)
    assert "| tiny | lambda\\_grpo | +20.0 [-4.8, +44.8] p=0.074 n.s. |" in markdown
    assert "MDE (80 % power)" in markdown and "seeds for 1 / 2 pts" in markdown
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "deltas.csv").read_text())))
    got = {(r["algorithm"], r["column"]): r for r in rows}
    assert got[("dapo", "b1")]["significant"] == "false" and got[("lambda_grpo", "b1")]["method"] == "paired t"
    assert float(got[("lambda_grpo", "b1")]["p_value"]) == pytest.approx(0.074180, abs=1e-6)


def test_per_problem_records_are_read_back(tmp_path):
    """load_problem_records + per_problem_accuracy (for notebooks): the artifact of each run, None when absent."""
    specs = [RunSpec("grpo", 0, records={"b1": [True, False, True]}), RunSpec("grpo", 1, acc={"b1": 0.5}, eval_in_child=True)]
    uri, client, ids, _ = build_store(tmp_path, specs)
    data = load_runs(client)
    wanted = [(run.eval_source["b1"], "b1") for run in data.runs]
    roots = {run_id: uri for run in data.runs for run_id, uri in run.artifact_uris.items()}
    records = load_problem_records(client, wanted, roots)
    by_run = {run.run_id: records[(run.eval_source["b1"], "b1")] for run in data.runs}
    assert per_problem_accuracy(by_run["grpo-tiny-s0"]) == {"p0": 1.0, "p1": 0.0, "p2": 1.0}
    assert by_run["grpo-tiny-s1"] is None


def test_plots_written_and_logged_to_the_grid_parent_run(paper_store, tmp_path):
    uri, client, _, parent = paper_store
    result = generate_report(uri, grid="g1", formats=["html", "latex"], out_dir=tmp_path, statistics=False)
    for name in ("training_curves", "heldout_accuracy", "token_preference", "accuracy_vs_compute"):
        for suffix in ("png", "pdf"):  # PDFs with the latex format, for \includegraphics
            path = tmp_path / "plots" / f"{name}.{suffix}"
            assert path.is_file() and path.stat().st_size > 1000, path
    assert result.logged_to == [parent]
    logged = {a.path for a in client.list_artifacts(parent, "report/plots")}
    assert logged == {f"report/plots/{n}.{s}" for n in ("training_curves", "heldout_accuracy", "token_preference", "accuracy_vs_compute")
                      for s in ("png", "pdf")}
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "<table>" in page and "lambda_grpo" in page


def test_missing_selection_is_a_clear_error(paper_store, tmp_path):
    uri, client, _, _ = paper_store
    with pytest.raises(ReportInputError, match="no experiment named 'nope'"):
        load_runs(client, ["nope"])
    client.create_experiment("empty", artifact_location=(tmp_path / "a").as_uri())
    with pytest.raises(ReportInputError, match="no finished train run in experiment\\(s\\) empty"):
        load_runs(client, ["empty"])
    with pytest.raises(ReportInputError, match="no finished train run"):
        load_runs(client, ["paper"], grid="no-such-grid")
    with pytest.raises(ReportInputError, match="MLflow rejected the filter"):
        load_runs(client, ["paper"], filter_string="tags.`lgrpo.grid` ~~ 3")
    with pytest.raises(ReportInputError, match="unknown format"):
        generate_report(uri, formats=["docx"], out_dir=tmp_path)


def test_print_summary_table(paper_store):
    from rich.console import Console

    console = Console(record=True, width=200)
    from lgrpo_bench.reports import print_summary_table

    table = print_summary_table(paper_store[0], experiments=["paper"], console=console, statistics=False)
    text = console.export_text()
    assert table is not None and "lambda_grpo" in text and "60.0 ± 10.0" in text and "Δ vs grpo" in text
    assert print_summary_table(paper_store[0], experiments=["nope"], console=console) is None
    assert "no results table" in console.export_text()


def test_sql_fast_path_reads_what_search_runs_reads(paper_store):
    """The SQLite reader (no MLflow) and MLflow's client give the report the same runs."""
    uri, client, _, _ = paper_store
    direct = open_store(uri)
    for grid in (None, "g1"):
        fast, slow = load_runs(direct, ["paper"], grid=grid), load_runs(client, ["paper"], grid=grid)
        assert fast.runs == slow.runs and fast.grid_runs == slow.grid_runs and fast.skipped == slow.skipped
        assert len(fast.runs) == 8
    # tag filters (what `plan` reads: model and task), with and without the grid
    tags = {t.TAG_MODEL_SIZE: "1B", t.TAG_ALGORITHM: "grpo"}
    fast, slow = load_runs(direct, tags=tags), load_runs(client, tags=tags)
    assert fast.runs == slow.runs and [r.run_id for r in fast.runs] == ["grpo-1B-s0", "grpo-1B-s1", "grpo-1B-s2"]
    assert load_runs(client, grid="g1", tags=tags).runs == fast.runs
    assert fast.runs[0].params["train.num_generations"] == "4"  # every logged param is kept (row keys come from them)
