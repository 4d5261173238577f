"""The report's evaluation-statistics sections: the nested design, the per-question paired Δ, the aggregate
across benchmarks (and its performance-profile plot), built from a :class:`~.table.ReportTable` and the runs'
per-problem records; rendered as Markdown (appended to ``table.md``) and HTML (inserted into ``report.html``).

When each section appears (so a report of one benchmark without sampled evaluations is unchanged, byte for byte):

* **Evaluation sampling (nested design)**: a benchmark column evaluated with k ≥ 2 samples per problem (avg@k)
  whose runs logged their per-problem records (``eval/<benchmark>/problems.jsonl``; a row with a run without them is
  left out, so every number agrees with the table's). Per row: the observed std
  of the run scores over seeds, and its split into the training-seed std and the evaluation-sampling std
  (:func:`~.nested.variance_components`); per Δ: its standard error split the same way (:func:`~.nested.nested_delta`;
  the interval is the table's, which covers both levels).
* **Per-question paired Δ (one seed)**: a Δ the table shows without an interval because each side has one seed,
  when both runs logged records: Miller's paired per-question interval (:func:`~.nested.paired_question_interval`),
  marked as conditional on the two trained models.
* **Across benchmarks**: two benchmark columns or more. Per row with runs holding every benchmark: the IQM over
  runs × benchmarks with its interval, ΔIQM vs the row's baseline and the probability of improvement
  (:mod:`.aggregate`), and the performance profile plot (``plots/performance_profile.png``).

Only for the accuracy metric (``acc``): the statistics read per-problem correctness.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lgrpo_bench.reports.aggregate import MIN_POI_SEEDS, AggregateComparison, compare_aggregates
from lgrpo_bench.reports.loader import RunRecord, Store, load_problem_records
from lgrpo_bench.reports.nested import (
    NestedDelta,
    PairedQuestions,
    VarianceComponents,
    correct_by_problem,
    nested_delta,
    paired_question_interval,
    run_score,
    variance_components,
)
from lgrpo_bench.reports.table import COMPARABILITY_FIELDS, Column, ReportTable, Row

__all__ = ["PERFORMANCE_PROFILE", "PERFORMANCE_PROFILE_CAPTION", "EvalSections", "build_eval_sections"]

PERFORMANCE_PROFILE = "performance_profile"
PERFORMANCE_PROFILE_CAPTION = ("Performance profile (rliable's score distribution): the share of runs × benchmarks whose accuracy "
                               "exceeds τ, one line per table row; a line above another is better at every threshold.")
_HTML_SECTION_END = "</body></html>"
_LEFT = ' class="l"'


def _pts(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def _interval(pair: tuple[float, float] | None, scale: float = 100.0, signed: bool = True) -> str:
    if pair is None:
        return "—"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f"[{fmt.format(scale * pair[0])}, {fmt.format(scale * pair[1])}]"


@dataclass
class NestedRowStats:
    model_size: str
    label: str
    column: str
    components: VarianceComponents


@dataclass
class NestedDeltaStats:
    model_size: str
    label: str
    column: str
    result: NestedDelta


@dataclass
class QuestionStats:
    model_size: str
    label: str
    column: str
    result: PairedQuestions


@dataclass
class AggregateStats:
    model_size: str
    label: str
    baseline_label: str | None
    result: AggregateComparison | None
    scores: np.ndarray
    """(runs, benchmarks) of the row: the performance profile's data."""


