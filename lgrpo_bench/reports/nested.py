r"""Evaluation as a nested design: training seeds, and k evaluation samples per problem within each run.

Pure functions of numbers (per-problem records already read), no MLflow, no files.

The two-level model
-------------------
Run r of an algorithm (one training seed) is evaluated on N problems with k samples each (avg@k: the k samples
are k independent draws, one per evaluation seed; greedy is k = 1 with no sampling noise). Its score is

    Y_r = (1/N) Σ_i (1/k) Σ_j x_rij = μ + u_r + ē_r,

where x_rij ∈ {0, 1} is sample j of problem i, μ the algorithm's mean, u_r the training-seed effect (the
trained model r; variance σ²_train), and ē_r the evaluation-sampling noise of the run's score given its
model: with p_ri the model's probability of solving problem i, Var(ē_r | model r) = (1/N²) Σ_i p_ri(1 − p_ri)/k.

* **Evaluation-sampling variance of a run** (:func:`run_score`): the unbiased estimate from its own records,
  v_r = (1/N²) Σ_i p̂_ri(1 − p̂_ri)/(k_i − 1), p̂_ri = (1/k_i) Σ_j x_rij (E[p̂(1 − p̂)] = p(1 − p)(k − 1)/k);
  defined for k_i ≥ 2 on every problem. Its square root is the std of the run's avg@k score over evaluation
  seeds; √(k·v_r) that of a single-sample (avg@1) score.
* **Variance components** (:func:`variance_components`): the sample variance s² of Y_r over a row's seeds
  estimates σ²_train + σ²_eval with σ²_eval = E[v_r], so σ̂²_eval = mean_r v_r and σ̂²_train = s² − σ̂²_eval
  (a one-way random-effects ANOVA by moments; shown as 0 when negative, which happens by chance when the seed
  effect is small against the sampling noise).
* **The Δ interval** (:func:`nested_t_interval_arrays`, :func:`nested_delta`): the t interval over seeds of
  :mod:`.stats` on the run scores Y_r. Because every Y_r already contains its own ē_r, the between-seed spread
  estimates the sum of both levels, and the interval covers both the training seeds and the evaluation sampling
  — the classical summary-measure analysis of a balanced nested design, exact when the run means are normal.
  Its squared standard error splits into an evaluation-sampling part and a training-seed part:

      paired:  SE² = s_d²/n,  E[s_d²] = Var(u_c − u_b) + E[v_c + v_b];   eval part = mean_s (v_c,s + v_b,s)/n
      Welch:   SE² = s_c²/n_c + s_b²/n_b;                                eval part = v̄_c/n_c + v̄_b/n_b

  and training-seed part = SE² − eval part. The report prints both, so a reader sees how much of the
  uncertainty more evaluation samples (larger k) could remove and how much only more training seeds can.
  An interval built from the training-seed part alone (the seed variance "cleaned" of sampling noise) ignores the
  evaluation sampling every reported score carries; the null simulation (``tests/nested_simulation.py``,
  ``tests/test_eval_statistics.py``, ``benchmarks/eval_statistics_calibration.py``) shows the summary-measure
  interval at the nominal rate and that one far above it.

Per-question paired analysis (one training seed per side)
---------------------------------------------------------
:func:`paired_question_interval`, after Miller 2024, "Adding Error Bars to Evals: A Statistical Approach to
Language Model Evaluations" (arXiv 2411.00640, §2.2 clustered standard errors, §4 paired differences): for
questions i = 1..N with k_c and k_b samples, d_i = mean_j c_ij − mean_j b_ij, Δ = (1/N) Σ_i d_i and the standard
error clustered by question, SE = sqrt(Σ_i (d_i − Δ)² / (N(N − 1))) (Miller's clustered SE of the mean of the
sample-level differences, with equal samples per question, times the small-cluster factor √(N/(N − 1))), interval
Δ ± t_{1−α/2, N−1}·SE. It conditions on the two trained models: it answers "do these two checkpoints differ on
this question distribution", not "does the algorithm beat the baseline", because a second training seed would give
other models. It is therefore offered only where the seed interval cannot exist (one seed) and marked as such.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from lgrpo_bench.reports.stats import DEFAULT_CONFIDENCE, PAIRED_T, WELCH_T, DeltaInterval, TTestArrays, delta_interval, t_interval_arrays

__all__ = [
    "NestedDelta",
    "PairedQuestions",
    "RunScore",
    "VarianceComponents",
    "correct_by_problem",
    "nested_delta",
    "nested_t_interval_arrays",
    "paired_question_arrays",
    "paired_question_interval",
    "run_score",
    "variance_components",
]


def correct_by_problem(records: Iterable[Mapping]) -> dict[str, list[float]]:
    """``{problem_id: [1.0 or 0.0 per sample, in sample order]}`` from per-problem records (``EVAL_RECORD_FIELDS``)."""
    samples: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        samples.setdefault(str(record["problem_id"]), []).append((int(record.get("sample", 0)), 1.0 if record["correct"] else 0.0))
    return {problem: [value for _, value in sorted(values)] for problem, values in samples.items()}


@dataclass(frozen=True)
class RunScore:
    """One run's score on one benchmark from its records, and the evaluation-sampling variance of that score."""

    score: float
    """(1/N) Σ_i p̂_i: the avg@k accuracy (fraction)."""
    eval_variance: float | None
    """v = (1/N²) Σ_i p̂_i(1 − p̂_i)/(k_i − 1); ``None`` when a problem has fewer than 2 samples."""
    problems: int
    samples: int
    """The smallest k_i (samples per problem)."""


