"""Simulated training runs for calibrating the report's Δ test (tests/test_reports_stats.py and
benchmarks/interval_calibration.py).

The model of one evaluation, per run r and problem i:

    correct_ri ~ Bernoulli(sigmoid(logit p_i + e_r + shift)),   e_r ~ N(0, σ_logit²)  independently per run,
    accuracy_r = mean_i correct_ri

* p_i: the problem's difficulty for the base model, drawn once per simulation from Beta(0.7, 0.7) (U-shaped,
  as real per-problem accuracies are: many problems always or never solved), clipped to [0.005, 0.995];
* e_r: the seed effect of the run (initialisation, data order, sampling), on the logit scale so that no
  probability leaves [0, 1]; σ_logit is chosen so that the std over seeds of the run's expected accuracy
  mean_i sigmoid(logit p_i + e_r) is exactly the requested seed std in accuracy points (Gauss–Hermite
  quadrature and a root search, :func:`logit_seed_std`);
* shift: 0 for both algorithms under the null (identical distributions); for a true gain, the logit shift
  whose expected accuracy gain, averaged over the seed effect, is the requested gain (:func:`logit_shift_for_gain`).

Everything is vectorised over repetitions × seeds × problems (float32 uniforms), in chunks that bound memory.
"""

from __future__ import annotations

import numpy as np

PROBLEMS = 500
DIFFICULTY_BETA = (0.7, 0.7)
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()  # expectation over a standard normal


def difficulties(rng: np.random.Generator, problems: int = PROBLEMS) -> np.ndarray:
    """Per-problem accuracies p_i of the base model (module doc)."""
    return np.clip(rng.beta(*DIFFICULTY_BETA, problems), 0.005, 0.995)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _expected_accuracy(logits: np.ndarray, effects: np.ndarray) -> np.ndarray:
    """mean_i sigmoid(logit_i + e) for each e in ``effects``."""
    return (1.0 / (1.0 + np.exp(-(logits[None, :] + effects[:, None])))).mean(axis=1)


def logit_seed_std(p: np.ndarray, accuracy_std: float) -> float:
    """σ_logit such that the expected accuracy of a run has std ``accuracy_std`` (fraction) over seeds."""
    from scipy.optimize import brentq

    logits = _logit(p)

    def spread(sigma: float) -> float:
        values = _expected_accuracy(logits, sigma * _NODES)
        mean = values @ _WEIGHTS
        return float(np.sqrt(((values - mean) ** 2) @ _WEIGHTS)) - accuracy_std

    return float(brentq(spread, 1e-9, 20.0, xtol=1e-12))


def logit_shift_for_gain(p: np.ndarray, sigma_logit: float, gain: float) -> float:
    """The logit shift whose expected accuracy gain, averaged over seed effects N(0, σ_logit²), is ``gain``."""
    from scipy.optimize import brentq

    logits = _logit(p)
    effects = sigma_logit * _NODES
    base = _expected_accuracy(logits, effects) @ _WEIGHTS
    return float(brentq(lambda shift: _expected_accuracy(logits, effects + shift) @ _WEIGHTS - base - gain, 0.0, 10.0, xtol=1e-12))


def simulate_accuracies(
    rng: np.random.Generator, p: np.ndarray, repetitions: int, seeds: int, sigma_logit: float, shift: float = 0.0,
    chunk: int = 250,
) -> np.ndarray:
    """(repetitions, seeds) accuracies of independent runs of one algorithm (module doc)."""
    logits = _logit(p).astype(np.float32)
    out = np.empty((repetitions, seeds))
    for start in range(0, repetitions, chunk):
        size = min(chunk, repetitions - start)
        effects = rng.normal(0.0, sigma_logit, (size, seeds, 1)).astype(np.float32) + np.float32(shift)
        probability = 1.0 / (1.0 + np.exp(-(logits + effects)))
        correct = rng.random((size, seeds, p.size), dtype=np.float32) < probability
        out[start:start + size] = correct.mean(axis=2)
    return out


def _counts(draws: np.ndarray, size: int) -> np.ndarray:
    """How often each of 0..size-1 occurs in each row of ``draws`` (resamples × draws → resamples × size)."""
    rows = draws.shape[0]
    return np.bincount((draws + (np.arange(rows) * size)[:, None]).ravel(), minlength=rows * size).reshape(rows, size).astype(float)


def percentile_bootstrap_rejects(
    rng: np.random.Generator, p: np.ndarray, repetitions: int, seeds: int, sigma_logit: float, resamples: int = 1000,
    confidence: float = 0.95,
) -> np.ndarray:
    """The Δ test this project used before: a percentile bootstrap resampling problems (one index sample shared by
    both algorithms) and seeds (one shared index sample, paired), on identical algorithms; True where its
    interval excluded 0. Kept here, not in the library, to show why it was replaced."""
    logits = _logit(p).astype(np.float32)
    rejects = np.empty(repetitions, dtype=bool)
    n = p.size
    tail = (1 - confidence) / 2
    for r in range(repetitions):
        effects = rng.normal(0.0, sigma_logit, (2, seeds, 1)).astype(np.float32)
        correct = rng.random((2, seeds, n), dtype=np.float32) < 1.0 / (1.0 + np.exp(-(logits + effects)))
        differences = correct[0].astype(np.float64) - correct[1]  # (seeds, problems)
        seed_weights = _counts(rng.integers(0, seeds, (resamples, seeds)), seeds)
        problem_weights = _counts(rng.integers(0, n, (resamples, n)), n)
        statistic = ((seed_weights @ differences) * problem_weights).sum(axis=1) / (seeds * n)
        low, high = np.quantile(statistic, [tail, 1 - tail])
        rejects[r] = not (low <= 0.0 <= high)
    return rejects
