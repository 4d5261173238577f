"""Power of the report's Δ test: the minimum detectable effect of a grid and the seeds a given gain needs.

The test is the one :mod:`.stats` defines: a two-sided t test at level α over seeds, paired by seed (df = n − 1
on the per-seed differences, std σ_d) or unpaired with n seeds per row (df = 2n − 2, std σ within rows). Its
power against a true difference δ is exact under normal per-seed values:

    paired:      ncp = δ / (σ_d / √n),        df = n − 1
    two-sample:  ncp = δ / (σ · √(2 / n)),    df = 2n − 2
    power(δ) = P(T'_{df, ncp} > t_{1−α/2, df}) + P(T'_{df, ncp} < −t_{1−α/2, df})

with T' the noncentral t (Cohen 1988, *Statistical Power Analysis for the Behavioral Sciences*, ch. 2; the
sample sizes of its tables are the tests of this module). The unpaired design uses Student's pooled-variance
df, which Welch's ν equals when both rows have n seeds and the same std.

* :func:`t_test_power` — power(δ) above.
* :func:`minimum_detectable_effect` — the δ with power(δ) = 1 − β (80 % by default) for n seeds.
* :func:`seeds_needed` — the smallest n ≥ 2 with power(δ) ≥ 1 − β.
* :func:`std_upper_limit` — the one-sided upper confidence limit of a pooled std (χ², below).
* :func:`power_summary` — all of them for a table column, from the pooled std the table measured.

The std is the estimate the report pools over its rows (:func:`~lgrpo_bench.reports.stats.pooled_seed_std`), with
df = Σ (n_i − 1). With few seeds it is itself uncertain: from a 3-seed pilot the plug-in MDE is below the true one
in about 63 % of pilots (P(χ²_2 < 2) = 1 − e⁻¹). The MDE reported is therefore computed from the one-sided
:data:`STD_CONFIDENCE` (80 %) upper confidence limit of the std, σ_U = s·√(df / χ²_{1−0.8, df}) (normal per-seed
values: (df·s²/σ²) ~ χ²_df), so it is at least the true MDE in 80 % of pilots (``tests/test_reports_stats.py``
simulates it); the plug-in MDE and the seeds needed (from s itself) are given beside it. The use cases that read the
store for ``lgrpo-bench plan`` are in :mod:`.power_lines`.

scipy gives the t, χ² and noncentral t: its ``scipy.special`` functions (``stdtrit``, ``chdtri``, ``nctdtr``, what
``scipy.stats``' ``t``, ``chi2`` and ``nct`` call), imported inside the functions that compute: ``lgrpo-bench plan``
pays for them (0.1 s; ``scipy.stats`` would cost 0.5–1 s) only when it prints a power line.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_POWER",
    "MAX_SEEDS",
    "TARGET_EFFECTS",
    "PowerSummary",
    "STD_CONFIDENCE",
    "describe_power",
    "minimum_detectable_effect",
    "power_summary",
    "seeds_needed",
    "std_upper_limit",
    "t_test_power",
]

DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
MAX_SEEDS = 10_000
""":func:`seeds_needed` gives up (``None``) beyond this many seeds."""
TARGET_EFFECTS: tuple[float, ...] = (0.01, 0.02)
"""Gains (fractions: 1 and 2 points) for which reports and ``plan`` print the seeds needed."""
STD_CONFIDENCE = 0.8
"""One-sided confidence of the std's upper limit that the reported MDE is computed from (module doc)."""


def _t_quantile(p: float, df: float) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def std_upper_limit(std, df, confidence: float = STD_CONFIDENCE):
    """One-sided ``confidence`` upper limit of σ from a pooled std ``std`` with ``df`` degrees of freedom:
    s·√(df / χ²_{1−confidence, df}) (exact for normal values). Takes arrays (broadcast) or floats."""
    from scipy.special import chdtri  # the χ² quantile from above: chdtri(df, c) = χ²_{1−c, df}

    return std * (df / chdtri(df, confidence)) ** 0.5


