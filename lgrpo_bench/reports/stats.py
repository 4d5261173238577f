"""Statistics of a report: pure functions of numbers, no MLflow, no files.

* :func:`seed_stats` — mean ± sample std over seeds (ddof = 1; the std is ``None`` for a single seed).
* :func:`pooled_seed_std` — the seed-variance line: sqrt(Σ_a (n_a − 1)·s_a² / Σ_a (n_a − 1)), the within-row
  std over seeds pooled across the rows of a model size (also used on per-seed differences, see :mod:`.power`).
* :func:`learning_curve_mean` — sample efficiency: the area under a learning curve divided by its length
  (trapezoid rule over the logged steps), i.e. the time-averaged held-out accuracy.
* :func:`per_problem_accuracy` — per-problem records (one per problem × sample) → accuracy per problem.
* :func:`delta_interval` — Δ = candidate − baseline with a Student t interval over seeds and its p-value;
  :func:`t_interval_arrays` is its vectorised core (the null simulation of ``tests/`` runs through it).

The Δ interval (the one place it is defined)
--------------------------------------------
The unit of replication is the training run (a seed), not the problem. Each run r of a table row has one
value y_r per column: its accuracy on the benchmark (all runs of a column were evaluated on the same problems:
the report refuses to mix evaluation hashes), or for the Average column the unweighted mean of its benchmark
accuracies, or its learning-curve mean for Sample efficiency. A run's value already carries both levels of
noise, the seed (initialisation, data order, sampling) and the finite problem set (Bernoulli outcomes per
problem), so an interval over runs covers both; an interval over problems alone sees only the second.

* **Paired** (both rows ran the same replicates, n ≥ 2; a replicate is the seed, plus the values of any
  ``--average-over`` key): d_s = y_candidate,s − y_baseline,s for each shared seed s (matched by seed, never by
  position), Δ = mean_s d_s, SE = sd(d)/√n (ddof = 1), interval Δ ± t_{1−α/2, n−1}·SE and two-sided p-value
  2·P(T_{n−1} > |Δ/SE|). Seed s of both algorithms shares the warm start and the prompt order, so pairing
  removes what they share.
* **Welch** (the seed sets differ, each row has ≥ 2 runs): Δ = ȳ_c − ȳ_b, SE² = s_c²/n_c + s_b²/n_b,
  Welch–Satterthwaite ν = SE⁴ / ((s_c²/n_c)²/(n_c − 1) + (s_b²/n_b)²/(n_b − 1)), interval Δ ± t_{1−α/2, ν}·SE.
* **One seed** (a shared seed set of one, or one row with a single run and different seeds): no interval.
  Seed-to-seed variation, often the largest source of noise in RL fine-tuning, cannot be estimated from one run;
  an interval over problems alone would be too narrow (it ignores that another seed gives another model), so
  the report shows Δ without an interval and says why.
* A zero SE (identical values) gives the interval [Δ, Δ] and p = 1 when Δ = 0, else 0.

Why this method: with 2–20 seeds the t quantile on n − 1 degrees of freedom is what makes the coverage right
(t_{0.975, 2} = 4.30 for 3 seeds, against the 1.96 a normal or percentile-bootstrap interval effectively uses).
The percentile bootstrap over seeds and problems this replaces marked identical algorithms different 10.0 %
of the time at 6-point seed effects with 3 seeds and 19.8 % at 10 points in the issue's simulation (nominal 5 %;
``benchmarks/interval_calibration.py`` measures 18.1 % and 23.6 % in its own): a bootstrap of 3 values has only
10 distinct resample means and a variance shrunk by (n − 1)/n, so its interval is about the range of the 3
per-seed differences, which all share a sign 25 % of the time. Seed variance as a large, often ignored, source
of variance in benchmarks: Bouthillier et al. 2021, "Accounting for Variance in Machine Learning Benchmarks"
(MLSys, arXiv 2103.03098); a parametric t test when the compared statistic is close to normal: Dror et al. 2018,
"The Hitchhiker's Guide to Testing Statistical Significance in NLP" (ACL); several
accuracy points of seed variance on small math benchmarks, and the call to report it: Hochlehnert et al.
2025, "A Sober Look at Progress in Language Model Reasoning" (arXiv 2504.07086). A run's accuracy is a mean
over hundreds of problems plus a seed effect, so it is close to normal; ``tests/test_reports_stats.py``
checks the false-positive rate by simulation (3, 5, 10 seeds; seed std 2, 6, 15 points).

The bootstrap's "probability of improvement" (share of resamples with Δ > 0) is dropped: it was not the
probability of anything a reader would assume and was as overconfident as the interval. The p-value of the same
t test replaces it (p < 1 − confidence exactly when the interval excludes 0).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


__all__ = [
    "DEFAULT_CONFIDENCE",
    "PAIRED_T",
    "WELCH_T",
    "DeltaInterval",
    "SeedStats",
    "TTestArrays",
    "aggregate_curves",
    "delta_interval",
    "generated_tokens",
    "learning_curve_mean",
    "per_problem_accuracy",
    "pooled_seed_std",
    "seed_stats",
    "t_interval_arrays",
]



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


DEFAULT_CONFIDENCE = 0.95
PAIRED_T = "paired t"
WELCH_T = "Welch t"


@dataclass(frozen=True)
class TTestArrays:
    """Element-wise results of :func:`t_interval_arrays` (fractions; arrays of the batch shape)."""

    delta: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_value: np.ndarray
    df: np.ndarray
    se: np.ndarray


def t_interval_arrays(
    candidate: np.ndarray, baseline: np.ndarray, *, paired: bool, confidence: float = DEFAULT_CONFIDENCE,
) -> TTestArrays:
    """The t interval of the module doc for a batch of comparisons, seeds along the last axis.

    Args:
        candidate: (..., n_c) per-seed values of the candidate row.
        baseline: (..., n_b) per-seed values of the baseline row; with ``paired`` the same shape as
            ``candidate``, column s being the same seed on both sides.
        paired: the paired t on the per-seed differences (df n − 1); otherwise Welch's t (df ν).
        confidence: two-sided level of the interval.
    Raises:
        ValueError: fewer than 2 seeds on a side, or paired arrays of different shapes.
    """
    from scipy.special import stdtr, stdtrit  # Student's t CDF and quantile; here, not at module level (plan)

    c = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if paired:
        if c.shape != b.shape:
            raise ValueError(f"paired seeds need the same shape on both sides, got {c.shape} and {b.shape}")
        n = c.shape[-1]
        if n < 2:
            raise ValueError("a paired t interval needs at least 2 shared seeds")
        differences = c - b
        delta = differences.mean(axis=-1)
        se = differences.std(axis=-1, ddof=1) / math.sqrt(n)
        df = np.full(delta.shape, float(n - 1))
    else:
        n_c, n_b = c.shape[-1], b.shape[-1]
        if n_c < 2 or n_b < 2:
            raise ValueError(f"Welch's t interval needs at least 2 seeds on each side, got {n_c} and {n_b}")
        var_c = c.var(axis=-1, ddof=1) / n_c
        var_b = b.var(axis=-1, ddof=1) / n_b
        delta = c.mean(axis=-1) - b.mean(axis=-1)
        se = np.sqrt(var_c + var_b)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = (var_c + var_b) ** 2 / (var_c**2 / (n_c - 1) + var_b**2 / (n_b - 1))
    degenerate = se == 0
    safe_df = np.where(degenerate, 1.0, df)
    safe_se = np.where(degenerate, 1.0, se)
    quantile = stdtrit(safe_df, 0.5 + confidence / 2)
    low = np.where(degenerate, delta, delta - quantile * safe_se)
    high = np.where(degenerate, delta, delta + quantile * safe_se)
    p_value = np.where(degenerate, np.where(delta == 0, 1.0, 0.0), 2 * stdtr(safe_df, -np.abs(delta / safe_se)))
    return TTestArrays(delta, low, high, p_value, np.where(degenerate, np.nan, df), se)


@dataclass(frozen=True)
class DeltaInterval:
    """Δ = candidate − baseline (fractions) over seeds and, when it can be estimated, its t interval.

    ``low``/``high``/``p_value``/``df``/``method`` are ``None`` when no interval exists; ``reason`` then says why.
    """

    delta: float
    low: float | None
    high: float | None
    p_value: float | None
    df: float | None
    method: str | None
    """:data:`PAIRED_T`, :data:`WELCH_T` or ``None``."""
    n_candidate: int
    n_baseline: int
    n_pairs: int
    """Seeds shared by both rows (the n of the paired t; 0 for Welch)."""
    confidence: float
    reason: str | None = None

    @property
    def significant(self) -> bool:
        """True when an interval exists and excludes 0."""
        return self.low is not None and self.high is not None and not (self.low <= 0.0 <= self.high)


def _valid(values: Mapping[Hashable, float | None]) -> dict[Hashable, float]:
    return {key: float(value) for key, value in values.items() if value is not None and not math.isnan(float(value))}


def delta_interval(
    candidate: Mapping[Hashable, float | None], baseline: Mapping[Hashable, float | None], *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> DeltaInterval | None:
    """Δ and its t interval from per-replicate values ``{replicate id: value}`` of two rows (see the module doc).

    Replicates are paired by id (the seed), whatever order the mappings hold them in; missing or NaN values
    are left out. ``None`` when a side has no value.
    """
    c, b = _valid(candidate), _valid(baseline)
    if not c or not b:
        return None
    delta = float(np.mean(list(c.values())) - np.mean(list(b.values())))
    shared = set(c) == set(b)

    def without(reason: str) -> DeltaInterval:
        return DeltaInterval(delta, None, None, None, None, None, len(c), len(b), len(c) if shared else 0, confidence, reason)

    if shared:
        if len(c) < 2:
            return without("one seed: seed-to-seed variation cannot be estimated")
        order = sorted(c, key=repr)
        result = t_interval_arrays(np.array([c[k] for k in order]), np.array([b[k] for k in order]),
                                   paired=True, confidence=confidence)
        method, pairs = PAIRED_T, len(order)
    else:
        if len(c) < 2 or len(b) < 2:
            side = "candidate" if len(c) < 2 else "baseline"
            return without(f"one seed in the {side} row (and the seeds differ): seed-to-seed variation cannot be estimated")
        result = t_interval_arrays(np.array(list(c.values())), np.array(list(b.values())), paired=False, confidence=confidence)
        method, pairs = WELCH_T, 0
    df = float(result.df)
    return DeltaInterval(
        delta=float(result.delta), low=float(result.low), high=float(result.high), p_value=float(result.p_value),
        df=None if math.isnan(df) else df, method=method, n_candidate=len(c), n_baseline=len(b), n_pairs=pairs,
        confidence=confidence,
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