@dataclass
class EvalSections:
    """The three sections' numbers (fractions); empty lists where a section does not apply."""

    confidence: float
    nested_rows: list[NestedRowStats] = field(default_factory=list)
    nested_deltas: list[NestedDeltaStats] = field(default_factory=list)
    questions: list[QuestionStats] = field(default_factory=list)
    aggregates: list[AggregateStats] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.nested_rows or self.questions or self.aggregates)

    # -------------------------------------------------------------------------------------------------
    def _tables(self) -> list[tuple[str, list[str], list[list[str]], str]]:
        """(title, header, rows, caption) of each section that applies."""
        level = f"{100 * self.confidence:g} %"
        out = []
        if self.nested_rows:
            rows = [[s.model_size, s.label, s.column, str(s.components.samples or "—"), str(s.components.n), _pts(s.components.observed_std),
                     _pts(s.components.train_std), _pts(s.components.eval_std)] for s in self.nested_rows]
            out.append(("Evaluation sampling (nested design)",
                        ["Size", "Algorithm", "Benchmark", "k", "runs", "seed std (observed)", "training-seed std", "eval-sampling std"], rows,
                        "Points. Each run's score is the mean over N problems of k samples each: score = run effect + mean of its "
                        "evaluation-sampling noise. eval-sampling std = sqrt(mean over runs of v_r), v_r = Σ_i p̂_i(1 − p̂_i)/(k − 1)/N² "
                        "from the run's per-problem records: the std of one run's avg@k score over evaluation seeds (×√k for a "
                        "single sample). The observed std over seeds already contains it (s² ≈ σ²_train + σ²_eval); "
                        "training-seed std = sqrt(max(0, s² − σ²_eval)). More samples per problem (larger k) shrink only the eval-sampling std."))
        if self.nested_deltas:
            rows = []
            for s in self.nested_deltas:
                i = s.result.interval
                share = s.result.eval_share
                rows.append([s.model_size, s.label, s.column, _pts(i.delta, True),
                             _interval((i.low, i.high)) if i.low is not None else f"— ({i.reason})" if i.reason else "—",
                             i.method or "—", _pts(s.result.se), _pts(s.result.train_se), _pts(s.result.eval_se),
                             "—" if share is None else f"{100 * share:.0f} %"])
            out.append(("Δ with its standard error split by level",
                        ["Size", "Algorithm", "Benchmark", "Δ", f"{level} interval", "test", "SE", "training-seed part", "eval-sampling part",
                         "eval share of SE²"], rows,
                        f"Points. The {level} interval is the table's t interval over seeds on the run scores; because every run score "
                        "carries its own evaluation-sampling noise, the spread over seeds estimates both levels and the interval covers "
                        "training seeds and evaluation sampling together (summary-measure analysis of a nested design). SE² = "
                        "training-seed part² + eval-sampling part², eval part² = mean over pairs of (v_c + v_b)/n (paired) or "
                        "v̄_c/n_c + v̄_b/n_b (Welch); the training-seed part shows 0 when the evaluation part alone exceeds SE², which "
                        "happens by chance with few seeds when the seed effect is small. Null simulation of the two-level model: false-positive rate 2–8 % at nominal 5 % "
                        "(tests/test_eval_statistics.py)."))
        if self.questions:
            rows = [[s.model_size, s.label, s.column, _pts(s.result.delta, True), _interval((s.result.low, s.result.high)),
                     f"{s.result.p_value:.3f}", str(s.result.questions), f"{s.result.samples_candidate} / {s.result.samples_baseline}"]
                    for s in self.questions]
            out.append(("Per-question paired Δ (single training seed: conditional on the two trained models)",
                        ["Size", "Algorithm", "Benchmark", "Δ", f"{level} interval", "p", "questions", "samples c / b"], rows,
                        "Points. One seed per side, so no interval over seeds exists; this interval (Miller 2024, arXiv 2411.00640: "
                        "paired per-question differences d_i = mean of the candidate's samples − the baseline's, SE clustered by "
                        "question = sd(d)/√N, t on N − 1 df) covers the questions and the evaluation sampling only. It says whether "
                        "these two checkpoints differ, not whether the algorithm does: another training seed gives other models."))
        if self.aggregates:
            rows = []
            for s in self.aggregates:
                r = s.result
                if r is None:
                    rows.append([s.model_size, s.label, str(len(s.scores)), "—", "—", "—", "—", "—"])
                    continue
                compared = s.baseline_label is not None
                if not compared:
                    poi = "—"
                elif r.poi_interval is None:
                    poi = f"{r.poi:.2f} (no interval: {r.n_candidate if r.n_candidate < 2 else min(r.n_candidate, r.n_baseline)} runs)"
                else:
                    poi = f"{r.poi:.2f} [{r.poi_interval[0]:.2f}, {r.poi_interval[1]:.2f}]"
                rows.append([s.model_size, s.label, f"{r.n_candidate} × {r.benchmarks}",
                             f"{_pts(r.iqm_candidate)} {_interval(r.iqm_candidate_interval, signed=False)}",
                             s.baseline_label or "—",
                             f"{_pts(r.iqm_delta, True)} {_interval(r.iqm_delta_interval)}" if compared else "—",
                             poi, ("paired by seed" if r.paired else "unpaired") if compared else "—"])
            out.append((f"Across benchmarks ({', '.join(self.benchmarks)})",
                        ["Size", "Algorithm", "runs × benchmarks", "IQM [interval]", "vs", "ΔIQM [interval]", "P(improvement) [interval]",
                         "pairing"], rows,
                        "IQM in points: the mean of the middle 50 % of all runs × benchmarks accuracies pooled (rliable's aggregate_iqm, "
                        "Agarwal et al. 2021). P(improvement): mean over benchmarks of P(row's run > baseline's run), ties ½ — paired "
                        "by seed (each run against its own seed's twin) when both rows ran the same seeds, else over all pairs of runs "
                        f"(Mann–Whitney, rliable's definition). {level} intervals: bootstrap over runs stratified by row, a run "
                        "resampled with all its benchmarks (its scores are correlated), the same seeds for both rows when paired; "
                        "estimate ± t·√(m/(m − 1))·bootstrap SE (small-sample expansion). P(improvement) gets an interval from "
                        f"{MIN_POI_SEEDS} runs per row. Null simulation: false-positive rates 2–8 % at nominal 5 % "
                        "(tests/test_eval_statistics.py)."))
        return out

    def markdown(self) -> str:
        """The sections as Markdown, to append to ``table.md`` ("" when empty)."""
        from lgrpo_bench.reports.render.markdown import escape_markdown

        parts: list[str] = []
        for title, header, rows, caption in self._tables():
            parts += ["", f"### {title}", "", "| " + " | ".join(escape_markdown(h) for h in header) + " |",
                      "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|"]
            parts += ["| " + " | ".join(escape_markdown(c) for c in row) + " |" for row in rows]
            parts += ["", f"*{escape_markdown(caption)}*"]
        return "\n".join(parts) + "\n" if parts else ""

    def html(self, profile_png: bytes | None = None) -> str:
        """The sections as HTML (tables, and the performance profile when given); "" when empty."""
        import base64

        parts: list[str] = []
        for title, header, rows, caption in self._tables():
            parts.append(f"<h2>{html.escape(title)}</h2>")
            def cell(tag: str, index: int, text: str) -> str:
                return f"<{tag}{_LEFT if index < 3 else ''}>{html.escape(text)}</{tag}>"

            parts.append("<table>" + f"<caption>{html.escape(caption)}</caption>"
                         + "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>"
                         + "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
                         + "</table>")
        if profile_png:
            encoded = base64.b64encode(profile_png).decode("ascii")
            parts.append(f'<figure id="{PERFORMANCE_PROFILE}"><img alt="{PERFORMANCE_PROFILE}" src="data:image/png;base64,{encoded}">'
                         f"<figcaption>{html.escape(PERFORMANCE_PROFILE_CAPTION)}</figcaption></figure>")
        return "\n".join(parts)

    def into_html(self, page: str, profile_png: bytes | None = None) -> str:
        """``page`` (a ``report.html``) with the sections inserted before its end; unchanged when empty."""
        section = self.html(profile_png)
        if not section or _HTML_SECTION_END not in page:
            return page
        at = page.rindex(_HTML_SECTION_END)
        return page[:at] + '<section id="evaluation-statistics">\n' + section + "\n</section>\n" + page[at:]

    def profile_figure(self):
        """The performance-profile figure (matplotlib), one subplot per model size; ``None`` without aggregates."""
        if not self.aggregates:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from lgrpo_bench.reports.aggregate import performance_profile

        sizes = list(dict.fromkeys(s.model_size for s in self.aggregates))
        figure, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 3.8), squeeze=False)
        thresholds = np.linspace(0.0, 1.0, 201)
        styles = ["-", "--", "-.", ":"]
        for axis, size in zip(axes[0], sizes):
            for index, stats in enumerate(s for s in self.aggregates if s.model_size == size):
                axis.step(100 * thresholds, performance_profile(stats.scores, thresholds), where="post",
                          linestyle=styles[index % len(styles)], label=f"{stats.label} (n={len(stats.scores)})")
            axis.set_title(f"model size {size}", fontsize=10)
            axis.set_xlabel("accuracy threshold τ (points)")
            axis.set_ylabel("share of runs × benchmarks > τ")
            axis.set_ylim(-0.02, 1.02)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        figure.tight_layout()
        return figure


