"""The report's Δ test and its power: hand-computed cases, textbook sample sizes, and the null simulation.

The simulation model (tests/seed_simulation.py): 500 problems with Beta(0.7, 0.7) difficulties drawn once, a
normal seed effect per run on the logit scale (scaled to the requested seed std in accuracy points), Bernoulli
correctness per problem; both algorithms identical in distribution under the null.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from seed_simulation import difficulties, logit_seed_std, logit_shift_for_gain, percentile_bootstrap_rejects, simulate_accuracies

from lgrpo_bench.reports.loader import RunRecord
from lgrpo_bench.reports.power import (
    STD_CONFIDENCE,
    minimum_detectable_effect,
    power_summary,
    seeds_needed,
    std_upper_limit,
    t_test_power,
)
from lgrpo_bench.reports.stats import PAIRED_T, WELCH_T, delta_interval, t_interval_arrays
from lgrpo_bench.reports.table import build_table

T_975_DF2 = math.sqrt(0.9025 * 2 / 0.0975)
"""t_{0.975, 2} = 4.3026527: for 2 df the t CDF is 1/2 + t / (2√(2 + t²)), so t/√(2 + t²) = 0.95 → t² = 0.9025·2 / 0.0975."""


def _t2_two_sided_p(t: float) -> float:
    """Two-sided p-value of a t statistic on 2 df, in closed form: 1 − t/√(2 + t²)."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


# ---------------------------------------------------------------------------------------------------------
# the interval, by hand
# ---------------------------------------------------------------------------------------------------------
def test_closed_form_constants():
    from scipy import stats

    assert T_975_DF2 == pytest.approx(4.3026527, abs=1e-7) == stats.t.ppf(0.975, 2)


def test_paired_t_interval_by_hand():
    """d = (1, 2, 3) points: mean 2, sd 1, SE 1/√3, df 2 → 2 ± 4.302653/√3; t = 2√3 → p = 1 − 2√3/√14."""
    candidate = {"0": 0.51, "1": 0.62, "2": 0.73}
    baseline = {"0": 0.50, "1": 0.60, "2": 0.70}
    result = delta_interval(candidate, baseline)
    half_width = T_975_DF2 * 0.01 / math.sqrt(3)
    assert result.method == PAIRED_T and result.n_pairs == 3 and result.df == 2
    assert result.delta == pytest.approx(0.02, abs=1e-10)
    assert (result.low, result.high) == pytest.approx((0.02 - half_width, 0.02 + half_width), abs=1e-10)
    assert result.p_value == pytest.approx(_t2_two_sided_p(2 * math.sqrt(3)), abs=1e-9)
    assert result.p_value == pytest.approx(0.0741799, abs=1e-6)
    assert not result.significant  # the interval [-0.5, +4.5] points contains 0


def test_pairing_is_by_seed_not_by_position():
    """The same seeds in another order pair the same way; by position the differences would be (−9, 1, 11)."""
    candidate = {"0": 0.51, "1": 0.62, "2": 0.73}
    shuffled = {"2": 0.70, "0": 0.50, "1": 0.60}
    result = delta_interval(candidate, shuffled)
    assert result.method == PAIRED_T
    assert (result.low, result.high) == pytest.approx((0.02 - T_975_DF2 * 0.01 / math.sqrt(3), 0.02 + T_975_DF2 * 0.01 / math.sqrt(3)), abs=1e-10)
    # replicate ids are tuples in the table (seed, averaged key values); order of insertion never matters
    tuples = delta_interval({("1", "a"): 0.62, ("0", "a"): 0.51, ("2", "a"): 0.73}, {("0", "a"): 0.50, ("2", "a"): 0.70, ("1", "a"): 0.60})
    assert tuples.low == pytest.approx(result.low, abs=1e-10)


def test_welch_interval_by_hand():
    """c = (1, 2, 3), b = (0, 2) points (seed sets differ): SE² = 1/3 + 2/2 = 4/3 (points²);
    ν = (4/3)² / ((1/3)²/2 + 1²/1) = 32/19."""
    from scipy import stats

    candidate = {"0": 0.01, "1": 0.02, "2": 0.03}
    baseline = {"3": 0.00, "4": 0.02}
    result = delta_interval(candidate, baseline)
    assert result.method == WELCH_T and result.n_pairs == 0 and (result.n_candidate, result.n_baseline) == (3, 2)
    assert result.delta == pytest.approx(0.01, abs=1e-10)
    assert result.df == pytest.approx(32 / 19, rel=1e-12)
    se = 0.01 * math.sqrt(4 / 3)
    quantile = stats.t.ppf(0.975, 32 / 19)
    assert (result.low, result.high) == pytest.approx((0.01 - quantile * se, 0.01 + quantile * se), abs=1e-10)
    assert result.p_value == pytest.approx(2 * stats.t.sf(0.01 / se, 32 / 19), abs=1e-10)
    # a shared seed set of different sizes: {0,1,2} vs {0,1,3} differ, so Welch, never positions 0..2 as pairs
    assert delta_interval({"0": 0.1, "1": 0.2, "2": 0.3}, {"0": 0.1, "1": 0.2, "3": 0.3}).method == WELCH_T