def _design(n: int, std: float, paired: bool) -> tuple[float, float]:
    """(degrees of freedom, standard error of Δ per unit effect) of the design."""
    if paired:
        return n - 1.0, std / math.sqrt(n)
    return 2.0 * n - 2.0, std * math.sqrt(2.0 / n)


def t_test_power(effect: float, std: float, n: int, *, paired: bool, alpha: float = DEFAULT_ALPHA) -> float:
    """Power of the two-sided level-``alpha`` t test against a true difference ``effect`` (module doc).

    ``std``: σ_d of per-seed differences (``paired``) or σ within rows (two-sample); ``n``: seeds (pairs, or per row).
    """
    if n < 2:
        raise ValueError(f"a t test needs at least 2 seeds, got {n}")
    if not std > 0:
        raise ValueError(f"the std must be positive, got {std}")
    from scipy.special import nctdtr  # the noncentral t CDF

    df, se = _design(n, std, paired)
    critical = _t_quantile(1 - alpha / 2, df)
    ncp = effect / se
    return float(1.0 - nctdtr(df, ncp, critical) + nctdtr(df, ncp, -critical))


def minimum_detectable_effect(
    std: float | None, n: int, *, paired: bool, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
) -> float | None:
    """The δ > 0 with :func:`t_test_power` (δ) = ``power``; ``None`` without a positive std or with n < 2.

    Power grows with δ: bisection (to 1e-12 relative) in a bracket around the approximation
    (t_{1−α/2, df} + t_{power, df})·SE.
    """
    if std is None or not std > 0 or n < 2:
        return None
    df, se = _design(n, std, paired)
    guess = (_t_quantile(1 - alpha / 2, df) + _t_quantile(power, df)) * se

    def enough(effect: float) -> bool:
        return t_test_power(effect, std, n, paired=paired, alpha=alpha) >= power

    low, high = 0.5 * guess, 1.5 * guess
    while enough(low):
        low /= 2
    while not enough(high):
        high *= 2
    while high - low > 1e-12 * high:
        middle = (low + high) / 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return (low + high) / 2


def seeds_needed(
    effect: float, std: float | None, *, paired: bool, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
    max_seeds: int = MAX_SEEDS,
) -> int | None:
    """The smallest n ≥ 2 with :func:`t_test_power` ≥ ``power`` (pairs, or seeds per row); ``None`` above ``max_seeds``
    or without a positive std.

    Power grows with n, and the t test never has more power than the z test, so the search starts just below the
    normal-approximation n_z = (z_{1−α/2} + z_{power})²·σ²/δ² (×2 unpaired), gallops up and bisects.
    """
    if std is None or not std > 0 or not effect > 0:
        return None

    def enough(n: int) -> bool:
        return t_test_power(effect, std, n, paired=paired, alpha=alpha) >= power

    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    n_z = (z * std / effect) ** 2 * (1 if paired else 2)
    low = int(min(max(1.0, math.floor(n_z) - 1), max_seeds))  # no test (n = 1) or below n_z: not enough
    if low >= 2 and enough(low):
        low = 1
    step, high = 1, low + 1
    while high < max_seeds and not enough(high):
        low, step = high, step * 2
        high = min(low + step, max_seeds)
    if high >= max_seeds and not enough(max_seeds):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True)
