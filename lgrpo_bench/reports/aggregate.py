r"""Across benchmarks: interquartile mean, probability of improvement and performance profiles (pure math).

Definitions are rliable's (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical
Precipice", NeurIPS; https://github.com/google-research/rliable). The ``rliable`` package itself is not used:
rliable 1.2 needs ``arch`` < 8, and arch 7 does not import with pandas 3 (``deprecate_kwarg()`` error), so the
definitions are computed here with numpy and scipy. Scores are accuracies (fractions), one per run (training
seed) and benchmark: a row's score matrix is runs × benchmarks. No normalisation: every benchmark is already on
the same 0–1 scale.

* **IQM** (:func:`iqm`): ``scipy.stats.trim_mean(scores, 0.25)`` over all runs × benchmarks together (rliable's
  ``aggregate_iqm``: the mean of the middle 50 % of the pooled scores, int(0.25·n·M) cut from each end).
* **Probability of improvement** (:func:`probability_of_improvement`) of X over Y: the mean over benchmarks m of
  P(X_m > Y_m) with ties counting ½. Unpaired (rliable's definition): P is the Mann–Whitney U statistic over all
  n_x·n_y pairs of runs, U/(n_x·n_y). **Paired** (both rows ran the same seeds; seed s of both shares the warm
  start and the prompt order): P = (1/n) Σ_s S(x_s,m, y_s,m), each run compared with its own twin only, S(a, b) =
  1 if a > b, ½ if equal, 0 else. The unpaired form compares runs that share nothing with runs that share
  everything as if all were independent, so it cannot be used where pairing is claimed.
* **Performance profile** (:func:`performance_profile`): the share of runs × benchmarks scoring above τ, for τ on a
  grid (rliable's ``create_performance_profile``, "score distributions").
* **Intervals** (:func:`compare_arrays`): bootstrap over runs, stratified by row (each row resampled within its
  own runs), a run resampled **with all its benchmarks**, the same seed indices for both rows when paired. rliable
  stratifies by task because on Atari each task is trained separately; here one trained model is evaluated on
  every benchmark, so its benchmark scores are correlated and resampling them independently misstates the
  variance (``benchmarks/eval_statistics_calibration.py``, 4 benchmarks: false-positive rates up to 12 % (ΔIQM) and
  15 % (PoI) when a run's benchmarks correlate with ρ = 0.7, 0–4 % when they do not; resampling whole runs: 3.5–6.5 %).
  With 3–10 seeds the percentile interval is too narrow (a bootstrap of n values has variance shrunk by (n − 1)/n
  and a bounded support), so the interval is the bootstrap standard error, expanded by √(m/(m − 1)), times the t
  quantile: estimate ± t_{1−α/2, ν}·√(m/(m − 1))·sd*, with m = the smaller row's runs, ν = n − 1 paired and
  n_c + n_b − 2 unpaired — for a mean over seeds this becomes the t interval of :mod:`.stats` as the resamples
  grow (the bootstrap variance of a mean of n values is (n − 1)/n·s²/n); the widening follows the expanded
  bootstrap of Hesterberg 2015, "What Teachers Should Know About the Bootstrap", The American Statistician 69(4)).
  The bootstrap draws come from a fixed seed (:data:`BOOTSTRAP_SEED`), so a report is reproducible.
  The null simulation (``tests/test_eval_statistics.py``) measures each interval's false-positive rate.
  The probability of improvement gets an interval only from :data:`MIN_POI_SEEDS` runs per row: with 3 its
  per-seed indicators take so few values that the interval excluded ½ in 9.5–10.5 % of identical pairs when
  benchmarks correlate (ρ = 0.7, 4 benchmarks, 1,500 simulated pairs), so it is shown without an interval there.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lgrpo_bench.reports.stats import DEFAULT_CONFIDENCE

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "MIN_POI_SEEDS",
    "AggregateArrays",
    "AggregateComparison",
    "compare_aggregates",
    "compare_arrays",
    "iqm",
    "performance_profile",
    "probability_of_improvement",
]

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
MIN_POI_SEEDS = 5
"""Runs per row from which the probability of improvement gets an interval (module doc)."""
_CHUNK_VALUES = 4_000_000


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean of (..., n, M) scores over the last two axes together (runs × benchmarks pooled).

    ``scipy.stats.trim_mean(flat, 0.25, axis=-1)``: int(0.25·n·M) values cut from each end, the rest averaged;
    computed with numpy so that a report without plots does not import ``scipy.stats`` (report.py).
    """
    values = np.asarray(scores, dtype=float)
    size = values.shape[-2] * values.shape[-1]
    flat = np.sort(values.reshape(*values.shape[:-2], size), axis=-1)
    cut = int(0.25 * size)
    return flat[..., cut:size - cut].mean(axis=-1)