def test_one_seed_gives_delta_without_interval():
    one = delta_interval({"0": 0.6}, {"0": 0.5})
    assert one.delta == pytest.approx(0.1) and one.low is None and one.high is None and one.p_value is None
    assert not one.significant and "one seed" in one.reason
    lopsided = delta_interval({"0": 0.6}, {"1": 0.5, "2": 0.4})
    assert lopsided.low is None and "candidate row" in lopsided.reason
    assert delta_interval({"0": None}, {"0": 0.5}) is None
    # missing values drop out of the pairing: seeds {0, 1} with values on both sides
    partial = delta_interval({"0": 0.6, "1": 0.7, "2": None}, {"0": 0.5, "1": 0.5, "2": 0.5})
    assert partial.method == WELCH_T  # the value sets {0,1} and {0,1,2} differ


def test_identical_values_give_a_zero_width_interval():
    same = delta_interval({"0": 0.5, "1": 0.6}, {"0": 0.5, "1": 0.6})
    assert (same.delta, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0) and not same.significant
    shifted = t_interval_arrays(np.array([0.6, 0.7]), np.array([0.5, 0.6]), paired=True)
    assert float(shifted.low) == float(shifted.high) == pytest.approx(0.1) and float(shifted.p_value) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        t_interval_arrays(np.array([0.5]), np.array([0.4]), paired=True)


# ---------------------------------------------------------------------------------------------------------
# power
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("d", "paired", "n"), [(0.2, False, 394), (0.5, False, 64), (0.8, False, 26), (0.5, True, 34), (1.0, True, 10)])
def test_seeds_needed_matches_textbook_sample_sizes(d, paired, n):
    """Cohen (1988) Table 2.4.1 / G*Power: two-sided 5 %, 80 % power; two-sample n per group, paired n pairs."""
    assert seeds_needed(d, 1.0, paired=paired) == n
    assert t_test_power(d, 1.0, n, paired=paired) >= 0.8 > t_test_power(d, 1.0, n - 1, paired=paired)


def test_power_by_hand_and_mde_definition():
    # zero effect: the power is the level
    assert t_test_power(0.0, 1.0, 3, paired=True) == pytest.approx(0.05, abs=1e-10)
    assert t_test_power(0.0, 1.0, 7, paired=False) == pytest.approx(0.05, abs=1e-10)
    # large n: MDE → (z_0.975 + z_0.80)·σ·√(2/n) = 2.801585·σ·√(2/n)
    assert minimum_detectable_effect(1.0, 10_000, paired=False) == pytest.approx(2.8015837 * math.sqrt(2 / 10_000), rel=1e-3)
    assert minimum_detectable_effect(1.0, 10_000, paired=True) == pytest.approx(2.8015837 / 100, rel=1e-3)
    # small n: the MDE is where power is 80 %, above the t-quantile approximation (t_0.975,2 + t_0.80,2)·σ/√3
    mde = minimum_detectable_effect(0.05, 3, paired=True)
    assert t_test_power(mde, 0.05, 3, paired=True) == pytest.approx(0.8, abs=1e-9)
    assert mde > (T_975_DF2 + 1.0606602) * 0.05 / math.sqrt(3)
    assert minimum_detectable_effect(None, 3, paired=True) is None and minimum_detectable_effect(0.05, 1, paired=True) is None
    assert seeds_needed(1e-6, 1.0, paired=True) is None  # beyond MAX_SEEDS


def test_power_matches_simulated_rejection_rate():
    """The noncentral-t power of the paired design against a 5-point gain (5 seeds, seed std 6 points) agrees with
    the rejection rate of the report's test on simulated runs, within 3 binomial standard errors (2,000 reps)."""
    rng = np.random.default_rng(11)
    p = difficulties(rng)
    sigma = logit_seed_std(p, 0.06)
    shift = logit_shift_for_gain(p, sigma, 0.05)
    candidate = simulate_accuracies(rng, p, 2000, 5, sigma, shift)
    baseline = simulate_accuracies(rng, p, 2000, 5, sigma)
    result = t_interval_arrays(candidate, baseline, paired=True)
    rate = float(np.mean((result.low > 0) | (result.high < 0)))  # two-sided rejections, as t_test_power counts them
    differences_std = float(np.std(candidate - baseline, ddof=1))
    expected = t_test_power(0.05, differences_std, 5, paired=True)
    assert abs(rate - expected) < 3 * math.sqrt(expected * (1 - expected) / 2000), (rate, expected)


