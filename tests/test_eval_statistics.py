"""Evaluation statistics (issue 27, items 4 and 5): the nested interval, the per-question paired analysis and the
aggregate across benchmarks; hand-computed cases and a null simulation of each method's false-positive rate.

Simulation model: tests/nested_simulation.py (training-seed effect per run on the logit scale, k binomial
evaluation samples per problem; across benchmarks a seed effect shared by a run's benchmarks with correlation ρ).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from nested_simulation import BenchmarkSuite, nested_scores, question_samples
from seed_simulation import difficulties, logit_seed_std

from lgrpo_bench.reports.aggregate import (
    MIN_POI_SEEDS,
    compare_aggregates,
    compare_arrays,
    iqm,
    performance_profile,
    probability_of_improvement,
)
from lgrpo_bench.reports.nested import (
    RunScore,
    correct_by_problem,
    nested_delta,
    nested_t_interval_arrays,
    paired_question_arrays,
    paired_question_interval,
    run_score,
    variance_components,
)
from lgrpo_bench.reports.stats import PAIRED_T, WELCH_T, delta_interval

T_975_DF2 = math.sqrt(0.9025 * 2 / 0.0975)
"""t_{0.975, 2} = 4.3026527 in closed form (tests/test_reports_stats.py)."""


def _rejects(low, high, null: float = 0.0) -> float:
    return float(np.mean((np.asarray(low) > null) | (np.asarray(high) < null)))


# ---------------------------------------------------------------------------------------------------------
# item 4: the nested design, by hand
# ---------------------------------------------------------------------------------------------------------
def test_run_score_and_its_evaluation_variance_by_hand():
    """Two problems, k = 4: p̂ = 3/4 and 1/4 → score 1/2; v = (3/16 + 3/16)/3 / 2² = 1/32."""
    records = [{"problem_id": "a", "sample": j, "correct": c} for j, c in enumerate([1, 1, 1, 0])]
    records += [{"problem_id": "b", "sample": j, "correct": c} for j, c in enumerate([0, 1, 0, 0])]
    samples = correct_by_problem(reversed(records))
    assert samples == {"a": [1.0, 1.0, 1.0, 0.0], "b": [0.0, 1.0, 0.0, 0.0]}  # ordered by sample, whatever the file order
    score = run_score(samples)
    assert (score.score, score.problems, score.samples) == (0.5, 2, 4)
    assert score.eval_variance == pytest.approx(1 / 32, abs=1e-15)
    assert run_score({"a": [1.0], "b": [0.0]}).eval_variance is None  # one sample: no sampling variance estimable


def test_evaluation_variance_is_unbiased():
    """E[v] = (1/N²) Σ p_i(1 − p_i)/k, the variance of the avg@k score over evaluation seeds (model fixed)."""
    rng = np.random.default_rng(3)
    p = np.array([0.1, 0.5, 0.8])
    k = 5
    accuracy = rng.binomial(k, p, (200_000, 3)) / k
    v = (accuracy * (1 - accuracy) / (k - 1)).sum(axis=1) / 9
    truth = float(np.sum(p * (1 - p)) / k / 9)
    assert float(v.mean()) == pytest.approx(truth, rel=0.01)
    assert float(accuracy.mean(axis=1).var()) == pytest.approx(truth, rel=0.02)


def test_variance_components_by_hand():
    """Scores (0.50, 0.56, 0.62): s² = 0.0036; v̄ = 0.0011 → σ_eval = √0.0011, σ_train = √0.0025 = 0.05."""
    parts = variance_components([0.50, 0.56, 0.62], [0.0010, 0.0012, 0.0011], samples=8)
    assert parts.observed_std == pytest.approx(0.06, abs=1e-12)
    assert parts.eval_std == pytest.approx(math.sqrt(0.0011), abs=1e-12)
    assert parts.train_std == pytest.approx(0.05, abs=1e-12)
    assert variance_components([0.5, 0.5], [0.001, 0.001]).train_std == 0.0  # s² < v̄: shown as 0, never imaginary
    assert variance_components([0.5], [0.001]).train_std is None


def test_nested_paired_delta_by_hand():
    """d = (1, 2, 3) points → SE² = 1/3 points²; v_c + v_b = (0.5, 0.2, 0.3) points² → eval part 0.1/3;
    the interval is the paired t interval over seeds, 2 ± 4.302653/√3 points."""
    p2 = 1e-4  # one point², in fractions
    candidate = {"0": RunScore(0.51, 0.3 * p2, 30, 8), "1": RunScore(0.62, 0.1 * p2, 30, 8), "2": RunScore(0.73, 0.2 * p2, 30, 8)}
    baseline = {"2": RunScore(0.70, 0.1 * p2, 30, 8), "0": RunScore(0.50, 0.2 * p2, 30, 8), "1": RunScore(0.60, 0.1 * p2, 30, 8)}
    result = nested_delta(candidate, baseline)
    assert result.interval.method == PAIRED_T and result.interval.n_pairs == 3
    assert result.se == pytest.approx(0.01 / math.sqrt(3), abs=1e-12)
    assert result.eval_se**2 == pytest.approx(1.0 / 3 / 3 * p2, abs=1e-15)
    assert result.train_se**2 == pytest.approx((1 / 3 - 1 / 9) * p2, abs=1e-15)
    assert result.eval_share == pytest.approx(1 / 3, abs=1e-12)
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert (result.interval.low, result.interval.high) == pytest.approx((0.02 - half, 0.02 + half), abs=1e-10)
    plain = delta_interval({k: v.score for k, v in candidate.items()}, {k: v.score for k, v in baseline.items()})
    assert (result.interval.low, result.interval.high, result.interval.p_value) == pytest.approx((plain.low, plain.high, plain.p_value), abs=1e-12)


def test_nested_welch_delta_by_hand():
    """c = (1, 2, 3), b = (0, 2) points: SE² = 4/3 points² (tests/test_reports_stats.py); v̄_c = 0.6, v̄_b = 0.5
    points² → eval part 0.6/3 + 0.5/2 = 0.45 points²."""
    p2 = 1e-4
    candidate = {"0": RunScore(0.01, 0.6 * p2, 30, 4), "1": RunScore(0.02, 0.5 * p2, 30, 4), "2": RunScore(0.03, 0.7 * p2, 30, 4)}
    baseline = {"3": RunScore(0.00, 0.4 * p2, 30, 4), "4": RunScore(0.02, 0.6 * p2, 30, 4)}
    result = nested_delta(candidate, baseline)
    assert result.interval.method == WELCH_T
    assert result.se**2 == pytest.approx(4 / 3 * p2, abs=1e-15)
    assert result.eval_se**2 == pytest.approx(0.45 * p2, abs=1e-15)
    assert result.interval.df == pytest.approx(32 / 19, abs=1e-9)


def test_nested_delta_of_one_seed_has_no_interval():
    result = nested_delta({"0": RunScore(0.6, 1e-4, 30, 4)}, {"0": RunScore(0.5, 1e-4, 30, 4)})
    assert result.interval.method is None and result.se is None and "one seed" in result.interval.reason


# ---------------------------------------------------------------------------------------------------------
# item 4: the null simulation of the two-level model
# ---------------------------------------------------------------------------------------------------------
REPETITIONS = 4000
"""Binomial SE of a 5 % rate over 4,000 repetitions: 0.34 points; the band 2–8 % is ± 8.7 SE wide."""


@pytest.mark.parametrize(("seeds", "seed_std", "k"), [(3, 0.01, 4), (5, 0.01, 4), (3, 0.06, 16), (5, 0.06, 16)])
def test_nested_interval_false_positive_rate(seeds, seed_std, k):
    """Identical algorithms on a 30-problem benchmark (AIME's size) with k samples per problem. At a 1-point seed std
    and k = 4 the evaluation sampling is most of a run's spread (≈ 3.5 points); at 6 points and k = 16 the seeds
    are. The interval over seeds excludes 0 in 2–8 % of 4,000 comparisons, paired and Welch, in both regimes;
    an interval from the training-seed part alone (SE² − eval part, what "ignoring evaluation sampling" computes)
    is far above 8 % where the sampling dominates."""
    rng = np.random.default_rng(seeds * 100 + k)
    p = difficulties(rng, 30)
    sigma = logit_seed_std(p, seed_std)
    c, c_var = nested_scores(rng, p, REPETITIONS, seeds, sigma, k)
    b, b_var = nested_scores(rng, p, REPETITIONS, seeds, sigma, k)
    for paired in (True, False):
        result, eval_part = nested_t_interval_arrays(c, c_var, b, b_var, paired=paired)
        rate = _rejects(result.low, result.high)
        assert 0.02 <= rate <= 0.08, (paired, rate)
        if seed_std == 0.01:
            assert float(np.mean(eval_part) / np.mean(result.se**2)) > 0.7  # the sampling regime it is meant to test
            from scipy.special import stdtrit

            train_only = np.sqrt(np.maximum(result.se**2 - eval_part, 1e-12))
            half = stdtrit(result.df, 0.975) * train_only
            assert _rejects(result.delta - half, result.delta + half) > 0.2


# ---------------------------------------------------------------------------------------------------------
# item 4: per-question paired analysis (one seed), by hand and by simulation
# ---------------------------------------------------------------------------------------------------------
def test_paired_question_interval_by_hand():
    """3 questions, k_c = 2, k_b = 1: d = (1 − 0, ½ − 1, 1 − 1) = (1, −½, 0); Δ = 1/6;
    Σ(d − Δ)² = 25/36 + 4/9 + 1/36 = 7/6 → SE = √(7/6 / 6) = √(7/36); df 2."""
    candidate = {"q1": [1.0, 1.0], "q2": [1.0, 0.0], "q3": [1.0, 1.0], "only_c": [0.0, 0.0]}
    baseline = {"q3": [1.0], "q1": [0.0], "q2": [1.0]}
    result = paired_question_interval(candidate, baseline)
    assert (result.questions, result.df, result.samples_candidate, result.samples_baseline) == (3, 2, 2, 1)
    assert result.delta == pytest.approx(1 / 6, abs=1e-12)
    assert result.se == pytest.approx(math.sqrt(7 / 36), abs=1e-12)
    assert (result.low, result.high) == pytest.approx((1 / 6 - T_975_DF2 * math.sqrt(7 / 36), 1 / 6 + T_975_DF2 * math.sqrt(7 / 36)), abs=1e-9)
    assert not result.significant
    with pytest.raises(ValueError, match="samples per question"):
        paired_question_interval({"a": [1.0], "b": [1.0, 0.0]}, {"a": [1.0], "b": [0.0]})


def test_paired_question_interval_false_positive_rate():
    """Two models of equal accuracy that differ question by question (tests/nested_simulation.py), on 40 fresh
    questions with 4 samples each: the per-question paired interval excludes 0 in 2–8 % of 4,000 comparisons. Treating the 160 samples as independent (no clustering by question) or the two
    models as unpaired moves the rate out of the band (too many and too few false positives)."""
    rng = np.random.default_rng(11)
    c, b = question_samples(rng, REPETITIONS, 40, 4)
    result = paired_question_arrays(c, b)
    assert 0.02 <= _rejects(result.low, result.high) <= 0.08
    d = (c - b).reshape(REPETITIONS, -1)
    unclustered = 1.96 * d.std(axis=1, ddof=1) / math.sqrt(d.shape[1])
    assert _rejects(d.mean(axis=1) - unclustered, d.mean(axis=1) + unclustered) > 0.1
    a_c, a_b = c.mean(axis=2), b.mean(axis=2)
    unpaired = 1.96 * np.sqrt(a_c.var(axis=1, ddof=1) / 40 + a_b.var(axis=1, ddof=1) / 40)
    assert _rejects(result.delta - unpaired, result.delta + unpaired) < 0.02


# ---------------------------------------------------------------------------------------------------------
# item 5: IQM, probability of improvement, performance profile, by hand
# ---------------------------------------------------------------------------------------------------------
def test_iqm_pools_runs_and_benchmarks_by_hand():
    """3 runs × 4 benchmarks = 12 scores; 3 cut from each end; the mean of the middle 6. Per-benchmark or per-run
    trimming gives other values."""
    scores = np.array([[0.10, 0.90, 0.50, 0.20],
                       [0.30, 0.80, 0.40, 0.00],
                       [0.60, 0.70, 1.00, 0.05]])
    middle = sorted(scores.ravel())[3:9]  # 0.2, 0.3, 0.4, 0.5, 0.6, 0.7
    assert float(iqm(scores)) == pytest.approx(sum(middle) / 6, abs=1e-12) == pytest.approx(0.45, abs=1e-12)
    from scipy.stats import trim_mean

    assert float(iqm(scores)) == pytest.approx(trim_mean(scores, 0.25, axis=None), abs=1e-12)  # rliable's aggregate_iqm
    batch = np.random.default_rng(0).random((7, 5, 3))
    assert iqm(batch) == pytest.approx(trim_mean(batch.reshape(7, 15), 0.25, axis=1), abs=1e-12)
    assert float(iqm(scores)) != pytest.approx(float(np.mean(iqm(scores.T[:, :, None]))), abs=1e-3)


def test_probability_of_improvement_by_hand_paired_and_unpaired():
    """One benchmark, x = (1, 2, 3), y = (0.5, 2.5, 2.9) by seed. Paired: 1 > 0.5, 2 < 2.5, 3 > 2.9 → 2/3.
    Unpaired (Mann–Whitney U / 9): 1 beats 1, 2 beats 1, 3 beats 3 → 5/9. Two benchmarks average; ties count ½."""
    x = np.array([[1.0], [2.0], [3.0]])
    y = np.array([[0.5], [2.5], [2.9]])
    assert float(probability_of_improvement(x, y, paired=True)) == pytest.approx(2 / 3)
    assert float(probability_of_improvement(x, y, paired=False)) == pytest.approx(5 / 9)
    from scipy.stats import mannwhitneyu

    assert 5 / 9 == pytest.approx(mannwhitneyu(x[:, 0], y[:, 0], alternative="greater").statistic / 9)  # rliable's form
    two = np.array([[1.0, 0.4], [2.0, 0.4]]), np.array([[0.0, 0.4], [3.0, 0.1]])
    assert float(probability_of_improvement(*two, paired=True)) == pytest.approx((1 / 2 + (1 / 2 + 1) / 2) / 2)


def test_performance_profile_by_hand():
    scores = np.array([[0.1, 0.5], [0.5, 0.9]])
    assert performance_profile(scores, np.array([0.0, 0.1, 0.5, 0.95])).tolist() == [1.0, 0.75, 0.25, 0.0]


def test_compare_aggregates_pairs_by_seed_and_expands_the_bootstrap():
    """Pairing by replicate id (any order); the interval is estimate ± t·√(n/(n − 1))·sd* with the paired df; a
    shuffle of the baseline's ids changes the PoI (it is computed by seed)."""
    candidate = {s: [0.50 + 0.02 * s, 0.30 + 0.01 * s] for s in range(5)}
    baseline = {s: [0.48 + 0.02 * s, 0.31 + 0.01 * s] for s in reversed(range(5))}
    result = compare_aggregates(candidate, baseline, resamples=500)
    assert result.paired and result.n_candidate == 5 and result.benchmarks == 2
    assert result.poi == pytest.approx(0.5)  # benchmark 1 always better, benchmark 2 always worse
    assert result.iqm_delta == pytest.approx(float(iqm(np.array(list(candidate.values())))) - float(iqm(np.array(list(baseline.values())))))
    assert result.iqm_delta_interval[0] < result.iqm_delta < result.iqm_delta_interval[1]
    assert result.poi_interval == (pytest.approx(0.5), pytest.approx(0.5))  # the same outcome on every resample
    shuffled = compare_aggregates(candidate, {s: baseline[(s + 1) % 5] for s in range(5)}, resamples=500)
    assert shuffled.poi != pytest.approx(result.poi)
    three = compare_aggregates({s: [0.5 + 0.01 * s] for s in range(3)}, {s: [0.5] for s in range(3)}, resamples=200)
    assert three.poi_interval is None and str(MIN_POI_SEEDS) in three.reason and three.iqm_delta_interval is not None
    unpaired = compare_aggregates({s: [0.5 + 0.01 * s] for s in range(3)}, {s + 10: [0.5] for s in range(3)}, resamples=200)
    assert not unpaired.paired


# ---------------------------------------------------------------------------------------------------------
# item 5: the null simulation across benchmarks
# ---------------------------------------------------------------------------------------------------------
AGGREGATE_REPETITIONS = 2000
"""Binomial SE of a 5 % rate over 2,000 repetitions: 0.49 points; the band 2–8 % is ± 6 SE wide."""


@pytest.mark.parametrize(("seeds", "paired"), [(3, True), (5, True), (5, False)])
def test_aggregate_intervals_false_positive_rate(seeds, paired):
    """Identical algorithms on 4 benchmarks of 40 problems (k = 4 samples), seed std 4 points, a run's seed effect
    shared by its benchmarks with ρ = 0.7 (and half of it by both rows' run of a seed when paired): the ΔIQM
    interval excludes 0 and the PoI interval ½ in 2–8 % of 2,000 comparisons (the PoI from 5 runs per row)."""
    rng = np.random.default_rng(seeds + 10 * paired)
    suite = BenchmarkSuite(rng, 4, 40, 0.04)
    shared = rng.normal(size=(AGGREGATE_REPETITIONS, seeds, 1)) if paired else None
    c = suite.scores(rng, AGGREGATE_REPETITIONS, seeds, 4, rho=0.7, shared=shared, share=0.5)
    b = suite.scores(rng, AGGREGATE_REPETITIONS, seeds, 4, rho=0.7, shared=shared, share=0.5)
    result = compare_arrays(c, b, paired=paired, resamples=400)
    assert 0.02 <= _rejects(result.iqm_delta_low, result.iqm_delta_high) <= 0.08
    if seeds >= MIN_POI_SEEDS:
        assert 0.02 <= _rejects(result.poi_low, result.poi_high, 0.5) <= 0.08
    else:
        assert np.isnan(result.poi_low).all()


# ---------------------------------------------------------------------------------------------------------
# the report: sections from a real store (tests/report_store.py), Markdown and HTML
# ---------------------------------------------------------------------------------------------------------
def _sampled_identity(k: int) -> dict[str, str]:
    return {"protocol": f"avg@{k}", "k": str(k), "temperature": "0.6", "top_p": "0.95"}


def _samples(rng: np.random.Generator, accuracy: float, problems: int, k: int) -> list[list[bool]]:
    p = np.clip(rng.beta(0.7, 0.7, problems) + accuracy - 0.5, 0.01, 0.99)
    return [[bool(x) for x in rng.random(k) < pi] for pi in p]


def test_report_shows_the_nested_design_and_the_aggregate(tmp_path):
    """Two algorithms × 5 seeds on two sampled benchmarks (aime24 avg@4, amc23 avg@2) with per-problem records: the
    report's Markdown and HTML gain the nested section (each row's std split by level, read back from the records),
    the Δ's SE split, and the aggregate across benchmarks with its performance profile; the numbers are those of the
    pure functions on the same records, paired by seed."""
    from report_store import RunSpec, build_store

    from lgrpo_bench.reports import generate_report
    from lgrpo_bench.reports.eval_sections import build_eval_sections
    from lgrpo_bench.reports.report import load_report_table

    rng = np.random.default_rng(0)
    specs, truth = [], {}
    for algorithm, accuracy in (("grpo", 0.45), ("dapo", 0.55)):
        for seed in range(5):
            records = {"aime24": _samples(rng, accuracy, 12, 4), "amc23": _samples(rng, accuracy, 10, 2)}
            specs.append(RunSpec(algorithm, seed, records=records, identity={"aime24": _sampled_identity(4), "amc23": _sampled_identity(2)}))
            truth[(algorithm, seed)] = {b: run_score({f"p{i}": [float(x) for x in s] for i, s in enumerate(v)}) for b, v in records.items()}
    uri, *_ = build_store(tmp_path / "store", specs)
    table, _, _ = load_report_table(uri)
    sections = build_eval_sections(table, uri)
    by_row = {(s.label, s.column): s.components for s in sections.nested_rows}
    for algorithm in ("grpo", "dapo"):
        for benchmark, k in (("aime24", 4), ("amc23", 2)):
            column = next(c.label for c in table.columns if c.benchmark == benchmark)
            scores = [truth[(algorithm, s)][benchmark] for s in range(5)]
            expected = variance_components([x.score for x in scores], [x.eval_variance for x in scores], k)
            got = by_row[(algorithm, column)]
            assert (got.n, got.samples) == (5, k)
            assert (got.observed_std, got.eval_std, got.train_std) == pytest.approx(
                (expected.observed_std, expected.eval_std, expected.train_std), abs=1e-12)
    aime = next(d for d in sections.nested_deltas if d.label == "dapo" and d.column.startswith("aime24"))
    expected = nested_delta({s: truth[("dapo", s)]["aime24"] for s in range(5)}, {s: truth[("grpo", s)]["aime24"] for s in range(5)})
    assert aime.result.interval.method == PAIRED_T
    assert (aime.result.se, aime.result.eval_se) == pytest.approx((expected.se, expected.eval_se), abs=1e-12)
    table_cell = next(d for g in table.groups for d in g.deltas if d.algorithm == "dapo").cells[table.columns[0].key].interval
    assert (aime.result.interval.low, aime.result.interval.high) == pytest.approx((table_cell.low, table_cell.high), abs=1e-12)
    dapo = next(a for a in sections.aggregates if a.label == "dapo")
    matrix = lambda algorithm: {s: [truth[(algorithm, s)][b].score for b in ("aime24", "amc23")] for s in range(5)}  # noqa: E731
    direct = compare_aggregates(matrix("dapo"), matrix("grpo"))
    assert dapo.result.paired and dapo.baseline_label == "grpo"
    assert (dapo.result.iqm_delta, dapo.result.poi) == pytest.approx((direct.iqm_delta, direct.poi), abs=1e-12)
    assert dapo.result.iqm_delta_interval == pytest.approx(direct.iqm_delta_interval, abs=1e-12)

    result = generate_report(uri, formats=["md", "html"], out_dir=tmp_path / "report", log_to_grid=False)
    markdown = (tmp_path / "report" / "table.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    for title in ("Evaluation sampling (nested design)", "Δ with its standard error split by level", "Across benchmarks"):
        assert f"### {title}" in markdown and title in page
    assert f"| {_pts_text(by_row[('dapo', column)].eval_std)} |" in markdown
    assert 'id="performance_profile"' in page and page.rstrip().endswith("</body></html>")
    assert (tmp_path / "report" / "plots" / "performance_profile.png") in result.files


def _pts_text(value: float) -> str:
    return f"{100 * value:.1f}"


def test_report_offers_the_per_question_analysis_for_one_seed_only(tmp_path):
    """One seed per algorithm, one greedy benchmark with records: the table's Δ has no interval (one seed), and the
    per-question paired section gives Miller's interval on the same questions, marked single-seed. With a second
    seed per row the section is gone and the report is the table alone, byte for byte."""
    from report_store import RunSpec, build_store

    from lgrpo_bench.reports import generate_report, render
    from lgrpo_bench.reports.report import load_report_table

    candidate = [True, True, False, True, True, False, True, True]
    baseline = [True, False, False, True, False, False, True, False]
    uri, *_ = build_store(tmp_path / "one", [RunSpec("grpo", 0, records={"b1": baseline}), RunSpec("dapo", 0, records={"b1": candidate})])
    generate_report(uri, formats=["md"], out_dir=tmp_path / "r1", plots=False)
    markdown = (tmp_path / "r1" / "table.md").read_text()
    expected = paired_question_interval({str(i): [float(c)] for i, c in enumerate(candidate)}, {str(i): [float(b)] for i, b in enumerate(baseline)})
    assert expected.delta == pytest.approx(3 / 8)
    assert "### Per-question paired Δ (single training seed" in markdown
    assert f"| +37.5 | \\[{100 * expected.low:+.1f}, {100 * expected.high:+.1f}\\] | {expected.p_value:.3f} | 8 | 1 / 1 |" in markdown

    specs = [RunSpec(a, s, records={"b1": r}) for s in (0, 1) for a, r in (("grpo", baseline), ("dapo", candidate))]
    uri, *_ = build_store(tmp_path / "two", specs)
    generate_report(uri, formats=["md"], out_dir=tmp_path / "r2", plots=False)
    table, _, _ = load_report_table(uri)
    assert (tmp_path / "r2" / "table.md").read_text() == render.to_markdown(table)


@pytest.mark.slow
def test_real_sampled_evaluations_feed_the_nested_section(tmp_path):
    """The real evaluation path (lm-eval, HF backend, the shipped tiny-s base, arith avg@4 at temperature 1 on 16
    problems) logs k = 4 records per problem into each of four train runs (two rows × seeds 0 and 1, each evaluated
    with its own evaluation seed); the report reads them back: each row's eval-sampling std is that of the records
    the evaluation returned, and its score the logged acc. All four runs are the same model, so their spread is
    evaluation sampling alone."""
    from report_store import RunSpec, build_store

    from lgrpo_bench.config.schema import EvalConfig
    from lgrpo_bench.evaluation import evaluate
    from lgrpo_bench.reports import generate_report
    from lgrpo_bench.reports.eval_sections import build_eval_sections
    from lgrpo_bench.reports.report import load_report_table

    specs = [RunSpec(algorithm, seed) for algorithm in ("grpo", "dapo") for seed in (0, 1)]
    uri, _, ids, _ = build_store(tmp_path / "store", specs)
    scores = {}
    for index, spec in enumerate(specs):
        config = EvalConfig(backend="hf", limit=16, seed=100 + index, overrides={"arith": {"k": 4, "temperature": 1.0}})
        result = evaluate("tiny-s", ["arith"], config, tracking_uri=uri, mlflow_run_id=ids[spec.run_id]).benchmarks["arith"]
        assert result.identity["protocol"] == "avg@4" and len(result.records) == 16 * 4
        scores[(spec.algorithm, spec.seed)] = run_score(correct_by_problem(result.records))
        assert scores[(spec.algorithm, spec.seed)].score == pytest.approx(result.metrics["acc"], abs=1e-12)
    table, _, _ = load_report_table(uri)
    sections = build_eval_sections(table, uri)
    for algorithm in ("grpo", "dapo"):
        row = next(s.components for s in sections.nested_rows if s.label == algorithm)
        mine = [scores[(algorithm, seed)] for seed in (0, 1)]
        assert row.samples == 4 and row.n == 2
        assert row.eval_std == pytest.approx(math.sqrt(np.mean([s.eval_variance for s in mine])), abs=1e-12)
        assert row.observed_std == pytest.approx(float(np.std([s.score for s in mine], ddof=1)), abs=1e-12)
    generate_report(uri, formats=["md"], out_dir=tmp_path / "report", plots=False)
    assert "### Evaluation sampling (nested design)" in (tmp_path / "report" / "table.md").read_text()
