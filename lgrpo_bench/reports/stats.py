"""Statistics of a report: pure functions of numbers, no MLflow, no files.

* :func:`seed_stats` — mean ± sample std over seeds (ddof = 1; the std is ``None`` for a single seed).
* :func:`pooled_seed_std` — the seed-variance line: sqrt(Σ_a (n_a − 1)·s_a² / Σ_a (n_a − 1)), the within-algorithm
  std over seeds pooled across the algorithms of a model size.
* :func:`learning_curve_mean` — sample efficiency: the area under a learning curve divided by its length
  (trapezoid rule over the logged steps), i.e. the time-averaged held-out accuracy.
* :func:`per_problem_accuracy` — per-problem records (one per problem × sample) → accuracy per problem.
* :func:`paired_bootstrap` — Δ = candidate − baseline with a confidence interval from
  ``scipy.stats.bootstrap`` over problems and seeds, and the probability of improvement.

The bootstrap design (the one place it is defined)
--------------------------------------------------
For each benchmark b the inputs are accuracy matrices ``C_b`` (S_c seeds × P_b problems) and ``B_b``
(S_b × P_b) over the *same* problems (accuracy of a problem = mean correctness over its samples). The
statistic is

    Δ = mean_b [ mean_{s,p} C_b[s, p] − mean_{s,p} B_b[s, p] ]

(one benchmark: the difference of mean accuracies; several: the difference of the unweighted benchmark
average, as in the table's Average column). Resampling, done by ``scipy.stats.bootstrap`` on index samples
(``paired=False``, so each index sample is resampled independently):

* problems: one index sample per benchmark, shared by candidate and baseline — paired over problems
  (the same problem is drawn for both algorithms, which removes problem difficulty from the variance);
* seeds: when both algorithms ran the same seed set, one seed index sample shared by both (paired over
  seeds: seed s of the candidate meets seed s of the baseline, same warm start and data order); otherwise
  one seed index sample per algorithm. Seeds are drawn once per resample for all benchmarks (a seed is one
  training run). With a single seed there is nothing to resample and the interval reflects problems only.

The interval is the percentile interval of the bootstrap distribution at ``confidence`` (95 % by default);
Δ is *not significant* when the interval contains 0. The probability of improvement is the fraction of
bootstrap resamples with Δ > 0 (ties count one half): the bootstrap's estimate of P(candidate better than
baseline on this benchmark set), not the probability that one seed beats another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BootstrapResult",
    "SeedStats",
    "aggregate_curves",
    "generated_tokens",
    "learning_curve_mean",
    "paired_bootstrap",
    "per_problem_accuracy",
    "pooled_seed_std",
    "seed_stats",
]

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
"""Bootstrap resamples per interval (2,000 is a common choice for percentile intervals and keeps a paper-sized
grid to seconds); reports take more with ``--resamples`` when the bounds must be stable to the last digit."""
DEFAULT_BOOTSTRAP_SEED = 0
_BATCH = 500  # resamples per vectorized statistic call: bounds memory at 500 × P_b counts per benchmark


@dataclass(frozen=True)
class SeedStats:
    """Mean and sample std (ddof = 1) of one quantity over seeds; ``n`` values went in.

    ``mean`` is ``None`` when ``n == 0`` and ``std`` is ``None`` when ``n < 2``: missing, never 0.
    """

    mean: float | None
    std: float | None
    n: int


def seed_stats(values: Iterable[float | None]) -> SeedStats:
    """:class:`SeedStats` of ``values``, skipping ``None`` and NaN (a run that did not log the quantity)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not kept:
        return SeedStats(None, None, 0)
    mean = float(np.mean(kept))
    std = float(np.std(kept, ddof=1)) if len(kept) >= 2 else None
    return SeedStats(mean, std, len(kept))


def pooled_seed_std(groups: Iterable[Sequence[float]]) -> float | None:
    """sqrt(Σ_a (n_a − 1)·s_a² / Σ_a (n_a − 1)) over groups with n_a ≥ 2 (ddof = 1 within each group).

    The std over seeds that remains once each algorithm's own mean is removed; ``None`` when no group has
    two values.
    """
    sum_squares = 0.0
    degrees = 0
    for group in groups:
        values = np.asarray([float(v) for v in group if v is not None and not math.isnan(float(v))])
        if values.size >= 2:
            sum_squares += float(np.sum((values - values.mean()) ** 2))
            degrees += values.size - 1
    return math.sqrt(sum_squares / degrees) if degrees else None


