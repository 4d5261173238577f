"""Which metric a report tabulates (``--metric``), resolved against the runs it reads, with its unit from the schema.

Forms (each checked against what the reported runs logged; anything else is a :class:`ReportInputError` that lists
the metrics they hold):

* ``acc`` — the metric part of ``eval/<benchmark>/<metric>``: one column per benchmark that has it (the default;
  for runs that evaluated no benchmark, their Sample eff. column alone);
* ``eval/arith/acc`` — one benchmark's column only;
* ``pass@8`` / ``pass_8`` — pass@k of avg@k evaluations (MLflow stores ``pass@8`` as ``pass_8``);
* ``train/reward_mean`` (or ``reward_mean`` when no eval metric has that name) — a training metric: its last logged
  value per run, one column.

The unit and the better direction come from :func:`lgrpo_bench.tracking.schema.metric_spec` (fractions in points,
lengths in tokens, rewards as rewards).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lgrpo_bench.reports import DEFAULT_METRIC
from lgrpo_bench.reports.loader import ReportInputError, RunRecord
from lgrpo_bench.tracking import schema as t

__all__ = ["DEFAULT_METRIC", "EVAL_SOURCE", "TRAIN_SOURCE", "MetricChoice", "held_metrics", "resolve_metric"]

EVAL_SOURCE = "eval"
TRAIN_SOURCE = "train"
_PASS_AT = re.compile(r"pass@(\d+)")


@dataclass(frozen=True)
class MetricChoice:
    """The metric of a table: ``name`` (an eval metric's part, ``acc``, or a full training metric name), where it
    is read (:data:`EVAL_SOURCE` / :data:`TRAIN_SOURCE`), the one benchmark asked for (``eval/<benchmark>/<metric>``)
    and its :class:`~lgrpo_bench.tracking.schema.MetricSpec`."""

    name: str
    source: str = EVAL_SOURCE
    benchmark: str | None = None
    spec: t.MetricSpec = t.MetricSpec(t.UNIT_POINTS, True)

    @property
    def unit(self) -> t.Unit:
        return self.spec.unit

    @property
    def accuracy_like(self) -> bool:
        """A fraction where higher is better (acc, pass@k, train/accuracy): the Sample eff. column (held-out accuracy)
        shares its unit and direction, so the table keeps it."""
        return self.unit == t.UNIT_POINTS and self.spec.higher_is_better is True


def held_metrics(runs: Sequence[RunRecord]) -> tuple[list[str], list[str], list[str]]:
    """(eval metric parts, benchmarks, training metric names) that the runs logged, each sorted."""
    parts = sorted({metric for run in runs for values in run.eval_metrics.values() for metric in values})
    benchmarks = sorted({benchmark for run in runs for benchmark in run.eval_metrics})
    train = sorted({name for run in runs for name in run.train_metrics})
    return parts, benchmarks, train


def _missing(metric: str, runs: Sequence[RunRecord], why: str) -> ReportInputError:
    parts, benchmarks, train = held_metrics(runs)
    example = f" (e.g. {parts[0]} for every benchmark, eval/{benchmarks[0]}/{parts[0]} for one)" if parts and benchmarks else ""
    return ReportInputError(
        f"metric {metric!r} (--metric): {why}. The {len(runs)} reported runs hold eval metrics "
        f"{', '.join(parts) or '(none)'} of benchmark{'s' if len(benchmarks) != 1 else ''} {', '.join(benchmarks) or '(none)'}"
        f"{example}; training metrics (last logged value) {', '.join(train) or '(none)'}"
    )


def resolve_metric(runs: Sequence[RunRecord], metric: str) -> MetricChoice:
    """The :class:`MetricChoice` ``metric`` names (module doc). Raises :class:`ReportInputError` for a metric no run
    logged, listing those they hold."""
    name = _PASS_AT.sub(r"pass_\1", metric.strip())
    if not name:
        raise _missing(metric, runs, "empty")
    if name.startswith(t.EVAL_PREFIX):
        try:
            benchmark, part = t.parse_eval_metric(name)
        except ValueError:
            raise _missing(metric, runs, "not of the form eval/<benchmark>/<metric>") from None
        if not any(part in run.eval_metrics.get(benchmark, {}) for run in runs):
            raise _missing(metric, runs, f"no reported run logged {name}")
        return MetricChoice(part, EVAL_SOURCE, benchmark, t.metric_spec(part))
    if name.startswith(t.TRAIN_PREFIX):
        if not any(name in run.train_metrics for run in runs):
            raise _missing(metric, runs, "no reported run logged it")
        return MetricChoice(name, TRAIN_SOURCE, None, t.metric_spec(name))
    if any(name in values for run in runs for values in run.eval_metrics.values()):
        return MetricChoice(name, EVAL_SOURCE, None, t.metric_spec(name))
    if name == DEFAULT_METRIC and not any(run.eval_metrics for run in runs):
        # runs trained without a benchmark: the accuracy table is their held-out accuracy (Sample eff.) alone
        return MetricChoice(name, EVAL_SOURCE, None, t.metric_spec(name))
    full = t.TRAIN_PREFIX + name
    if any(full in run.train_metrics for run in runs):
        return MetricChoice(full, TRAIN_SOURCE, None, t.metric_spec(full))
    raise _missing(metric, runs, "no reported run logged it")