def _sampled_k(column: Column) -> int:
    identity = dict(column.identity)
    try:
        return int(identity.get("k") or 1)
    except ValueError:
        return 1


def _holds(run: RunRecord, column: Column) -> bool:
    identity = run.eval_identity.get(column.benchmark, {})
    return tuple((name, identity.get(name, "")) for name in COMPARABILITY_FIELDS) == column.identity


def _records_key(run: RunRecord, benchmark: str) -> tuple[str, str]:
    return run.eval_source.get(benchmark, run.mlflow_run_id), benchmark


def build_eval_sections(table: ReportTable, store: Store | None) -> EvalSections:
    """The sections of ``table`` (module doc), reading records from ``store`` only where a section needs them."""
    sections = EvalSections(table.confidence)
    if not table.statistics or table.metric != "acc":
        return sections
    columns = [c for c in table.columns if getattr(c, "source", "eval") == "eval"]
    replicate = table.row_keys.replicate

    def find_row(group, delta) -> tuple[Row | None, Row | None]:
        row = next((r for r in group.rows if r.algorithm == delta.algorithm and r.key_values == delta.key_values), None)
        bases = [r for r in group.rows if r.algorithm == table.baseline]
        base = bases[delta.match.index] if delta.match is not None and delta.match.index is not None else None
        return row, base

    sampled = [c for c in columns if _sampled_k(c) >= 2]
    one_seed = []
    for group in table.groups:
        for delta in group.deltas:
            row, base = find_row(group, delta)
            if row is None or base is None:
                continue
            for column in columns:
                cell = delta.cells.get(column.key)
                if cell is not None and cell.interval is not None and cell.interval.method is None and row.n == 1 and base.n == 1:
                    one_seed.append((group, row, base, column))
    wanted = {_records_key(run, c.benchmark) for c in sampled for g in table.groups for r in g.rows for run in r.runs if _holds(run, c)}
    wanted |= {_records_key(run, c.benchmark) for _, row, base, c in one_seed for run in (*row.runs, *base.runs) if _holds(run, c)}
    records = {}
    if wanted and store is not None:
        uris = {k: v for g in table.groups for r in g.rows for run in r.runs for k, v in run.artifact_uris.items()}
        records = load_problem_records(store, sorted(wanted), uris)

    def samples_of(run: RunRecord, column: Column) -> dict[str, list[float]] | None:
        found = records.get(_records_key(run, column.benchmark)) if _holds(run, column) else None
        return correct_by_problem(found) if found else None

    for column in sampled:
        for group in table.groups:
            scores_of: dict[str, dict] = {}
            for row in group.rows:
                scores = {}
                for run in row.runs:
                    samples = samples_of(run, column)
                    if samples:
                        scores[replicate(run)] = run_score(samples)
                if len(scores) != row.n:  # a run without records: the row's statistics would not be the table's
                    scores = {}
                scores_of[row.label] = scores
                if scores:
                    ks = {s.samples for s in scores.values()}
                    sections.nested_rows.append(NestedRowStats(group.model_size, row.label, column.label, variance_components(
                        [s.score for s in scores.values()], [s.eval_variance for s in scores.values()], ks.pop() if len(ks) == 1 else None)))
            for delta in group.deltas:
                row, base = find_row(group, delta)
                if row is None or base is None or not scores_of.get(row.label) or not scores_of.get(base.label):
                    continue
                result = nested_delta(scores_of[row.label], scores_of[base.label], confidence=table.confidence)
                if result is not None:
                    sections.nested_deltas.append(NestedDeltaStats(group.model_size, row.label, column.label, result))
    for group, row, base, column in one_seed:
        candidate, baseline = samples_of(row.runs[0], column), samples_of(base.runs[0], column)
        if candidate and baseline:
            result = paired_question_interval(candidate, baseline, confidence=table.confidence)
            if result is not None:
                sections.questions.append(QuestionStats(group.model_size, row.label, column.label, result))
    if len(columns) >= 2:
        sections.benchmarks = [c.label for c in columns]
        _aggregates(sections, table, columns)
    return sections


