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
* :func:`power_summary` — all three for a table column, from the pooled std the table measured.
* :func:`plan_power_lines` / :func:`grid_power_lines` — the same for a grid before it runs
  (``lgrpo-bench plan``), from the earlier runs of its model and task in the store.

The std is the plug-in estimate the report pools over its rows (:func:`~lgrpo_bench.reports.stats.pooled_seed_std`):
with few seeds it is itself uncertain, so the MDE is a guide to the size of effect a grid can see, not a bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lgrpo_bench.reports.distributions import noncentral_t_cdf, normal_quantile, t_quantile

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_POWER",
    "MAX_SEEDS",
    "TARGET_EFFECTS",
    "PowerSummary",
    "describe_power",
    "grid_power_lines",
    "minimum_detectable_effect",
    "plan_power_lines",
    "power_summary",
    "seeds_needed",
    "t_test_power",
]

DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
MAX_SEEDS = 10_000
""":func:`seeds_needed` gives up (``None``) beyond this many seeds."""
TARGET_EFFECTS: tuple[float, ...] = (0.01, 0.02)
"""Gains (fractions: 1 and 2 points) for which reports and ``plan`` print the seeds needed."""


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
    df, se = _design(n, std, paired)
    critical = float(t_quantile(1 - alpha / 2, df))  # remembered per (p, ν) by t_quantile
    ncp = effect / se
    return 1.0 - noncentral_t_cdf(critical, df, ncp) + noncentral_t_cdf(-critical, df, ncp)


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
    guess = float(t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se

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

    z = normal_quantile(1 - alpha / 2) + normal_quantile(power)
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
    """What a table column can detect: from ``std`` (fraction) of the ``design`` and ``n`` seeds."""

    paired: bool
    """True: σ is the pooled std of per-seed differences (paired t); False: the pooled seed std (two-sample)."""
    std: float
    std_df: int
    """Degrees of freedom of the pooled std (Σ (n_i − 1) over what was pooled)."""
    n: int
    """Seeds of the design: pairs (paired) or seeds per row (two-sample)."""
    mde: float | None
    """Minimum detectable effect (fraction) at 80 % power, two-sided 5 %."""
    seeds_for: dict[float, int | None]
    """``{effect (fraction): seeds needed}`` for :data:`TARGET_EFFECTS`."""

    def with_seeds(self, n: int) -> "PowerSummary":
        """The same std and design with ``n`` seeds (what a grid of n seeds would detect)."""
        return power_summary(self.std, n, paired=self.paired, std_df=self.std_df)


def power_summary(std: float, n: int, *, paired: bool, std_df: int) -> PowerSummary:
    """:class:`PowerSummary` of a pooled ``std`` with ``n`` seeds (80 % power, two-sided 5 %)."""
    return PowerSummary(
        paired=paired, std=std, std_df=std_df, n=n,
        mde=minimum_detectable_effect(std, n, paired=paired),
        seeds_for={effect: seeds_needed(effect, std, paired=paired) for effect in TARGET_EFFECTS},
    )


def _seeds_text(n: int | None) -> str:
    return f"> {MAX_SEEDS}" if n is None else str(n)


def describe_power(summary: PowerSummary) -> str:
    """One sentence: MDE with n seeds and the seeds 1 and 2 points need, naming the std it comes from."""
    design = "of paired per-seed differences" if summary.paired else "over seeds within rows (unpaired)"
    needed = ", ".join(f"{100 * effect:g} point{'s' if effect != 0.01 else ''}: {_seeds_text(summary.seeds_for[effect])} seeds"
                       for effect in TARGET_EFFECTS)
    mde = "—" if summary.mde is None else f"{100 * summary.mde:.1f} points"
    return (f"with {summary.n} seeds the minimum detectable effect is {mde} (80 % power, two-sided 5 %; "
            f"pooled std {100 * summary.std:.1f} points {design}, {summary.std_df} df); seeds needed for {needed}")


def plan_power_lines(
    tracking: MlflowClient | str | None, model: str, task: str, n_seeds: int, *, baseline: str = "grpo", metric: str = "acc",
) -> list[str]:
    """What a grid of ``n_seeds`` seeds on ``model`` and ``task`` could detect, from the store's earlier runs.

    Reads the finished train runs tagged ``lgrpo.model = model`` and ``lgrpo.task = task`` (every experiment),
    builds their report table and takes the pooled std of its Average column (or of each benchmark column
    when there is no Average): the std of paired differences vs ``baseline`` when earlier runs were paired by
    seed, else the pooled seed std. Returns no line when the store does not exist or holds no such runs with
    two seeds of one configuration; one line saying why when they cannot be tabulated.
    """
    from lgrpo_bench.reports.loader import ReportInputError, load_runs, open_store
    from lgrpo_bench.reports.table import AVERAGE, build_table
    from lgrpo_bench.tracking import schema as t

    try:
        client = open_store(tracking)
        data = load_runs(client, tags={t.TAG_MODEL: model, t.TAG_TASK: task})
    except ReportInputError:
        return []
    try:
        table = build_table(data.runs, metric=metric, baseline=baseline, split=True)
    except ReportInputError as error:
        first = str(error).splitlines()[0]
        return [f"power: the {len(data.runs)} earlier runs of {model} on {task} give no seed std ({first})"]
    keys = [AVERAGE] if table.has_average else [c.key for c in table.columns]
    lines = []
    for group in table.groups:
        for key in keys:
            summary = group.power.get(key)
            if summary is None:
                continue
            lines.append(f"power ({len(data.runs)} earlier runs of {model} on {task}, {table.label(key)}): "
                         + describe_power(summary.with_seeds(n_seeds)))
    return lines


def grid_power_lines(points: Sequence, tracking_uri: str | None) -> list[str]:
    """:func:`plan_power_lines` for each (model, task) of a grid's points, with the grid's number of seeds.

    ``points``: the grid's :class:`~lgrpo_bench.config.grid.GridPoint` objects. Reads the store only when it
    exists (a SQLite file that is missing means nothing has run: no line, nothing created).
    """
    from lgrpo_bench.tracking.store import resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    db_file = sqlite_path(uri)
    if db_file is not None and not db_file.is_file():
        return []
    seeds: dict[tuple[str, str], set[int]] = {}
    for point in points:
        seeds.setdefault((point.config.model.name, point.config.task.name), set()).add(point.config.train.seed)
    lines: list[str] = []
    for (model, task), values in seeds.items():
        lines += plan_power_lines(uri, model, task, len(values))
    return lines