def learning_curve_mean(steps: Sequence[float], values: Sequence[float]) -> float | None:
    """(1 / (t_last − t_first)) · ∫ y dt by the trapezoid rule over the points sorted by step.

    One point gives its value; no point gives ``None``. Repeated steps keep their mean value.
    """
    if len(steps) != len(values):
        raise ValueError(f"steps and values differ in length: {len(steps)} vs {len(values)}")
    if not len(steps):
        return None
    by_step: dict[float, list[float]] = {}
    for step, value in zip(steps, values):
        by_step.setdefault(float(step), []).append(float(value))
    xs = np.array(sorted(by_step))
    ys = np.array([np.mean(by_step[x]) for x in xs])
    if xs.size == 1:
        return float(ys[0])
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0]))


def per_problem_accuracy(records: Iterable[Mapping]) -> dict[str, float]:
    """``{problem_id: mean of correct over its samples}`` from per-problem records (``EVAL_RECORD_FIELDS``)."""
    totals: dict[str, list[float]] = {}
    for record in records:
        totals.setdefault(str(record["problem_id"]), []).append(1.0 if record["correct"] else 0.0)
    return {problem: float(np.mean(values)) for problem, values in totals.items()}


@dataclass(frozen=True)
class BootstrapResult:
    """Δ = candidate − baseline (fractions, not points), its interval and the probability of improvement."""

    delta: float
    low: float
    high: float
    p_improvement: float
    confidence: float
    n_problems: int
    n_seeds_candidate: int
    n_seeds_baseline: int
    paired_seeds: bool

    @property
    def significant(self) -> bool:
        """False when the interval contains 0."""
        return not (self.low <= 0.0 <= self.high)


def _counts(indices: np.ndarray, size: int) -> np.ndarray:
    """How often each of 0..size-1 occurs in every row of ``indices`` (shape (..., n) → (R, size))."""
    rows = indices.reshape(-1, indices.shape[-1])
    offsets = (np.arange(rows.shape[0]) * size)[:, None]
    return np.bincount((rows + offsets).ravel(), minlength=rows.shape[0] * size).reshape(rows.shape[0], size)