def run_score(samples: Mapping[str, Sequence[float]]) -> RunScore:
    """:class:`RunScore` of ``{problem: [correct per sample]}`` (module doc). Raises ``ValueError`` when empty."""
    if not samples or any(len(values) == 0 for values in samples.values()):
        raise ValueError("a run score needs at least one sample of at least one problem")
    n = len(samples)
    means = np.array([float(np.mean(values)) for values in samples.values()])
    ks = np.array([len(values) for values in samples.values()])
    variance = None
    if ks.min() >= 2:
        variance = float(np.sum(means * (1.0 - means) / (ks - 1)) / n**2)
    return RunScore(float(means.mean()), variance, n, int(ks.min()))


@dataclass(frozen=True)
class VarianceComponents:
    """The spread of a row's run scores split by level (fractions; module doc)."""

    n: int
    observed_std: float | None
    """s: std of the run scores over seeds (ddof 1; ``None`` for one run)."""
    eval_std: float | None
    """σ̂_eval = sqrt(mean_r v_r): std of one run's score over evaluation seeds (``None`` without v)."""
    train_std: float | None
    """σ̂_train = sqrt(max(0, s² − σ̂²_eval)); ``None`` when s or σ̂_eval is missing."""
    samples: int | None = None
    """Samples per problem (k) of the runs, when they agree."""


def variance_components(scores: Sequence[float], eval_variances: Sequence[float | None], samples: int | None = None) -> VarianceComponents:
    """:class:`VarianceComponents` of run scores and their evaluation-sampling variances (same order)."""
    if len(scores) != len(eval_variances):
        raise ValueError(f"scores and eval_variances differ in length: {len(scores)} vs {len(eval_variances)}")
    n = len(scores)
    observed = float(np.std(scores, ddof=1)) if n >= 2 else None
    known = [v for v in eval_variances if v is not None]
    eval_var = float(np.mean(known)) if known and len(known) == n else None
    eval_std = math.sqrt(eval_var) if eval_var is not None else None
    train_std = math.sqrt(max(0.0, observed**2 - eval_var)) if observed is not None and eval_var is not None else None
    return VarianceComponents(n, observed, eval_std, train_std, samples)


