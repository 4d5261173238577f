"""What a reader of a report meets (issues 12, 15, 16, 18): plots told apart (read from the matplotlib Figures), the
HTML page's title and figure sizes, NaN metrics shown and warned about, the hardware of the rows and the marks of
out-of-band warm starts and rate-limited λ, and a ``--no-plots`` report of a SQLite store that imports neither
MLflow nor matplotlib, pandas or scipy.stats.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from report_store import RunSpec, build_store

from lgrpo_bench.reports import build_table, generate_report, load_report_table, load_runs
from lgrpo_bench.reports.loader import RunRecord, load_histories, open_store
from lgrpo_bench.tracking.reader import SqliteReader
from lgrpo_bench.reports.render import rich_tables, to_html, to_markdown
from lgrpo_bench.reports.report import report_figures
from lgrpo_bench.reports.table import EFFICIENCY
from lgrpo_bench.tracking import schema as t

ALGORITHMS = ("grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full")
ROOT = Path(__file__).resolve().parent.parent


def _cells(markdown: str, block: int) -> dict[str, list[str]]:
    """``{algorithm cell: cells after it}`` of the ``block``-th Markdown table."""
    tables = [b for b in markdown.split("\n\n") if b.startswith("|")]
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in tables[block].splitlines()[2:]]
    return {row[1]: row[2:] for row in rows}


def _record(algorithm: str, seed: int, acc: float, tags=None) -> RunRecord:
    name = f"{algorithm}-s{seed}"
    return RunRecord(
        mlflow_run_id=name, run_id=name, algorithm=algorithm, model="tiny-s", model_size="0.2M", seed=str(seed), state="done",
        grid=None, experiment_id="0", start_time=0, eval_metrics={"arith": {"acc": acc}},
        eval_identity={"arith": {"hash": "h", "protocol": "greedy", "k": "1", "temperature": "0.0", "top_p": "1.0"}},
        eval_source={"arith": name}, train_metrics={t.TRAIN_LAMBDA: 1.0} if algorithm == "lambda_grpo" else {},
        params={"algorithm.name": algorithm, "train.seed": str(seed), "train.num_generations": "8",
                "train.max_completion_length": "40", "train.prompts_per_step": "8", "algorithm.r": "0.3"},
        tags=dict(tags or {}),
    )


@pytest.fixture(scope="module")
def quickstart_like():
    """5 algorithms × 3 seeds with held-out curves (0 → 40 steps) and training curves; dapo and dapo_full identical."""
    runs, histories = [], {t.TRAIN_HELDOUT_ACC: {}, t.TRAIN_REWARD_MEAN: {}, t.TRAIN_COMPLETION_LENGTH_MEAN: {}}
    for index, algorithm in enumerate(ALGORITHMS):
        for seed in range(3):
            run = _record(algorithm, seed, 0.6 + 0.05 * index + 0.01 * seed)
            runs.append(run)
            gain = 0.05 * index + 0.01 * seed
            histories[t.TRAIN_HELDOUT_ACC][run.mlflow_run_id] = ([0, 10, 20, 30, 40], [0.43, 0.5 + gain, 0.55 + gain, 0.6 + gain, 0.6 + gain])
            histories[t.TRAIN_REWARD_MEAN][run.mlflow_run_id] = (list(range(1, 41)), [0.4 + 0.01 * s for s in range(1, 41)])
            histories[t.TRAIN_COMPLETION_LENGTH_MEAN][run.mlflow_run_id] = (list(range(1, 41)), [12.0 + 0.2 * s for s in range(1, 41)])
    heldout = histories[t.TRAIN_HELDOUT_ACC]
    table = build_table(runs, heldout_curves=heldout)
    return table, runs, histories, report_figures(table, runs, histories)


def test_training_curves_one_line_per_row_with_distinct_colours_and_styles(quickstart_like):
    table, _, _, figures = quickstart_like
    figure = figures["training_curves"]
    panels = [axis for axis in figure.axes if axis.get_lines()]
    assert len(panels) == 2  # reward and completion length were logged; entropy and λ were not
    for axis in panels:
        lines = axis.get_lines()
        assert len(lines) == 5
        assert len({line.get_color() for line in lines}) == 5
        assert len({repr(line._unscaled_dash_pattern) for line in lines}) == 5  # the dash pattern matplotlib draws
        assert len({line.get_marker() for line in lines}) == 5
        assert all(collection.get_alpha() <= 0.15 for collection in axis.collections)  # light bands
        assert len(axis.collections) == 5
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert sorted(legend) == sorted(f"{algorithm} (n=3)" for algorithm in ALGORITHMS)


def test_heldout_accuracy_plot_is_the_data_behind_sample_efficiency(quickstart_like):
    table, _, _, figures = quickstart_like
    axis = figures["heldout_accuracy"].axes[0]
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert len(lines) == 5
    row = {r.algorithm: r for r in table.groups[0].rows}
    for algorithm in ALGORITHMS:
        efficiency = 100 * row[algorithm].cells[EFFICIENCY].stats.mean
        label = f"{algorithm} (n=3, sample eff. {efficiency:.1f})"
        assert label in lines, (label, list(lines))
        steps, values = lines[label].get_data()
        assert list(steps) == [0, 10, 20, 30, 40] and values[0] == pytest.approx(43.0)  # points, mean over seeds
    assert len({line.get_color() for line in lines.values()}) == 5


def test_token_preference_coinciding_lines_are_both_visible_and_named(quickstart_like):
    _, _, _, figures = quickstart_like
    axis = figures["token_preference"].axes[0]
    lines = {line.get_label(): line for line in axis.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {"grpo", "dapo", "dr_grpo", "lambda_grpo (λ=1)", "dapo_full"}
    dapo, full = lines["dapo"], lines["dapo_full"]
    assert list(dapo.get_ydata()) == pytest.approx(list(full.get_ydata()))  # both weigh every token equally
    # drawn on top, thinner, with a smaller marker inside dapo's hollow one, in another colour and line style
    assert full.get_zorder() > dapo.get_zorder() and full.get_markersize() < dapo.get_markersize()
    assert full.get_linewidth() < dapo.get_linewidth() and dapo.get_markerfacecolor() == "white"
    assert full.get_color() != dapo.get_color() and full._unscaled_dash_pattern != dapo._unscaled_dash_pattern
    assert "dapo = dapo_full (same weights: the lines overlap)" in axis.get_title()
    legend = [text.get_text() for text in figures["token_preference"].legends[0].get_texts()]
    assert sorted(legend) == sorted(lines)


def test_html_page_title_and_figures_at_readable_size(quickstart_like, tmp_path):
    table, _, _, figures = quickstart_like
    from lgrpo_bench.reports.plots import PNG_DPI

    png = io.BytesIO()
    figures["training_curves"].savefig(png, format="png", dpi=PNG_DPI)
    assert int.from_bytes(png.getvalue()[16:20], "big") == round(figures["training_curves"].get_figwidth() * PNG_DPI)  # IHDR width
    page = to_html(table, {name: png.getvalue() for name in figures}, title="lgrpo-bench report: grid quickstart",
                   subtitle="15 runs from experiment(s) quickstart")
    assert "<title>lgrpo-bench report: grid quickstart</title>" in page and "tags.`" not in page.split("</h1>")[0]
    assert "max-width:48%" not in page and "figure img{display:block;max-width:100%" in page
    assert page.count("<figure") == 4
    for name, figure in figures.items():  # natural width between 900 and 1500 px: readable at 1600 px, shrunk by none
        assert 900 <= figure.get_figwidth() * PNG_DPI <= 1500, name


def test_nan_metric_shows_as_nan_and_warns(tmp_path):
    specs = [RunSpec("grpo", s, acc={"b1": 0.5 + 0.1 * s, "b2": 0.3}) for s in range(2)]
    specs += [RunSpec("dapo", 0, acc={"b1": float("nan"), "b2": 0.4}), RunSpec("dapo", 1, acc={"b1": 0.6, "b2": 0.4})]
    specs += [RunSpec("dr_grpo", s, acc={"b2": 0.35}) for s in range(2)]  # b1 missing: still "—"
    uri, client, ids, _ = build_store(tmp_path, specs)
    for store in (open_store(uri), client):  # the SQLite reader and MLflow's client
        dapo = next(r for r in load_runs(store).runs if r.run_id == "dapo-tiny-s0")
        assert math.isnan(dapo.eval_metrics["b1"]["acc"])
    table, _, _ = load_report_table(uri, statistics=True)
    markdown = to_markdown(table)
    summary, deltas = _cells(markdown, 0), _cells(markdown, 1)
    # columns: n, b1, b2, Average; the NaN run makes its b1 cell and its row's Average NaN, never bold, never "—"
    assert summary["dapo"] == ["2", "NaN", "**40.0 ± 0.0**", "NaN"]
    assert summary["dr\\_grpo"] == ["2", "—", "35.0 ± 0.0", "—"]  # missing stays missing
    assert summary["grpo"][1] == "55.0 ± 7.1"  # the only row with a number in b1: no best (NaN is no competitor)
    assert deltas["dapo"][0] == "NaN" and deltas["dapo"][2] == "NaN" and deltas["dapo"][1].startswith("+10.0 [")
    warnings = [note for note in table.notes if "NaN" in note]
    assert warnings == [f"warning: run dapo-tiny-s0 (dapo, seed 0, MLflow {ids['dapo-tiny-s0']}) logged NaN for eval/b1/acc: "
                        "shown as NaN, not as missing; check its evaluation (run.log)"]


def _hardware_specs() -> list[RunSpec]:
    a = {t.TAG_HARDWARE: "cpu:AMD EPYC 7B13:AVX2", t.TAG_HOST_CPU: "AMD EPYC 7B13", t.TAG_HOST_CPU_CAPABILITY: "AVX2"}
    b = {t.TAG_HARDWARE: "cpu:Intel Xeon 8480+:AVX512", t.TAG_HOST_CPU: "Intel Xeon 8480+", t.TAG_HOST_CPU_CAPABILITY: "AVX512",
         t.TAG_HOST_CUDA_COUNT: "0"}
    out_of_band = {t.TAG_WARM_START_IN_BAND: "false", t.TAG_WARM_START_GREEDY_ACC: "0.082"}
    return [
        RunSpec("grpo", 0, acc={"b1": 0.5}, tags=a | out_of_band), RunSpec("grpo", 1, acc={"b1": 0.6}, tags=a | {t.TAG_WARM_START_IN_BAND: "true"}),
        RunSpec("dapo", 0, acc={"b1": 0.7}, tags=b), RunSpec("dapo", 1, acc={"b1": 0.7}, tags=b),
        RunSpec("lambda_grpo", 0, acc={"b1": 0.8}, tags=a | {t.TAG_LAMBDA_RATE_LIMITED_FRAC: "0.51"}),
        RunSpec("lambda_grpo", 1, acc={"b1": 0.8}, tags=a | {t.TAG_LAMBDA_RATE_LIMITED_FRAC: "0.9"}),
        RunSpec("dr_grpo", 0, acc={"b1": 0.7}, tags=a | {t.TAG_LAMBDA_RATE_LIMITED_FRAC: "0.5"}),  # not most steps: no mark
        RunSpec("dr_grpo", 1, acc={"b1": 0.7}, tags=a),
    ]


@pytest.fixture(scope="module")
def hardware_store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("hardware-store"), _hardware_specs())[0]


def test_hardware_of_each_row_in_the_csv_and_one_line_when_mixed(hardware_store, tmp_path):
    uri = hardware_store
    result = generate_report(uri, formats=["md", "csv", "html", "latex"], out_dir=tmp_path / "out", plots=False)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "results.csv").read_text())))
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0].split(",")
    at = header.index("hardware")
    assert header[at + 1:at + 4] == ["host.cpu", "host.cpu_capability", "host.cuda_count"]
    by_run = {row["run_id"]: row for row in rows if row["metric"] == "acc"}
    assert by_run["dapo-tiny-s0"]["hardware"] == "cpu:Intel Xeon 8480+:AVX512" and by_run["dapo-tiny-s0"]["host.cuda_count"] == "0"
    assert by_run["grpo-tiny-s0"]["host.cpu"] == "AMD EPYC 7B13" and by_run["grpo-tiny-s0"]["host.cuda_count"] == ""
    line = ("rows computed on 2 kinds of hardware: cpu:AMD EPYC 7B13:AVX2 (6 runs), cpu:Intel Xeon 8480+:AVX512 (2 runs) "
            "(results.csv: column hardware)")
    assert result.table.footnotes[-1] == ("", line)
    paragraphs = (tmp_path / "out" / "table.md").read_text().split("\n\n")
    caption = next(i for i, paragraph in enumerate(paragraphs) if paragraph.startswith("*acc in points"))
    assert [p[0] for p in paragraphs[caption + 1:caption + 3]] == ["†", "‡"]
    assert paragraphs[caption + 3] == line  # under the table, after the marks' footnotes
    assert line in (tmp_path / "out" / "report.html").read_text()
    assert "2 kinds of hardware" in (tmp_path / "out" / "table.tex").read_text().split(r"\end{tabular}")[-1]
    from rich.console import Console

    console = Console(record=True, width=400)
    console.print(rich_tables(result.table)[0])
    assert line in " ".join(console.export_text().split())  # in the caption under the table (wrapped)
    one_kind = build_table([_record("grpo", s, 0.5, {t.TAG_HARDWARE: "x"}) for s in range(2)])
    assert one_kind.footnotes == []
    untagged = build_table([_record("grpo", 0, 0.5, {t.TAG_HARDWARE: "x"}), _record("grpo", 1, 0.5)])
    assert untagged.footnotes == [("", "rows computed on 2 kinds of hardware: not recorded (1 run), x (1 run); rows whose seeds "
                                       "mix them: 0.2M grpo (results.csv: column hardware)")]


def test_out_of_band_warm_start_and_rate_limited_lambda_are_marked(hardware_store):
    table, _, _ = load_report_table(hardware_store)
    marks = {row.algorithm: row.marks for row in table.groups[0].rows}
    assert marks == {"grpo": ("†",), "dapo": (), "dr_grpo": (), "lambda_grpo": ("‡",)}
    markdown = to_markdown(table)
    assert "| tiny | grpo† |" in markdown and "| tiny | lambda\\_grpo‡ |" in markdown and "| tiny | dr\\_grpo |" in markdown
    footnotes = dict(table.footnotes)
    assert footnotes["†"] == ("rests on a warm start outside its preset's accuracy band (lgrpo.warm_start.in_band = false): tiny grpo: "
                              "1 of 2 runs (warm-start greedy accuracy 0.082). Another warm start may order the algorithms differently")
    assert footnotes["‡"].startswith("λ still rising at its learning rate: not converged")
    assert "tiny lambda_grpo: 2 of 2 runs, λ at its rate limit in 51 % to 90 % of steps" in footnotes["‡"]
    assert "‡ λ still rising at its learning rate: not converged" in markdown
    assert "| tiny | lambda\\_grpo‡ | +" in markdown  # the Δ row carries its row's mark


def test_sqlite_store_is_read_without_mlflow(tmp_path):
    """open_store gives the SQLite reader; a --no-plots report and plan's power lines import neither MLflow nor the heavy
    plotting/statistics stacks (of scipy only ``scipy.special``, for the t and noncentral t); histories equal MLflow's own get_metric_history, a resumed step keeping its latest value."""
    specs = [RunSpec(algorithm, seed, acc={"b1": 0.5 + 0.1 * seed + (0.05 + 0.02 * seed) * (algorithm == "dapo")},
                     curves={t.TRAIN_HELDOUT_ACC: [(0, 0.1), (10, 0.2 + 0.1 * seed), (20, float("nan"))]},
                     params={"train.num_generations": "8"})
             for algorithm in ("grpo", "dapo") for seed in range(2)]
    uri, client, ids, _ = build_store(tmp_path, specs)
    from mlflow.entities import Metric

    for spec in specs:  # a resumed run logs step 10 again, later: its latest value counts
        client.log_batch(ids[spec.run_id], metrics=[Metric(t.TRAIN_HELDOUT_ACC, 0.3 + 0.1 * spec.seed, 4_000_000_000_000, 10)])
    store = open_store(uri)
    assert isinstance(store, SqliteReader) and store.direct
    fast = load_histories(store, list(ids.values()), [t.TRAIN_HELDOUT_ACC, t.TRAIN_REWARD_MEAN])
    slow = load_histories(client, list(ids.values()), [t.TRAIN_HELDOUT_ACC, t.TRAIN_REWARD_MEAN])
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)  # NaN included (json writes NaN)
    steps, values = fast[t.TRAIN_HELDOUT_ACC][ids["grpo-tiny-s1"]]
    assert steps == [0, 10, 20] and values[:2] == [0.1, 0.4] and math.isnan(values[2])
    assert fast[t.TRAIN_REWARD_MEAN] == {}
    assert json.dumps([asdict(r) for r in load_runs(store).runs]) == json.dumps([asdict(r) for r in load_runs(client).runs])
    script = f"""
import sys
from types import SimpleNamespace
from lgrpo_bench.reports import generate_report
from lgrpo_bench.reports.power_lines import grid_power_lines
result = generate_report({uri!r}, formats=["md", "csv", "latex", "html"], out_dir={str(tmp_path / "out")!r}, plots=False)
point = lambda seed: SimpleNamespace(config=SimpleNamespace(model=SimpleNamespace(name="tiny-s"), task=SimpleNamespace(name="arith"),
                                                            train=SimpleNamespace(seed=seed)))
lines = grid_power_lines([point(0), point(1), point(2)], {uri!r})
heavy = [m for m in ("mlflow", "sqlalchemy", "matplotlib", "pandas", "scipy.stats", "torch") if m in sys.modules]
print(len(result.data.runs), len(lines), heavy)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "1", "[]"]