def test_table_mde_pools_the_paired_differences_of_the_model_size():
    """Two candidates against grpo, 3 shared seeds: differences (1, 2, 3) and (0, 2, 4) points have variances 1 and 4;
    pooled σ_d = √((2·1 + 2·4)/4) = √2.5 points (a single comparison's std would be 1 or 2)."""
    def run(algorithm, seed, acc):
        return RunRecord(f"{algorithm}{seed}", f"{algorithm}{seed}", algorithm, "m", "1B", str(seed), "done", None, "0", 0,
                         eval_metrics={"b": {"acc": acc}}, eval_identity={"b": {"hash": "h", "protocol": "greedy", "k": "1"}},
                         eval_source={"b": f"{algorithm}{seed}"})

    base = [0.50, 0.40, 0.60]
    runs = [run("grpo", s, v) for s, v in enumerate(base)]
    runs += [run("dapo", s, v + d) for s, (v, d) in enumerate(zip(base, [0.01, 0.02, 0.03]))]
    runs += [run("dr_grpo", s, v + d) for s, (v, d) in enumerate(zip(base, [0.00, 0.02, 0.04]))]
    table = build_table(runs)
    summary = table.groups[0].power["b"]
    assert summary.paired and summary.n == 3 and summary.std_df == 4
    assert summary.std == pytest.approx(math.sqrt(2.5) / 100, rel=1e-9)
    upper = float(std_upper_limit(math.sqrt(2.5) / 100, 4))
    assert summary.std_upper == pytest.approx(upper, rel=1e-12)
    assert summary.mde == pytest.approx(minimum_detectable_effect(upper, 3, paired=True), rel=1e-9)
    assert summary.mde_estimate == pytest.approx(minimum_detectable_effect(math.sqrt(2.5) / 100, 3, paired=True), rel=1e-9)
    assert summary.seeds_for[0.01] == seeds_needed(0.01, math.sqrt(2.5) / 100, paired=True)
    # unpaired (different seeds): the pooled seed std of the rows and n seeds per row, two-sample design
    unpaired = [run("grpo", s, v) for s, v in enumerate(base)] + [run("dapo", s + 10, v) for s, v in enumerate([0.5, 0.7, 0.6])]
    summary = build_table(unpaired).groups[0].power["b"]
    assert not summary.paired and summary.n == 3 and summary.std == pytest.approx(0.1, rel=1e-9)  # both rows: sd 0.1
    expected = power_summary(0.1, 3, paired=False, std_df=4)
    assert summary.std_df == 4 and summary.mde == pytest.approx(expected.mde, rel=1e-9)
    assert summary.seeds_for == expected.seeds_for


def test_std_upper_limit_by_hand():
    """χ²_2 is exponential with mean 2: its 20 % quantile is −2·ln 0.8, so σ_U = s·√(2 / (−2 ln 0.8)) = s / √(−ln 0.8);
    a huge df leaves s almost unchanged; the reported MDE is the MDE of σ_U."""
    assert STD_CONFIDENCE == 0.8
    assert float(std_upper_limit(0.03, 2)) == pytest.approx(0.03 / math.sqrt(-math.log(0.8)), rel=1e-12)
    assert float(std_upper_limit(0.03, 10**7)) == pytest.approx(0.03, rel=1e-3)
    assert float(std_upper_limit(0.03, 2, confidence=0.9)) == pytest.approx(0.03 / math.sqrt(-math.log(0.9)), rel=1e-12)
    summary = power_summary(0.03, 3, paired=True, std_df=2)
    assert summary.mde == pytest.approx(minimum_detectable_effect(summary.std_upper, 3, paired=True), rel=1e-12)
    assert summary.mde > summary.mde_estimate


PILOTS = 4000
"""Simulated 3-seed pilots. The share of pilots whose reported MDE is at least the true MDE has a binomial SE of
√(0.8·0.2/4000) = 0.63 points at 80 %: the accepted floor 78 % is 3.2 SE below it, and the plug-in MDE (about 37 %)
lies 60 SE under it."""


