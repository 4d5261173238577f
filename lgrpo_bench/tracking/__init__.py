"""MLflow tracking for lgrpo-bench: the schema (names), the store (where), the logger and the trainer callback (how).

* :mod:`.schema` — tag keys/values, metric names, param flattening (the public contract). TRL's log keys are
  mapped onto these names next to the trainer (:mod:`lgrpo_bench.training.trl_metrics`).
* :mod:`.location` — where the store is (its URI, its SQLite file) and store trouble (``StoreProblem``): the
  ground floor both of the next two import, so neither imports the other for them.
* :mod:`.reader` — the one reader of the store (:class:`~lgrpo_bench.tracking.reader.StoreReader`), store problems.
* :mod:`.store` — tracking URI resolution, safe client/experiment creation, reachability check, the saved grid
  views' experiment tags. The MLflow UI itself (command, server, links) is :mod:`lgrpo_bench.ui`.
* :mod:`.logger` — :class:`BatchedMetricLogger`, buffered ``log_batch`` writes.
* :mod:`.callback` — :class:`MlflowStepCallback`, the ``transformers`` callback built on the logger.

The callback names (``MlflowStepCallback``, ``attach_step_callback``, ``ExtraMetricsFn``) and the logger's are
imported on first use, so importing this package for the schema imports neither ``transformers`` nor the
logger's thread pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lgrpo_bench.tracking import schema as _schema
from lgrpo_bench.tracking.schema import *  # noqa: F403  (the schema is the public contract; see its __all__)
from lgrpo_bench.tracking.store import (
    DEFAULT_DB_FILENAME,
    TrackingUnavailable,
    check_reachable,
    get_or_create_experiment,
    open_client,
    resolve_tracking_uri,
    set_grid_view,
    sqlite_path,
)

if TYPE_CHECKING:
    from lgrpo_bench.tracking.callback import ExtraMetricsFn, MlflowStepCallback, attach_step_callback
    from lgrpo_bench.tracking.logger import MAX_METRICS_PER_BATCH, BatchedMetricLogger, MetricFlushError

_LAZY_CALLBACK_NAMES = ("ExtraMetricsFn", "MlflowStepCallback", "attach_step_callback")
_LAZY_LOGGER_NAMES = ("MAX_METRICS_PER_BATCH", "BatchedMetricLogger", "MetricFlushError")

__all__ = [
    *_schema.__all__,
    "DEFAULT_DB_FILENAME",
    "MAX_METRICS_PER_BATCH",
    "BatchedMetricLogger",
    "ExtraMetricsFn",
    "MetricFlushError",
    "MlflowStepCallback",
    "TrackingUnavailable",
    "attach_step_callback",
    "check_reachable",
    "get_or_create_experiment",
    "open_client",
    "resolve_tracking_uri",
    "set_grid_view",
    "sqlite_path",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_CALLBACK_NAMES:
        from lgrpo_bench.tracking import callback

        return getattr(callback, name)
    if name in _LAZY_LOGGER_NAMES:
        from lgrpo_bench.tracking import logger

        return getattr(logger, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