class PowerSummary:
    """What a table column can detect: from ``std`` (fraction) of the ``design`` and ``n`` seeds. The MDEs and seeds
    needed are computed when first read (a table holds one per column; ``plan`` shows one of them)."""

    paired: bool
    """True: σ is the pooled std of per-seed differences (paired t); False: the pooled seed std (two-sample)."""
    std: float
    std_df: int
    """Degrees of freedom of the pooled std (Σ (n_i − 1) over what was pooled)."""
    n: int
    """Seeds of the design: pairs (paired) or seeds per row (two-sample)."""
    effects: tuple[float, ...] = TARGET_EFFECTS
    """Gains (in the metric's logged scale) :attr:`seeds_for` answers for: the unit's ``effects`` (1 and 2 points)."""

    @functools.cached_property
    def std_upper(self) -> float:
        """:func:`std_upper_limit` of ``std`` (one-sided :data:`STD_CONFIDENCE`); infinite without degrees of freedom."""
        return float(std_upper_limit(self.std, self.std_df)) if self.std_df >= 1 else math.inf

    @functools.cached_property
    def mde(self) -> float | None:
        """Minimum detectable effect (fraction) at 80 % power, two-sided 5 %, from ``std_upper``: what reports print."""
        upper = self.std_upper
        return minimum_detectable_effect(upper, self.n, paired=self.paired) if math.isfinite(upper) else None

    @functools.cached_property
    def mde_estimate(self) -> float | None:
        """The same from ``std`` itself (the plug-in MDE: below the true one more often than not with few seeds)."""
        return minimum_detectable_effect(self.std, self.n, paired=self.paired)

    @functools.cached_property
    def seeds_for(self) -> dict[float, int | None]:
        """``{effect: seeds needed}`` for :attr:`effects` (:data:`TARGET_EFFECTS` by default), from ``std``."""
        return {effect: seeds_needed(effect, self.std, paired=self.paired) for effect in self.effects}

    def with_seeds(self, n: int) -> "PowerSummary":
        """The same std and design with ``n`` seeds (what a grid of n seeds would detect)."""
        return power_summary(self.std, n, paired=self.paired, std_df=self.std_df, effects=self.effects)


def power_summary(std: float, n: int, *, paired: bool, std_df: int, effects: tuple[float, ...] = TARGET_EFFECTS) -> PowerSummary:
    """:class:`PowerSummary` of a pooled ``std`` with ``std_df`` degrees of freedom and ``n`` seeds (80 % power,
    two-sided 5 %; the MDE from the std's upper confidence limit, :func:`std_upper_limit`); ``effects``: the gains
    the seeds needed are given for (the metric unit's, :class:`lgrpo_bench.tracking.schema.Unit`)."""
    return PowerSummary(paired=paired, std=std, std_df=std_df, n=n, effects=tuple(effects))


def _seeds_text(n: int | None) -> str:
    return f"> {MAX_SEEDS}" if n is None else str(n)


def describe_power(summary: PowerSummary, unit=None) -> str:
    """One sentence: MDE with n seeds and the seeds the unit's two gains need (1 and 2 points for a fraction), naming
    the std it comes from; numbers in ``unit`` (a :class:`lgrpo_bench.tracking.schema.Unit`; default points)."""
    from lgrpo_bench.tracking.schema import UNIT_POINTS

    unit = unit or UNIT_POINTS
    design = "of paired per-seed differences" if summary.paired else "over seeds within rows (unpaired)"
    if unit == UNIT_POINTS:
        needed = ", ".join(f"{100 * effect:g} point{'s' if effect != 0.01 else ''}: {_seeds_text(summary.seeds_for[effect])} seeds"
                           for effect in summary.effects)
    else:
        needed = ", ".join(f"{unit.shown(effect):g} {unit.name}: {_seeds_text(summary.seeds_for[effect])} seeds"
                           for effect in summary.effects)
    mde = "—" if summary.mde is None else f"{unit.format(summary.mde)} {unit.name}"
    estimate = "—" if summary.mde_estimate is None else unit.format(summary.mde_estimate)
    confidence = f"{100 * STD_CONFIDENCE:g} %"
    upper = unit.format(summary.std_upper)
    return (f"with {summary.n} seeds the minimum detectable effect is {mde} (80 % power, two-sided 5 %; from the "
            f"one-sided {confidence} upper confidence limit {upper} of the pooled std "
            f"{unit.format(summary.std)} {unit.name} {design}, {summary.std_df} df; {estimate} from the std itself); "
            f"seeds needed for {needed}")