def test_reported_mde_is_at_least_the_true_mde_in_the_stated_share_of_pilots():
    """3-seed pilots of a paired comparison (seed std 6 points, identical algorithms): the pooled std of the per-seed
    differences has 2 df. The MDE the report prints (:func:`power_summary`, from the std's 80 % upper limit) is at
    least the true MDE (at the true σ_d, from 60,000 simulated differences) in ≥ 78 % of 4,000 pilots (80 % stated);
    the MDE of the std itself is below the truth in most pilots (≈ 63 %, P(χ²_2 < 2) = 1 − e⁻¹)."""
    rng = np.random.default_rng(2024)
    p = difficulties(rng)
    sigma = logit_seed_std(p, 0.06)
    truth = simulate_accuracies(rng, p, 20_000, 3, sigma) - simulate_accuracies(rng, p, 20_000, 3, sigma)
    true_mde = minimum_detectable_effect(float(np.std(truth, ddof=1)), 3, paired=True)
    pilots = simulate_accuracies(rng, p, PILOTS, 3, sigma) - simulate_accuracies(rng, p, PILOTS, 3, sigma)
    stds = pilots.std(axis=-1, ddof=1)
    # the MDE scales with the std (power depends on δ/σ only): one call of the report's code gives every pilot's MDE
    unit = power_summary(1.0, 3, paired=True, std_df=2)
    for std in stds[:2]:
        assert power_summary(float(std), 3, paired=True, std_df=2).mde == pytest.approx(std * unit.mde, rel=1e-6)
    covered = float(np.mean(stds * unit.mde >= true_mde))
    plug_in = float(np.mean(stds * unit.mde_estimate >= true_mde))
    assert covered >= STD_CONFIDENCE - 0.02, (covered, plug_in)
    assert 0.32 <= plug_in <= 0.42, plug_in


@pytest.mark.parametrize("seeds", [3, 5])
def test_false_positive_rate_of_the_paired_interval_is_5_percent(seeds):
    """Identical algorithms, seed std 6 points, 40,000 repetitions (binomial SE 0.11 points): the paired 95 % interval
    excludes 0 in 5.0 % ± 0.5 of them; Welch's (the same runs, unpaired) is never above 5.5 % (conservative at 3 seeds,
    about 3.9 %, and 4.5 % at 5)."""
    rng = np.random.default_rng(100 + seeds)
    p = difficulties(rng)
    sigma = logit_seed_std(p, 0.06)
    candidate = simulate_accuracies(rng, p, 40_000, seeds, sigma)
    baseline = simulate_accuracies(rng, p, 40_000, seeds, sigma)
    rates = {}
    for paired in (True, False):
        result = t_interval_arrays(candidate, baseline, paired=paired)
        rates[paired] = float(np.mean((result.low > 0) | (result.high < 0)))
    assert abs(rates[True] - 0.05) <= 0.005, rates
    assert 0.03 <= rates[False] <= 0.055, rates


# ---------------------------------------------------------------------------------------------------------
# the null simulation
# ---------------------------------------------------------------------------------------------------------
REPETITIONS = 4000
"""Per setting. At a true rate of 5 % the binomial standard error is √(0.05·0.95/4000) = 0.34 points, so the
accepted band 2–8 % is ± 8.7 standard errors wide: a correct test passes, and a test at 10 % (0.47-point SE)
lies 4.2 standard errors above its top."""


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_false_positive_rate_is_nominal(seeds):
    """Identical algorithms, seed std 2, 6 and 15 points: the 95 % interval excludes 0 in 2–8 % of 4,000 repetitions,
    paired by seed and Welch (the same simulated runs, read as unpaired)."""
    rng = np.random.default_rng(seeds)
    p = difficulties(rng)
    for seed_std in (0.02, 0.06, 0.15):
        sigma = logit_seed_std(p, seed_std)
        candidate = simulate_accuracies(rng, p, REPETITIONS, seeds, sigma)
        baseline = simulate_accuracies(rng, p, REPETITIONS, seeds, sigma)
        for paired in (True, False):
            result = t_interval_arrays(candidate, baseline, paired=paired)
            rate = float(np.mean((result.low > 0) | (result.high < 0)))
            assert 0.02 <= rate <= 0.08, (seeds, seed_std, paired, rate)


def test_the_replaced_percentile_bootstrap_fails_the_null_simulation():
    """The bootstrap over problems and seeds used before (tests/seed_simulation.py) at 3 seeds and a 10-point seed
    std: its interval is about [min, max] of the 3 per-seed differences, which all share a sign 25 % of the time.
    150 repetitions (binomial SE ≤ 3.5 points) put it far above 8 %; the issue measured 10.0 % at 6 points and
    19.8 % at 10 points, benchmarks/interval_calibration.py measures it in this simulation."""
    rng = np.random.default_rng(5)
    p = difficulties(rng)
    rejects = percentile_bootstrap_rejects(rng, p, 150, 3, logit_seed_std(p, 0.10), resamples=200)
    assert rejects.mean() > 0.12, rejects.mean()