def nested_t_interval_arrays(
    candidate: np.ndarray, candidate_eval_var: np.ndarray, baseline: np.ndarray, baseline_eval_var: np.ndarray, *,
    paired: bool, confidence: float = DEFAULT_CONFIDENCE,
) -> tuple[TTestArrays, np.ndarray]:
    """The nested design's Δ interval for a batch of comparisons, seeds on the last axis, and the evaluation part of SE².

    ``candidate``/``baseline``: run scores Y_r; ``*_eval_var``: their v_r (same shapes). SE² = training-seed part +
    evaluation part (module doc), which sums to the SE² of the t interval over seeds of
    :func:`~lgrpo_bench.reports.stats.t_interval_arrays` on the run scores (same Δ, df and interval); returns
    (the t results, the evaluation part of SE²).
    """
    from scipy.special import stdtr, stdtrit

    c, b = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    c_var, b_var = np.asarray(candidate_eval_var, dtype=float), np.asarray(baseline_eval_var, dtype=float)
    reference = t_interval_arrays(c, b, paired=paired, confidence=confidence)  # Δ, df and the shape checks
    if paired:
        n = c.shape[-1]
        total = (c - b).var(axis=-1, ddof=1) / n
        eval_part = (c_var + b_var).mean(axis=-1) / n
    else:
        total = c.var(axis=-1, ddof=1) / c.shape[-1] + b.var(axis=-1, ddof=1) / b.shape[-1]
        eval_part = c_var.mean(axis=-1) / c_var.shape[-1] + b_var.mean(axis=-1) / b_var.shape[-1]
    train_part = total - eval_part  # the training seeds' share of SE² (negative by chance when they add little)
    se = np.sqrt(np.maximum(train_part + eval_part, 0.0))
    delta, df = reference.delta, reference.df
    degenerate = se == 0
    safe_df = np.where(degenerate | np.isnan(df), 1.0, df)
    safe_se = np.where(degenerate, 1.0, se)
    quantile = stdtrit(safe_df, 0.5 + confidence / 2)
    low = np.where(degenerate, delta, delta - quantile * safe_se)
    high = np.where(degenerate, delta, delta + quantile * safe_se)
    p_value = np.where(degenerate, np.where(delta == 0, 1.0, 0.0), 2 * stdtr(safe_df, -np.abs(delta / safe_se)))
    return TTestArrays(delta, low, high, p_value, df, se), eval_part


@dataclass(frozen=True)
class NestedDelta:
    """Δ of one benchmark with its interval over seeds (covering both levels) and SE² split by level."""

    interval: DeltaInterval
    se: float | None
    """Standard error of Δ (fraction); ``None`` without an interval."""
    eval_se: float | None
    """sqrt(evaluation part of SE²): what evaluation sampling alone contributes."""
    train_se: float | None
    """sqrt(max(0, SE² − evaluation part)): what remains for the training seeds."""

    @property
    def eval_share(self) -> float | None:
        """Evaluation part / SE² (can exceed 1 by chance when the seeds' spread is small)."""
        if self.se is None or self.eval_se is None or self.se == 0:
            return None
        return self.eval_se**2 / self.se**2


def nested_delta(
    candidate: Mapping[Hashable, RunScore], baseline: Mapping[Hashable, RunScore], *, confidence: float = DEFAULT_CONFIDENCE,
) -> NestedDelta | None:
    """:class:`NestedDelta` from ``{replicate id: RunScore}`` of two rows (paired by id when the id sets agree)."""
    interval = delta_interval({k: v.score for k, v in candidate.items()}, {k: v.score for k, v in baseline.items()},
                              confidence=confidence)
    if interval is None:
        return None
    if interval.method is None:
        return NestedDelta(interval, None, None, None)
    paired = interval.method == PAIRED_T
    if paired:
        order = sorted(candidate, key=repr)
        c = [candidate[k] for k in order]
        b = [baseline[k] for k in order]
    else:
        assert interval.method == WELCH_T
        c, b = list(candidate.values()), list(baseline.values())
    variances = [s.eval_variance for s in c + b]
    known = [0.0 if v is None else v for v in variances]  # an unknown part adds 0 here and shows as missing
    result, eval_part = nested_t_interval_arrays(
        np.array([s.score for s in c]), np.array(known[:len(c)]), np.array([s.score for s in b]), np.array(known[len(c):]),
        paired=paired, confidence=confidence)
    se = float(result.se)
    eval_se = None if any(v is None for v in variances) else math.sqrt(float(eval_part))
    train_se = None if eval_se is None else math.sqrt(max(0.0, se**2 - eval_se**2))
    df = float(result.df)
    interval = replace(interval, low=float(result.low), high=float(result.high), p_value=float(result.p_value),
                       df=None if math.isnan(df) else df)
    return NestedDelta(interval, se, eval_se, train_se)


