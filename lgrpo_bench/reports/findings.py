"""Verdicts on published findings (``lgrpo-bench findings``): does a grid's runs reproduce a claimed effect?

A finding (:class:`~lgrpo_bench.config.findings.FindingConfig`) names a metric, how a run's history becomes one
number (:func:`summarize`), two arms of the grid (or one arm and a threshold), the claimed direction and the key
whose values are the *bases* (``pair_over``, by default ``model.warm_start_seed``: the warm-started base models).

The verdict (the one place it is defined)
-----------------------------------------
* For each base b: effect_b = mean over b's runs of arm A − mean over b's runs of arm B (the runs of an arm at a
  base are its RL seeds, and the values of any axis the arm does not name); one-arm claims: − threshold.
  RL seeds are averaged *inside* a base, never treated as bases: runs on one base model share it, so they are
  not independent replicates of "a model".
* A base without a finished run of an arm (or without the metric) is left out, and the result says which.
* Δ = mean_b effect_b, SE = sd_b(effect_b)/√n_b (ddof 1), interval Δ ± t_{1−α/2, n_b−1}·SE (two-sided, α = 1 −
  confidence; :func:`~lgrpo_bench.reports.stats.t_interval_arrays`, paired against 0).
* **holds**: the interval excludes 0 on the claimed side (low > 0 for ``greater``, high < 0 for ``less``);
  **reversed**: it excludes 0 on the other side; **inconclusive**: it contains 0; **too few bases**: fewer than
  :data:`MIN_BASES` bases have both arms (no verdict). Under no effect a verdict other than inconclusive comes 5 %
  of the time (the two sides together; ``tests/test_findings.py`` simulates it).

Everything here is pure but :func:`read_findings`, which reads the store through :mod:`.loader`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lgrpo_bench.config.findings import FindingConfig, config_value, in_arm
from lgrpo_bench.reports.stats import t_interval_arrays

__all__ = [
    "HOLDS", "INCONCLUSIVE", "MIN_BASES", "REVERSED", "TOO_FEW", "ArmStats", "FindingResult", "RunValue",
    "evaluate_finding", "read_findings", "summarize", "verdict_arrays", "verdict_of",
]

HOLDS, REVERSED, INCONCLUSIVE, TOO_FEW = "holds", "reversed", "inconclusive", "too few bases"
MIN_BASES = 3
"""Fewer bases with both arms give no verdict (a t interval on 2 bases has 1 degree of freedom: t = 12.7)."""


def summarize(values: Sequence[float], how: str) -> float | None:
    """One number from a run's metric history (values in step order; NaN left out); ``None`` when nothing is left.

    ``mean_last_quarter``: mean of the last ⌈n/4⌉ values; ``mean``; ``last``: the last value; ``last_minus_first``;
    ``max``; ``min``; ``sum``."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return None
    if how == "mean_last_quarter":
        tail = finite[-max(1, math.ceil(len(finite) / 4)):]
        return float(np.mean(tail))
    if how == "mean":
        return float(np.mean(finite))
    if how == "last":
        return finite[-1]
    if how == "last_minus_first":
        return finite[-1] - finite[0]
    if how == "max":
        return max(finite)
    if how == "min":
        return min(finite)
    if how == "sum":
        return float(np.sum(finite))
    raise ValueError(f"unknown summary {how!r}")


def verdict_arrays(effects: np.ndarray, direction: str, confidence: float = 0.95):
    """(Δ, low, high, verdicts) for a batch of per-base effects, bases along the last axis (n ≥ 2).

    ``verdicts`` is an array of :data:`HOLDS`, :data:`REVERSED`, :data:`INCONCLUSIVE` (the null simulation runs
    through this)."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be greater or less, got {direction!r}")
    effects = np.asarray(effects, dtype=float)
    result = t_interval_arrays(effects, np.zeros_like(effects), paired=True, confidence=confidence)
    above, below = result.low > 0, result.high < 0
    claimed, other = (above, below) if direction == "greater" else (below, above)
    verdicts = np.where(claimed, HOLDS, np.where(other, REVERSED, INCONCLUSIVE))
    return result.delta, result.low, result.high, verdicts, result


@dataclass(frozen=True)
class ArmStats:
    """An arm's per-base means (over its runs at the base), summarised over the bases of the effect."""

    label: str
    mean: float | None
    std: float | None
    n_runs: int


