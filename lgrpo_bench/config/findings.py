"""The ``findings:`` block of a grid file: a published effect stated as a claim the grid's runs can test.

A grid file may carry one finding (``finding: {...}``) or several (``findings: [{...}, ...]``, when the same runs
serve several claims)::

    finding:
      claim: Under GRPO's per-response length normalisation incorrect completions grow longer than under Dr. GRPO
      source: arXiv 2503.20783, Fig. 1/5
      metric: train/incorrect_length_mean        # an MLflow metric of the train runs
      summary: mean_last_quarter                  # a run's history → one number
      direction: greater                          # arm A's summary is greater than arm B's
      arms:                                       # A, then B: axis key → value (or a list: any of these values)
        - {algorithm.name: grpo}
        - {algorithm.name: dr_grpo}
      pair_over: model.warm_start_seed            # the base models (the unit of replication)

One-arm form: a single arm and a ``threshold`` (the claim is "arm A's summary is greater/less than the threshold"),
optionally ``sign_of: {metric, summary}`` (each run's summary is multiplied by the sign of that other summary: "λ
moves with the sign of the length/advantage correlation" is ``metric: train/lambda, summary: last_minus_first,
sign_of: {metric: train/length_advantage_corr}, threshold: 0, direction: greater``). Any finding may divide each
run's summary by another (``per: {metric: train/generation_batches, summary: sum}``: an effect per generation batch).

The verdict (``lgrpo_bench.reports.findings``): for each base b, effect_b = mean over b's runs of arm A − mean over
b's runs of arm B (or − threshold); the t interval over the bases decides holds / reversed / inconclusive.

:func:`check_findings` checks the block against the expanded grid (every arm key is a run-config key the grid's
points give a value to; every value is one the grid has; arms select runs and do not overlap; ``pair_over`` varies
and is not an arm key). Like the rest of ``config`` this module imports nothing of lgrpo_bench above it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lgrpo_bench.config.loading import ConfigError

__all__ = ["SUMMARIES", "FindingConfig", "MetricSummaryConfig", "SignOfConfig", "check_findings", "config_value", "in_arm"]

SUMMARIES = ("mean_last_quarter", "mean", "last", "last_minus_first", "max", "min", "sum")
"""How a run's metric history (values by step) becomes one number (``lgrpo_bench.reports.findings.summarize``)."""
Summary = Literal["mean_last_quarter", "mean", "last", "last_minus_first", "max", "min", "sum"]
METRIC_PATTERN = r"^[A-Za-z0-9_./-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MetricSummaryConfig(_Strict):
    """Another summary of the same run (``sign_of``: its sign multiplies the run's value; ``per``: divides it)."""

    metric: str = Field(..., pattern=METRIC_PATTERN, description="MLflow metric of the same run")
    summary: Summary = Field("mean", description="How that metric's history becomes one number")


SignOfConfig = MetricSummaryConfig