def _aggregates(sections: EvalSections, table: ReportTable, columns: Sequence[Column]) -> None:
    replicate = table.row_keys.replicate

    def matrix(row: Row) -> dict:
        out = {}
        for run in row.runs:
            values = [run.eval_metrics.get(c.benchmark, {}).get(table.metric) if _holds(run, c) else None for c in columns]
            if all(v is not None and not math.isnan(v) for v in values):
                out[replicate(run)] = [float(v) for v in values]
        return out

    for group in table.groups:
        bases = [r for r in group.rows if r.algorithm == table.baseline]
        base_of: Mapping[str, Row] = {}
        for delta in group.deltas:
            if delta.match is not None and delta.match.index is not None:
                label = next((r.label for r in group.rows if r.algorithm == delta.algorithm and r.key_values == delta.key_values), None)
                if label is not None:
                    base_of[label] = bases[delta.match.index]
        for row in group.rows:
            scores = matrix(row)
            if not scores:
                continue
            base = base_of.get(row.label)
            result = None
            if base is not None and matrix(base):
                result = compare_aggregates(scores, matrix(base), confidence=table.confidence)
            elif row.algorithm == table.baseline:
                result = compare_aggregates(scores, scores, confidence=table.confidence)
            sections.aggregates.append(AggregateStats(group.model_size, row.label, base.label if base is not None else None,
                                                      result, np.array(list(scores.values()))))