@dataclass(frozen=True)
class PairedQuestions:
    """Miller's per-question paired Δ of two single models (fractions; module doc)."""

    delta: float
    se: float
    low: float
    high: float
    p_value: float
    df: int
    questions: int
    samples_candidate: int
    samples_baseline: int
    confidence: float

    @property
    def significant(self) -> bool:
        return not (self.low <= 0.0 <= self.high)


def paired_question_arrays(candidate: np.ndarray, baseline: np.ndarray, *, confidence: float = DEFAULT_CONFIDENCE) -> TTestArrays:
    """The per-question paired interval for a batch: (..., N, k_c) and (..., N, k_b) sample correctness.

    d_i = mean over the candidate's samples − mean over the baseline's; SE clustered by question (module doc).
    """
    from scipy.special import stdtr, stdtrit

    c = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if c.shape[:-1] != b.shape[:-1]:
        raise ValueError(f"the two sides must hold the same questions, got shapes {c.shape} and {b.shape}")
    questions = c.shape[-2]
    if questions < 2:
        raise ValueError("a per-question interval needs at least 2 questions")
    d = c.mean(axis=-1) - b.mean(axis=-1)
    delta = d.mean(axis=-1)
    se = np.sqrt(((d - delta[..., None]) ** 2).sum(axis=-1) / (questions * (questions - 1)))
    df = np.full(delta.shape, float(questions - 1))
    degenerate = se == 0
    safe_se = np.where(degenerate, 1.0, se)
    quantile = stdtrit(df, 0.5 + confidence / 2)
    low = np.where(degenerate, delta, delta - quantile * safe_se)
    high = np.where(degenerate, delta, delta + quantile * safe_se)
    p_value = np.where(degenerate, np.where(delta == 0, 1.0, 0.0), 2 * stdtr(df, -np.abs(delta / safe_se)))
    return TTestArrays(delta, low, high, p_value, df, se)


def paired_question_interval(
    candidate: Mapping[str, Sequence[float]], baseline: Mapping[str, Sequence[float]], *, confidence: float = DEFAULT_CONFIDENCE,
) -> PairedQuestions | None:
    """Miller's paired per-question interval of two models from ``{problem: [correct per sample]}``.

    Only the questions both sides answered count (paired by problem id); ``None`` with fewer than 2 of them.
    Each side may have its own number of samples per question; within a side they must agree.
    """
    shared = sorted(set(candidate) & set(baseline))
    if len(shared) < 2:
        return None
    k_c = {len(candidate[q]) for q in shared}
    k_b = {len(baseline[q]) for q in shared}
    if len(k_c) != 1 or len(k_b) != 1 or 0 in k_c | k_b:
        raise ValueError(f"samples per question must agree within a side, got {sorted(k_c)} and {sorted(k_b)}")
    result = paired_question_arrays(np.array([candidate[q] for q in shared], dtype=float),
                                    np.array([baseline[q] for q in shared], dtype=float), confidence=confidence)
    return PairedQuestions(float(result.delta), float(result.se), float(result.low), float(result.high), float(result.p_value),
                           len(shared) - 1, len(shared), k_c.pop(), k_b.pop(), confidence)
