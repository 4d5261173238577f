"""Calibration of the evaluation statistics (issue 27 §4-5): false-positive rates under the null, at nominal 5 %.

Simulated runs (tests/nested_simulation.py): a training-seed effect per run on the logit scale, k binomial
evaluation samples per problem; across benchmarks a run's seed effect shared by its benchmarks with correlation ρ,
and, when paired, half of it shared by both rows' run of a seed. Prints, over ``--repetitions`` identical-algorithm
comparisons per cell (binomial SE of a 5 % rate: √(0.05·0.95/R)):

* nested: the Δ interval over seeds (paired / Welch) on a 30-problem benchmark, in the sampling-dominated regime
  (seed std 1 point, k = 4) and the seed-dominated one (6 points, k = 16), and the interval built from the
  training-seed part of SE² alone (what ignoring the evaluation sampling gives);
* per question: Miller's paired clustered interval for one seed per side (40 questions, k = 4), the same without
  clustering by question, and unpaired;
* across benchmarks (4 benchmarks × 40 problems, k = 4, seed std 4 points): ΔIQM and probability-of-improvement
  intervals of :func:`lgrpo_bench.reports.aggregate.compare_arrays`, and the same with rliable's stratification by
  task (each benchmark's runs resampled independently), which breaks the correlation of a run's benchmarks.

    python benchmarks/eval_statistics_calibration.py [--repetitions 2000] [--resamples 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the simulations shared with the tests

from nested_simulation import BenchmarkSuite, nested_scores, question_samples  # noqa: E402
from seed_simulation import difficulties, logit_seed_std  # noqa: E402

from lgrpo_bench.reports.aggregate import MIN_POI_SEEDS, compare_arrays, iqm, probability_of_improvement  # noqa: E402
from lgrpo_bench.reports.nested import nested_t_interval_arrays, paired_question_arrays  # noqa: E402


def _rate(low, high, null: float = 0.0) -> float:
    return float(np.mean((np.asarray(low) > null) | (np.asarray(high) < null)))


def _cell(rate: float, repetitions: int) -> str:
    return f"{100 * rate:5.1f} % ± {100 * math.sqrt(max(rate * (1 - rate), 1e-12) / repetitions):.1f}"


def nested(rng, repetitions: int) -> None:
    from scipy.special import stdtrit

    print("nested design, 30 problems: Δ interval over seeds (covers both levels) | training-seed part only")
    for seed_std, k in ((0.01, 4), (0.06, 16)):
        p = difficulties(rng, 30)
        sigma = logit_seed_std(p, seed_std)
        for seeds in (3, 5, 10):
            c, c_var = nested_scores(rng, p, repetitions, seeds, sigma, k)
            b, b_var = nested_scores(rng, p, repetitions, seeds, sigma, k)
            for paired in (True, False):
                result, eval_part = nested_t_interval_arrays(c, c_var, b, b_var, paired=paired)
                share = float(np.mean(eval_part) / np.mean(result.se**2))
                half = stdtrit(result.df, 0.975) * np.sqrt(np.maximum(result.se**2 - eval_part, 1e-12))
                print(f"  seed std {100 * seed_std:.0f} pts, k={k:2d}, {seeds:2d} seeds, {'paired' if paired else 'Welch '}: "
                      f"{_cell(_rate(result.low, result.high), repetitions)} | {_cell(_rate(result.delta - half, result.delta + half), repetitions)}"
                      f"   (eval share of SE² {100 * share:.0f} %)")


def questions(rng, repetitions: int) -> None:
    c, b = question_samples(rng, repetitions, 40, 4)
    result = paired_question_arrays(c, b)
    d = (c - b).reshape(repetitions, -1)
    flat = 1.96 * d.std(axis=1, ddof=1) / math.sqrt(d.shape[1])
    a_c, a_b = c.mean(axis=2), b.mean(axis=2)
    unpaired = 1.96 * np.sqrt(a_c.var(axis=1, ddof=1) / 40 + a_b.var(axis=1, ddof=1) / 40)
    print("per-question paired Δ, one seed per side, 40 questions, k = 4:")
    print(f"  paired, clustered by question: {_cell(_rate(result.low, result.high), repetitions)}; not clustered: "
          f"{_cell(_rate(d.mean(1) - flat, d.mean(1) + flat), repetitions)}; unpaired: "
          f"{_cell(_rate(result.delta - unpaired, result.delta + unpaired), repetitions)}")


def _per_task_rejects(c: np.ndarray, b: np.ndarray, paired: bool, resamples: int, rng) -> tuple[float, float]:
    """rliable's stratification by task: each benchmark's runs resampled independently (same expansion)."""
    from scipy.special import stdtrit

    n, tasks = c.shape[-2], c.shape[-1]
    q = float(stdtrit(n - 1 if paired else 2 * n - 2, 0.975)) * math.sqrt(n / (n - 1))
    iqm_hits = poi_hits = 0
    for r in range(c.shape[0]):
        index_c = rng.integers(0, n, (resamples, n, tasks))
        index_b = index_c if paired else rng.integers(0, n, (resamples, n, tasks))
        boot_c = np.take_along_axis(np.broadcast_to(c[r], (resamples, n, tasks)), index_c, axis=1)
        boot_b = np.take_along_axis(np.broadcast_to(b[r], (resamples, n, tasks)), index_b, axis=1)
        delta = float(iqm(c[r]) - iqm(b[r]))
        iqm_hits += abs(delta) > q * float((iqm(boot_c) - iqm(boot_b)).std(ddof=1))
        poi = float(probability_of_improvement(c[r], b[r], paired=paired))
        poi_hits += abs(poi - 0.5) > q * float(probability_of_improvement(boot_c, boot_b, paired=paired).std(ddof=1))
    return iqm_hits / c.shape[0], poi_hits / c.shape[0]


def across(rng, repetitions: int, resamples: int) -> None:
    print("across 4 benchmarks (40 problems, k = 4, seed std 4 pts): ΔIQM | PoI   [rliable's per-task stratification: ΔIQM | PoI]")
    suite = BenchmarkSuite(rng, 4, 40, 0.04)
    for rho in (0.0, 0.7):
        for seeds in (3, 5, 10):
            for paired in (True, False):
                shared = rng.normal(size=(repetitions, seeds, 1)) if paired else None
                c = suite.scores(rng, repetitions, seeds, 4, rho=rho, shared=shared, share=0.5)
                b = suite.scores(rng, repetitions, seeds, 4, rho=rho, shared=shared, share=0.5)
                result = compare_arrays(c, b, paired=paired, resamples=resamples)
                poi = _cell(_rate(result.poi_low, result.poi_high, 0.5), repetitions) if seeds >= MIN_POI_SEEDS else "  (no interval)  "
                small = min(repetitions, 500)
                task_iqm, task_poi = _per_task_rejects(c[:small], b[:small], paired, resamples, rng)
                print(f"  ρ={rho:.1f}, {seeds:2d} seeds, {'paired  ' if paired else 'unpaired'}: "
                      f"{_cell(_rate(result.iqm_delta_low, result.iqm_delta_high), repetitions)} | {poi}   "
                      f"[{_cell(task_iqm, small)} | {_cell(task_poi, small)}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    nested(rng, args.repetitions)
    questions(rng, args.repetitions)
    across(rng, args.repetitions, args.resamples)
    print(f"({time.perf_counter() - started:.0f} s, {args.repetitions} repetitions per cell, seed {args.seed})")


if __name__ == "__main__":
    main()