@dataclass
class FindingResult:
    """The verdict on one finding."""

    name: str
    finding: FindingConfig
    verdict: str
    effect: float | None
    low: float | None
    high: float | None
    p_value: float | None
    n_bases: int
    effects: dict[Hashable, float] = field(default_factory=dict)
    arms: list[ArmStats] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        f = self.finding
        return {
            "name": self.name, "claim": f.claim, "source": f.source, "metric": f.metric, "summary": f.summary,
            "direction": f.direction, "arms": f.arms, "threshold": f.threshold, "pair_over": f.pair_over,
            "sign_of": f.sign_of.model_dump() if f.sign_of else None, "per": f.per.model_dump() if f.per else None,
            "confidence": f.confidence, "verdict": self.verdict, "effect": self.effect, "low": self.low,
            "high": self.high, "p_value": self.p_value, "n_bases": self.n_bases,
            "effects": {str(k): v for k, v in self.effects.items()},
            "arm_stats": [{"label": a.label, "mean": a.mean, "std": a.std, "n_runs": a.n_runs} for a in self.arms],
            "notes": list(self.notes),
        }


def verdict_of(effects: Mapping[Hashable, float], direction: str, confidence: float = 0.95
               ) -> tuple[str, float | None, float | None, float | None, float | None]:
    """(verdict, Δ, low, high, p) from ``{base: effect_b}``; fewer than :data:`MIN_BASES` bases: :data:`TOO_FEW`
    with Δ (when any) and no interval."""
    values = [float(v) for v in effects.values() if v is not None and math.isfinite(float(v))]
    if len(values) < MIN_BASES:
        return TOO_FEW, (float(np.mean(values)) if values else None), None, None, None
    delta, low, high, verdicts, result = verdict_arrays(np.array(values), direction, confidence)
    return str(verdicts), float(delta), float(low), float(high), float(result.p_value)


@dataclass(frozen=True)
class RunValue:
    """One finished run as a finding sees it: its config and the summaries of its metrics."""

    run_id: str
    config: Any
    summaries: Mapping[str, float | None]
    """``{metric: summary}`` keyed by ``f"{metric}:{summary}"`` (:func:`summary_key`)."""


def summary_key(metric: str, how: str) -> str:
    return f"{metric}:{how}"


def arm_label(arm: Mapping[str, Any]) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in arm.items())


def _run_value(finding: FindingConfig, run: RunValue) -> float | None:
    value = run.summaries.get(summary_key(finding.metric, finding.summary))
    if value is None:
        return None
    if finding.sign_of is not None:
        sign = run.summaries.get(summary_key(finding.sign_of.metric, finding.sign_of.summary))
        if sign is None:
            return None
        value = value * float(np.sign(sign))
    if finding.per is not None:
        scale = run.summaries.get(summary_key(finding.per.metric, finding.per.summary))
        if scale is None or scale == 0:
            return None
        value = value / scale
    return float(value)


def _order(base: Hashable) -> tuple:
    if isinstance(base, (int, float)) and not isinstance(base, bool):
        return (0, float(base), "")
    return (1, 0.0, repr(base))


def _base_key(value: Any) -> Hashable:
    return value if isinstance(value, Hashable) else repr(value)