class FindingConfig(_Strict):
    """One published effect and how the grid's runs test it."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
                             description="Short id of the finding in the verdict table; None = the grid's name (#i when several)")
    claim: str = Field(..., min_length=1, description="The claim in one sentence")
    source: str = Field(..., min_length=1, description="Where it is published: arXiv id and figure/table")
    metric: str = Field(..., pattern=METRIC_PATTERN, description="MLflow metric of the train runs, e.g. train/entropy")
    summary: Summary = Field("mean_last_quarter", description="How a run's metric history becomes one number: "
                             + ", ".join(SUMMARIES))
    direction: Literal["greater", "less"] = Field(..., description="Arm A's summary is greater/less than arm B's "
                                                  "(or than the threshold)")
    arms: list[dict[str, Any]] = Field(..., min_length=1, max_length=2, description="Arm A, then arm B: each a mapping "
                                       "of dotted run-config key → value (a list = any of these values) selecting grid points; "
                                       "one arm with a threshold")
    pair_over: str = Field("model.warm_start_seed", description="The key whose values are the bases the interval is "
                           "over (runs of one base are paired; RL seeds are averaged within a base)")
    threshold: float | None = Field(None, description="One-arm claims: effect_b = arm A's mean at base b − threshold")
    sign_of: MetricSummaryConfig | None = Field(None, description="One-arm claims: multiply each run's summary by the "
                                                "sign of this other summary of the run")
    per: MetricSummaryConfig | None = Field(None, description="Divide each run's summary by this other summary of the run "
                                            "(e.g. accuracy gained per generation batch: per {metric: train/generation_batches, summary: sum})")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Two-sided level of the interval over the bases")

    @field_validator("arms")
    @classmethod
    def _arms_not_empty(cls, arms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, arm in enumerate(arms):
            if not arm:
                raise ValueError(f"arm {i} is empty: give dotted keys and values, e.g. {{algorithm.name: grpo}}")
            for key, value in arm.items():
                if isinstance(value, list) and not value:
                    raise ValueError(f"arm {i}: {key}: an empty list selects nothing")
        return arms

    @model_validator(mode="after")
    def _arms_and_threshold(self) -> FindingConfig:
        if len(self.arms) == 2 and self.threshold is not None:
            raise ValueError("two arms compare with each other: drop threshold, or keep one arm")
        if len(self.arms) == 1 and self.threshold is None:
            raise ValueError("one arm needs a threshold to compare with (or give a second arm)")
        if self.sign_of is not None and len(self.arms) != 1:
            raise ValueError("sign_of is for one-arm claims (one arm and a threshold)")
        return self

    @property
    def one_arm(self) -> bool:
        return len(self.arms) == 1


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def config_value(config: Any, key: str) -> Any:
    """The value of dotted ``key`` in a run config (a pydantic model or a mapping)."""
    value = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part)
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal values as a grid would write them (1 == 1.0, but True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def in_arm(config: Any, arm: dict[str, Any]) -> bool:
    """True when the run config matches every key of ``arm`` (a list value: any of its values)."""
    return all(any(_same(config_value(config, key), wanted) for wanted in _values(value)) for key, value in arm.items())


def check_findings(findings: Sequence[FindingConfig], configs: Sequence[Any], source: str, *,
                   check_key=None, field: str = "findings") -> None:
    """Raise :class:`ConfigError` at ``source: findings[i].<where>`` when a finding does not fit the grid's points.

    ``configs`` are the validated run configs of the grid's points; ``check_key(key, where)`` raises on a dotted key
    that is not a run-config value (the grid loader passes its own check, with the did-you-mean hint)."""
    for i, finding in enumerate(findings):
        where = f"{field}[{i}]" if field == "findings" else field
        if check_key is not None:
            check_key(finding.pair_over, f"{where}.pair_over")
            for a, arm in enumerate(finding.arms):
                for key in arm:
                    check_key(key, f"{where}.arms[{a}].{key}")
        for a, arm in enumerate(finding.arms):
            if finding.pair_over in arm:
                raise ConfigError(f"{source}: {where}.arms[{a}].{finding.pair_over}: the pair_over key cannot select "
                                  "an arm (the arms are compared within each of its values)")
            for key, value in arm.items():
                have = []
                for config in configs:
                    found = config_value(config, key)
                    if not any(_same(found, seen) for seen in have):
                        have.append(found)
                for wanted in _values(value):
                    if not any(_same(wanted, seen) for seen in have):
                        shown = ", ".join(repr(v) for v in have[:10]) + (", ..." if len(have) > 10 else "")
                        raise ConfigError(f"{source}: {where}.arms[{a}].{key}: {wanted!r} is not a value of the grid's "
                                          f"points (they have {shown})")
            if not any(in_arm(config, arm) for config in configs):
                raise ConfigError(f"{source}: {where}.arms[{a}]: selects no point of the grid (each value exists, "
                                  "but not together)")
        if len(finding.arms) == 2 and any(in_arm(c, finding.arms[0]) and in_arm(c, finding.arms[1]) for c in configs):
            raise ConfigError(f"{source}: {where}.arms: the two arms select the same points; make them differ in a key")
        bases = []
        for config in configs:
            found = config_value(config, finding.pair_over)
            if not any(_same(found, seen) for seen in bases):
                bases.append(found)
        if len(bases) < 2:
            raise ConfigError(f"{source}: {where}.pair_over: {finding.pair_over} has one value ({bases[0]!r}) in the grid; "
                              "the interval is over its values (the bases): give it an axis with at least 3 values")
