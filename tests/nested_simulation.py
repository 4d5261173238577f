"""Simulated evaluations as a nested design, for the null simulations of tests/test_eval_statistics.py and
benchmarks/eval_statistics_calibration.py.

The two-level model, per algorithm, run (training seed) r, benchmark m, problem i and evaluation sample j:

    x_rmij ~ Bernoulli(sigmoid(logit p_mi + e_rm)),   j = 1..k (k evaluation seeds: avg@k)
    e_rm = σ_logit·(√ρ·u_r + √(1 − ρ)·w_rm),          u_r, w_rm ~ N(0, 1)
    score_rm = (1/N) Σ_i (1/k) Σ_j x_rmij

* p_mi: the problem's difficulty for the base model (Beta(0.7, 0.7), U-shaped, clipped to [0.005, 0.995], as in
  tests/seed_simulation.py), drawn once per benchmark;
* e_rm: the training-seed effect of run r, on the logit scale; ρ is how much of it a run carries across
  benchmarks (one trained model is evaluated on every benchmark). σ_logit is scaled so the std over seeds of a
  run's expected accuracy is the requested seed std (tests/seed_simulation.py :func:`logit_seed_std`);
* paired rows (the same seeds): u_r of the candidate's run r = √share·z_r + √(1 − share)·u'_r with z_r shared by
  both rows' run r (the warm start and prompt order they share); identical algorithms otherwise (the null).

The evaluation sampling is drawn as a binomial count per problem (k samples), which is all the statistics read.
"""

from __future__ import annotations

import numpy as np
from seed_simulation import difficulties, logit_seed_std


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def sampled_correct(rng: np.random.Generator, probability: np.ndarray, k: int) -> np.ndarray:
    """Correct counts / k per problem: (..., N) probabilities → (..., N) per-problem accuracies p̂."""
    return rng.binomial(k, probability) / k


def nested_scores(
    rng: np.random.Generator, p: np.ndarray, repetitions: int, seeds: int, sigma_logit: float, k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, evaluation variances), each (repetitions, seeds), of independent runs of one algorithm on one
    benchmark: score = mean_i p̂_i, v = Σ_i p̂_i(1 − p̂_i)/(k − 1) / N² (lgrpo_bench.reports.nested.run_score)."""
    effects = rng.normal(0.0, sigma_logit, (repetitions, seeds, 1))
    accuracy = sampled_correct(rng, 1.0 / (1.0 + np.exp(-(_logit(p) + effects))), k)
    n = p.size
    return accuracy.mean(axis=-1), (accuracy * (1 - accuracy) / (k - 1)).sum(axis=-1) / n**2


def question_samples(rng: np.random.Generator, repetitions: int, questions: int, k: int, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Two models of equal expected accuracy answering the same fresh questions, k samples each: (repetitions,
    questions, k) 0/1 arrays for both. Question i has base logit l_i (difficulty ~ Beta(0.7, 0.7)) and the models
    differ on it by ±η_i, η_i ~ N(0, spread²): logit l_i + η_i for one, l_i − η_i for the other (η symmetric, so
    equal accuracy over the question population: the null of the per-question paired analysis, with a per-question
    difference that clustering must account for)."""
    p = np.clip(rng.beta(0.7, 0.7, (repetitions, questions, 1)), 0.005, 0.995)
    eta = rng.normal(0.0, spread, (repetitions, questions, 1))
    logit = _logit(p)
    c = rng.random((repetitions, questions, k)) < 1.0 / (1.0 + np.exp(-(logit + eta)))
    b = rng.random((repetitions, questions, k)) < 1.0 / (1.0 + np.exp(-(logit - eta)))
    return c.astype(float), b.astype(float)


class BenchmarkSuite:
    """M benchmarks of N problems each, difficulties drawn once, and the σ_logit of a requested seed std."""

    def __init__(self, rng: np.random.Generator, benchmarks: int, problems: int, seed_std: float):
        self.p = np.stack([difficulties(rng, problems) for _ in range(benchmarks)])  # (M, N)
        self.sigma = float(np.mean([logit_seed_std(p, seed_std) for p in self.p]))

    def scores(self, rng: np.random.Generator, repetitions: int, seeds: int, k: int, *, rho: float,
               shared: np.ndarray | None = None, share: float = 0.0) -> np.ndarray:
        """(repetitions, seeds, M) scores of one algorithm; ``shared`` (repetitions, seeds, 1) the paired part of u_r."""
        benchmarks = self.p.shape[0]
        u = rng.normal(size=(repetitions, seeds, 1))
        if shared is not None:
            u = np.sqrt(share) * shared + np.sqrt(1 - share) * u
        e = self.sigma * (np.sqrt(rho) * u + np.sqrt(1 - rho) * rng.normal(size=(repetitions, seeds, benchmarks)))
        probability = 1.0 / (1.0 + np.exp(-(_logit(self.p) + e[..., None])))
        return sampled_correct(rng, probability, k).mean(axis=-1)