def _beats(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x > y) + 0.5 * (x == y)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, *, paired: bool) -> np.ndarray:
    """P(X > Y) averaged over benchmarks for (..., n_x, M) and (..., n_y, M) scores (module doc).

    ``paired``: run s of ``x`` against run s of ``y`` only (n_x = n_y); otherwise every pair (Mann–Whitney U).
    """
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired runs need the same shape on both sides, got {a.shape} and {b.shape}")
        return _beats(a, b).mean(axis=-2).mean(axis=-1)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"both sides need the same benchmarks, got {a.shape[-1]} and {b.shape[-1]}")
    return _beats(a[..., :, None, :], b[..., None, :, :]).mean(axis=(-3, -2)).mean(axis=-1)


def performance_profile(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Share of the (n, M) scores above each threshold τ: (len(thresholds),)."""
    values = np.asarray(scores, dtype=float).ravel()
    return (values[None, :] > np.asarray(thresholds, dtype=float)[:, None]).mean(axis=1)


@dataclass(frozen=True)
class AggregateArrays:
    """Element-wise results of :func:`compare_arrays` (arrays of the batch shape; intervals NaN where none)."""

    iqm_candidate: np.ndarray
    iqm_candidate_low: np.ndarray
    iqm_candidate_high: np.ndarray
    iqm_baseline: np.ndarray
    iqm_baseline_low: np.ndarray
    iqm_baseline_high: np.ndarray
    iqm_delta: np.ndarray
    iqm_delta_low: np.ndarray
    iqm_delta_high: np.ndarray
    poi: np.ndarray
    poi_low: np.ndarray
    poi_high: np.ndarray


def _expanded_quantile(df: float, runs: int, confidence: float) -> float:
    """t_{1−α/2, df}·√(m/(m − 1)): the expansion of a bootstrap standard error over m runs (module doc)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.5 + confidence / 2)) * math.sqrt(runs / (runs - 1))