def evaluate_finding(finding: FindingConfig, runs: Sequence[RunValue], *, name: str,
                     expected_bases: Sequence[Any] = ()) -> FindingResult:
    """The verdict on ``finding`` from the finished runs of its grid (see the module doc).

    ``expected_bases``: the ``pair_over`` values the grid has, so that a base with no run at all is named too."""
    n_arms = len(finding.arms)
    per_base: dict[Hashable, list[list[float]]] = {}
    runs_per_arm = [0] * n_arms
    missing_metric = 0
    for base in expected_bases:
        per_base.setdefault(_base_key(base), [[] for _ in range(n_arms)])
    for run in runs:
        arms = [a for a, arm in enumerate(finding.arms) if in_arm(run.config, arm)]
        if not arms:
            continue
        base = _base_key(config_value(run.config, finding.pair_over))
        slots = per_base.setdefault(base, [[] for _ in range(n_arms)])
        value = _run_value(finding, run)
        if value is None:
            missing_metric += 1
            continue
        for a in arms:
            slots[a].append(value)
            runs_per_arm[a] += 1
    effects: dict[Hashable, float] = {}
    arm_means: list[list[float]] = [[] for _ in range(n_arms)]
    notes: list[str] = []
    labels = ["A", "B"]
    for base in sorted(per_base, key=_order):
        slots = per_base[base]
        lacking = [labels[a] for a in range(n_arms) if not slots[a]]
        if lacking:
            notes.append(f"{finding.pair_over}={base} left out: no finished run with {finding.metric} in arm "
                         f"{' and '.join(lacking)}")
            continue
        means = [float(np.mean(values)) for values in slots]
        for a, mean in enumerate(means):
            arm_means[a].append(mean)
        other = means[1] if n_arms == 2 else float(finding.threshold)
        effects[base] = means[0] - other
    if missing_metric:
        notes.append(f"{missing_metric} finished run(s) of the arms did not log {finding.metric}"
                     + "".join(f" or {extra.metric}" for extra in (finding.sign_of, finding.per) if extra is not None))
    verdict, delta, low, high, p_value = verdict_of(effects, finding.direction, finding.confidence)
    if verdict == TOO_FEW:
        notes.append(f"{len(effects)} base(s) with every arm; a verdict needs at least {MIN_BASES}")
    arms = []
    for a, arm in enumerate(finding.arms):
        values = arm_means[a]
        arms.append(ArmStats(arm_label(arm), float(np.mean(values)) if values else None,
                             float(np.std(values, ddof=1)) if len(values) > 1 else None, runs_per_arm[a]))
    if n_arms == 1:
        arms.append(ArmStats(f"threshold {finding.threshold:g}", float(finding.threshold), 0.0, 0))
    return FindingResult(name, finding, verdict, delta, low, high, p_value, len(effects), effects, arms, notes)


def finding_names(grid_name: str, findings: Sequence[FindingConfig]) -> list[str]:
    """The table's name of each finding: its ``name``, else the grid's (``#i`` appended when there are several)."""
    return [f.name or (grid_name if len(findings) == 1 else f"{grid_name}#{i}") for i, f in enumerate(findings)]


def read_findings(expanded, store=None) -> list[FindingResult]:
    """The verdicts on the findings of an expanded grid (``ExpandedGrid``), from the finished runs of its current
    points in the store (``store``: a reader or a URI; default the points' ``tracking.uri``).

    A grid with no finished run gives "too few bases" verdicts; store trouble raises
    :class:`~lgrpo_bench.tracking.reader.StoreProblem`."""
    from lgrpo_bench.reports.grids import selection_of
    from lgrpo_bench.reports.loader import ReportInputError, load_histories, load_runs, open_store

    findings = expanded.grid.all_findings
    names = finding_names(expanded.grid.name, findings)
    selection = selection_of(expanded)
    reader = open_store(store if store is not None else selection.tracking_uri)
    by_run_id = {point.run_id: point for point in expanded.points}
    wanted = {(f.metric, f.summary) for f in findings}
    wanted |= {(extra.metric, extra.summary) for f in findings for extra in (f.sign_of, f.per) if extra is not None}
    try:
        data = load_runs(reader, list(selection.experiments), grid=selection.name, run_ids=selection.run_ids)
        records = [r for r in data.runs if r.run_id in by_run_id]
    except ReportInputError:  # nothing finished yet (or no experiment yet): every finding lacks bases
        records = []
    histories = load_histories(reader, [r.mlflow_run_id for r in records], {metric for metric, _ in wanted}) if records else {}
    runs = []
    for record in records:
        summaries = {}
        for metric, how in wanted:
            found = histories.get(metric, {}).get(record.mlflow_run_id)
            summaries[summary_key(metric, how)] = summarize(found[1], how) if found else None
        runs.append(RunValue(record.run_id, by_run_id[record.run_id].config, summaries))
    results = []
    for finding, name in zip(findings, names):
        bases = []
        for point in expanded.points:
            if any(in_arm(point.config, arm) for arm in finding.arms):
                value = config_value(point.config, finding.pair_over)
                if value not in bases:
                    bases.append(value)
        results.append(evaluate_finding(finding, runs, name=name, expected_bases=bases))
    return results
