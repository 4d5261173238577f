"""Calibration of the report's Δ test: false-positive rate under the null and power against a true 5-point gain.

Simulated runs (tests/seed_simulation.py): 500 problems with Beta(0.7, 0.7) difficulties drawn once, a normal
seed effect per run on the logit scale scaled to the seed std asked (in accuracy points), Bernoulli correctness
per problem. For 3, 5 and 10 seeds and seed std 2, 6 and 15 points it prints, over ``--repetitions``
repetitions per cell:

* FPR: share of identical-algorithm comparisons whose 95 % interval excludes 0 (nominal 5 %), for the paired
  t (by seed) and Welch's t (the same runs read as unpaired), with the binomial standard error;
* power: share of comparisons with a true +5-point gain whose interval lies above 0, simulated, next to the
  noncentral-t probability of that event, P(T' > t_{0.975, n−1}) (the upper-tail term of
  :func:`lgrpo_bench.reports.power.t_test_power`), at the simulated std of the per-seed differences (agreement
  checks the power formula), and the minimum detectable effect of the paired design at that std;
* the percentile bootstrap over problems and seeds this project used before, at 3 seeds and 6 / 10 points
  (``--bootstrap-repetitions``; the issue measured 10.0 % and 19.8 % in its own simulation).

    python benchmarks/interval_calibration.py [--repetitions 10000] [--bootstrap-repetitions 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the simulation shared with the tests

from seed_simulation import (  # noqa: E402
    difficulties,
    logit_seed_std,
    logit_shift_for_gain,
    percentile_bootstrap_rejects,
    simulate_accuracies,
)

from lgrpo_bench.reports.power import minimum_detectable_effect, t_test_power  # noqa: E402
from lgrpo_bench.reports.stats import t_interval_arrays  # noqa: E402

SEEDS = (3, 5, 10)
SEED_STDS = (0.02, 0.06, 0.15)
GAIN = 0.05


def _lower_tail(effect: float, std: float, seeds: int) -> float:
    """P(T' < −t_{0.975, n−1}): the wrong-sign part of the two-sided paired t test's power."""
    from scipy import stats

    df = seeds - 1
    return float(stats.nct.cdf(-stats.t.ppf(0.975, df), df, effect / (std / math.sqrt(seeds))))


def _rate(hits: np.ndarray) -> tuple[float, float]:
    rate = float(np.mean(hits))
    return rate, math.sqrt(rate * (1 - rate) / hits.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=10_000)
    parser.add_argument("--bootstrap-repetitions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    p = difficulties(rng)
    wall, cpu = time.perf_counter(), time.process_time()
    print(f"{args.repetitions} repetitions per cell; 500 problems, Beta(0.7, 0.7) difficulties (mean {p.mean():.3f}); "
          f"binomial SE of a 5 % rate: {100 * math.sqrt(0.05 * 0.95 / args.repetitions):.2f} points\n")
    header = (f"{'seeds':>5} {'seed std':>8} | {'FPR paired':>13} {'FPR Welch':>13} | {'power paired':>13} "
              f"{'(formula)':>9} {'power Welch':>13} | {'MDE paired':>10}")
    print(header)
    print("-" * len(header))
    for seeds in SEEDS:
        for seed_std in SEED_STDS:
            sigma = logit_seed_std(p, seed_std)
            shift = logit_shift_for_gain(p, sigma, GAIN)
            baseline = simulate_accuracies(rng, p, args.repetitions, seeds, sigma)
            null = simulate_accuracies(rng, p, args.repetitions, seeds, sigma)
            better = simulate_accuracies(rng, p, args.repetitions, seeds, sigma, shift)
            cells = []
            for paired in (True, False):
                result = t_interval_arrays(null, baseline, paired=paired)
                cells.append(_rate((result.low > 0) | (result.high < 0)))
            powers = []
            for paired in (True, False):
                result = t_interval_arrays(better, baseline, paired=paired)
                powers.append(_rate(result.low > 0))
            differences_std = float(np.std(better - baseline - (better - baseline).mean(), ddof=1))
            formula = t_test_power(GAIN, differences_std, seeds, paired=True) - _lower_tail(GAIN, differences_std, seeds)
            mde = minimum_detectable_effect(differences_std, seeds, paired=True)
            print(f"{seeds:>5} {100 * seed_std:>6.0f} pt | "
                  + " ".join(f"{100 * r:5.2f} ± {100 * se:4.2f}" for r, se in cells) + " | "
                  + f"{100 * powers[0][0]:5.1f} ± {100 * powers[0][1]:4.1f} {100 * formula:8.1f} "
                  + f"{100 * powers[1][0]:5.1f} ± {100 * powers[1][1]:4.1f} | {100 * mde:7.1f} pt", flush=True)
    print(f"\n(t intervals: {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU)")
    print("\nthe replaced percentile bootstrap (problems and seeds resampled, paired), 3 seeds, identical algorithms:")
    for seed_std in (0.06, 0.10):
        wall, cpu = time.perf_counter(), time.process_time()
        rejects = percentile_bootstrap_rejects(rng, p, args.bootstrap_repetitions, 3, logit_seed_std(p, seed_std), resamples=1000)
        rate, se = _rate(rejects)
        print(f"  seed std {100 * seed_std:.0f} points: FPR {100 * rate:.1f} ± {100 * se:.1f} % over {rejects.size} repetitions "
              f"(1000 resamples each; {time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU)", flush=True)


if __name__ == "__main__":
    main()