def compare_arrays(
    candidate: np.ndarray, baseline: np.ndarray, *, paired: bool, confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
) -> AggregateArrays:
    """IQMs, ΔIQM and the probability of improvement of candidate over baseline with their intervals, batched.

    ``candidate`` (..., n_c, M) and ``baseline`` (..., n_b, M): scores by run (seed) and benchmark; with ``paired``
    run s of both is the same seed. Intervals as in the module doc (one set of bootstrap draws for the batch).
    Raises ``ValueError`` with fewer than 2 runs on a side.
    """
    c = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    n_c, n_b = c.shape[-2], b.shape[-2]
    if n_c < 2 or n_b < 2:
        raise ValueError(f"intervals across benchmarks need at least 2 runs on each side, got {n_c} and {n_b}")
    if paired and c.shape != b.shape:
        raise ValueError(f"paired runs need the same shape on both sides, got {c.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    index_c = rng.integers(0, n_c, (resamples, n_c))
    index_b = index_c if paired else rng.integers(0, n_b, (resamples, n_b))
    batch = c.shape[:-2]
    flat_c = c.reshape(-1, n_c, c.shape[-1])
    flat_b = b.reshape(-1, n_b, b.shape[-1])
    sd = {name: np.empty(flat_c.shape[0]) for name in ("c", "b", "delta", "poi")}
    chunk = max(1, _CHUNK_VALUES // (resamples * max(n_c, n_b) * c.shape[-1] * (1 if paired else min(n_c, n_b))))
    for start in range(0, flat_c.shape[0], chunk):
        part_c = flat_c[start:start + chunk][:, index_c]  # (chunk, resamples, n_c, M)
        part_b = flat_b[start:start + chunk][:, index_b]
        iqm_c, iqm_b = iqm(part_c), iqm(part_b)
        sd["c"][start:start + chunk] = iqm_c.std(axis=-1, ddof=1)
        sd["b"][start:start + chunk] = iqm_b.std(axis=-1, ddof=1)
        sd["delta"][start:start + chunk] = (iqm_c - iqm_b).std(axis=-1, ddof=1)
        sd["poi"][start:start + chunk] = probability_of_improvement(part_c, part_b, paired=paired).std(axis=-1, ddof=1)
    sd = {name: values.reshape(batch) for name, values in sd.items()}
    estimate_c, estimate_b = iqm(c), iqm(b)
    estimate_poi = probability_of_improvement(c, b, paired=paired)
    runs = min(n_c, n_b)
    q_delta = _expanded_quantile(n_c - 1 if paired else n_c + n_b - 2, runs, confidence)
    q_c, q_b = _expanded_quantile(n_c - 1, n_c, confidence), _expanded_quantile(n_b - 1, n_b, confidence)
    poi_half = q_delta * sd["poi"] if runs >= MIN_POI_SEEDS else np.full(batch, np.nan)
    return AggregateArrays(
        estimate_c, estimate_c - q_c * sd["c"], estimate_c + q_c * sd["c"],
        estimate_b, estimate_b - q_b * sd["b"], estimate_b + q_b * sd["b"],
        estimate_c - estimate_b, estimate_c - estimate_b - q_delta * sd["delta"], estimate_c - estimate_b + q_delta * sd["delta"],
        estimate_poi, np.clip(estimate_poi - poi_half, 0.0, 1.0), np.clip(estimate_poi + poi_half, 0.0, 1.0),
    )


@dataclass(frozen=True)
class AggregateComparison:
    """One candidate row against its baseline row across benchmarks (fractions; intervals ``None`` where none)."""

    iqm_candidate: float
    iqm_candidate_interval: tuple[float, float] | None
    iqm_baseline: float
    iqm_baseline_interval: tuple[float, float] | None
    iqm_delta: float
    iqm_delta_interval: tuple[float, float] | None
    poi: float
    poi_interval: tuple[float, float] | None
    paired: bool
    n_candidate: int
    n_baseline: int
    benchmarks: int
    confidence: float
    reason: str | None = None
    """Why an interval is missing (one run on a side; fewer than :data:`MIN_POI_SEEDS` for the PoI)."""


def _pair(low, high) -> tuple[float, float] | None:
    low, high = float(low), float(high)
    return None if math.isnan(low) or math.isnan(high) else (low, high)


def compare_aggregates(
    candidate: Mapping[Hashable, Sequence[float]], baseline: Mapping[Hashable, Sequence[float]], *,
    confidence: float = DEFAULT_CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
) -> AggregateComparison | None:
    """:class:`AggregateComparison` from ``{replicate id: [score per benchmark]}`` of two rows.

    Paired (by replicate id) when both rows hold the same ids; ``None`` when a side has no run. Every run must
    hold a score for each benchmark, in the same order.
    """
    if not candidate or not baseline:
        return None
    widths = {len(v) for v in (*candidate.values(), *baseline.values())}
    if len(widths) != 1:
        raise ValueError(f"every run needs a score for each benchmark, got widths {sorted(widths)}")
    paired = set(candidate) == set(baseline) and len(candidate) >= 2
    order_c = sorted(candidate, key=repr)
    order_b = order_c if paired else sorted(baseline, key=repr)
    c = np.array([candidate[k] for k in order_c], dtype=float)
    b = np.array([baseline[k] for k in order_b], dtype=float)
    common = dict(paired=paired, n_candidate=len(c), n_baseline=len(b), benchmarks=c.shape[1], confidence=confidence)
    if len(c) < 2 or len(b) < 2:
        iqm_c, iqm_b = float(iqm(c)), float(iqm(b))
        return AggregateComparison(iqm_c, None, iqm_b, None, iqm_c - iqm_b, None,
                                   float(probability_of_improvement(c, b, paired=set(candidate) == set(baseline))), None,
                                   **common, reason="one run on a side: no interval")
    result = compare_arrays(c, b, paired=paired, confidence=confidence, resamples=resamples, seed=seed)
    poi_interval = _pair(result.poi_low, result.poi_high)
    return AggregateComparison(
        float(result.iqm_candidate), _pair(result.iqm_candidate_low, result.iqm_candidate_high),
        float(result.iqm_baseline), _pair(result.iqm_baseline_low, result.iqm_baseline_high),
        float(result.iqm_delta), _pair(result.iqm_delta_low, result.iqm_delta_high),
        float(result.poi), poi_interval, **common,
        reason=None if poi_interval else f"fewer than {MIN_POI_SEEDS} runs per row: probability of improvement without interval",
    )