def paired_bootstrap(
    candidate: Sequence[np.ndarray],
    baseline: Sequence[np.ndarray],
    *,
    paired_seeds: bool | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> BootstrapResult | None:
    """Δ, its bootstrap interval and P(Δ > 0) for accuracy matrices, one pair per benchmark (see the module doc).

    Args:
        candidate: per benchmark, an (S_c, P_b) array of per-problem accuracy (rows: seeds, in a fixed order).
        baseline: per benchmark, an (S_b, P_b) array over the same problems in the same column order.
        paired_seeds: resample seeds jointly (row s of both is the same seed); default: when S_c == S_b.
        confidence: two-sided confidence level of the percentile interval.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling generator (reports are reproducible).
    Returns:
        ``None`` when no benchmark has two problems (nothing to resample).
    """
    from scipy.stats import bootstrap

    if len(candidate) != len(baseline) or not candidate:
        raise ValueError(f"need one candidate and one baseline matrix per benchmark, got {len(candidate)} and {len(baseline)}")
    cand = [np.atleast_2d(np.asarray(c, dtype=float)) for c in candidate]
    base = [np.atleast_2d(np.asarray(b, dtype=float)) for b in baseline]
    n_cand_seeds, n_base_seeds = cand[0].shape[0], base[0].shape[0]
    for c, b in zip(cand, base):
        if c.shape[1] != b.shape[1]:
            raise ValueError(f"candidate and baseline cover different problem counts: {c.shape[1]} vs {b.shape[1]}")
        if c.shape[0] != n_cand_seeds or b.shape[0] != n_base_seeds:
            raise ValueError("every benchmark must have the same seeds (rows) for an algorithm")
    if paired_seeds is None:
        paired_seeds = n_cand_seeds == n_base_seeds
    if paired_seeds and n_cand_seeds != n_base_seeds:
        raise ValueError(f"paired seeds need equal seed counts, got {n_cand_seeds} and {n_base_seeds}")
    if any(c.shape[1] < 2 for c in cand):
        return None
    n_benchmarks = len(cand)
    point = float(np.mean([c.mean() - b.mean() for c, b in zip(cand, base)]))

    # index samples: problems of each benchmark, then the seeds (one shared sample, or one per algorithm)
    data: list[np.ndarray] = [np.arange(c.shape[1]) for c in cand]
    seed_slots: list[str] = []
    if paired_seeds:
        if n_cand_seeds >= 2:
            data.append(np.arange(n_cand_seeds))
            seed_slots = ["both"]
    else:
        if n_cand_seeds >= 2:
            data.append(np.arange(n_cand_seeds))
            seed_slots.append("candidate")
        if n_base_seeds >= 2:
            data.append(np.arange(n_base_seeds))
            seed_slots.append("baseline")
    differences = [c - b for c, b in zip(cand, base)] if paired_seeds else None

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        problem_samples, seed_samples = samples[:n_benchmarks], dict(zip(seed_slots, samples[n_benchmarks:]))
        batch_shape = problem_samples[0].shape[:-1]

        def seed_weights(slot: str, count: int) -> np.ndarray:
            if slot in seed_samples:
                return _counts(seed_samples[slot], count) / count
            return np.full((int(np.prod(batch_shape, dtype=int)), count), 1.0 / count)

        total = 0.0
        for b, problems in enumerate(problem_samples):
            problem_weights = _counts(problems, cand[b].shape[1]) / problems.shape[-1]
            if paired_seeds:
                weights = seed_weights("both", n_cand_seeds)
                total = total + ((weights @ differences[b]) * problem_weights).sum(axis=-1)
            else:
                wc = seed_weights("candidate", n_cand_seeds)
                wb = seed_weights("baseline", n_base_seeds)
                total = total + (((wc @ cand[b]) - (wb @ base[b])) * problem_weights).sum(axis=-1)
        return (total / n_benchmarks).reshape(batch_shape)

    result = bootstrap(
        data,
        statistic,
        paired=False,
        vectorized=True,
        n_resamples=n_resamples,
        batch=_BATCH,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    distribution = np.asarray(result.bootstrap_distribution)
    p_improvement = float(np.mean(distribution > 0) + 0.5 * np.mean(distribution == 0))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return BootstrapResult(
        delta=point,
        low=low,
        high=high,
        p_improvement=p_improvement,
        confidence=confidence,
        n_problems=int(sum(c.shape[1] for c in cand)),
        n_seeds_candidate=n_cand_seeds,
        n_seeds_baseline=n_base_seeds,
        paired_seeds=bool(paired_seeds),
    )


def aggregate_curves(curves: Sequence[tuple[Sequence[float], Sequence[float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean ± std over seeds of learning curves logged at possibly different steps.

    Every curve is linearly interpolated onto the union of all steps, inside its own step range only (no
    extrapolation); at each step the mean, the sample std (0 where a single curve covers the step) and the
    number of curves are over the curves that cover it. Returns (steps, mean, std, count).
    """
    kept = [(np.asarray(s, dtype=float), np.asarray(v, dtype=float)) for s, v in curves if len(s)]
    if not kept:
        empty = np.array([])
        return empty, empty, empty, empty
    grid = np.unique(np.concatenate([s for s, _ in kept]))
    stacked = np.full((len(kept), grid.size), np.nan)
    for index, (steps, values) in enumerate(kept):
        order = np.argsort(steps)
        steps, values = steps[order], values[order]
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        stacked[index, inside] = np.interp(grid[inside], steps, values)
    count = np.sum(~np.isnan(stacked), axis=0)
    mean = np.nanmean(stacked, axis=0)
    centered = np.where(np.isnan(stacked), 0.0, stacked - mean)
    std = np.sqrt(np.sum(centered**2, axis=0) / np.maximum(count - 1, 1))
    return grid, mean, std, count


def generated_tokens(completion_length_means: Sequence[float], completions_per_step: int) -> float:
    """Σ_steps mean completion length × completions per step: the tokens a run generated for training."""
    return float(np.sum(np.asarray(completion_length_means, dtype=float)) * completions_per_step)
