"""MLflow tracking for lgrpo-bench: the schema (names), the store (where), the logger and the trainer callback (how).

* :mod:`.schema` — tag keys/values, metric names, TRL key mapping, param flattening (the public contract).
* :mod:`.store` — tracking URI resolution, safe client/experiment creation, reachability check, tag queries, UI.
* :mod:`.logger` — :class:`BatchedMetricLogger`, buffered ``log_batch`` writes.
* :mod:`.callback` — :class:`MlflowStepCallback`, the ``transformers`` callback built on the logger.

The callback names (``MlflowStepCallback``, ``attach_step_callback``, ``ExtraMetricsFn``) are imported on first
use, so importing this package for the schema does not import ``transformers``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lgrpo_bench.tracking.logger import MAX_METRICS_PER_BATCH, BatchedMetricLogger, MetricFlushError
from lgrpo_bench.tracking.schema import (
    STATE_PRUNED,
    TAG_STUDY,
    TAG_TRIAL,
    EVAL_IDENTITY_FIELDS,
    EVAL_METRICS,
    EVAL_RECORD_FIELDS,
    EVAL_RECORDS_FILENAME,
    EVAL_TAG_PREFIX,
    STATE_TRAINED,
    eval_records_artifact_dir,
    eval_tag,
    GIT_COMMIT_UNKNOWN,
    KIND_EVAL,
    KIND_GRID,
    KIND_STUDY,
    KIND_TRAIN,
    KIND_WARM_START,
    KINDS,
    MAX_PARAM_VALUE_LENGTH,
    PARAM_TRUNCATION_MARKER,
    STATE_DONE,
    STATE_FAILED,
    STATE_RUNNING,
    STATES,
    TAG_ALGORITHM,
    TAG_GIT_COMMIT,
    TAG_GRID,
    TAG_KIND,
    TAG_MODEL,
    TAG_MODEL_SIZE,
    TAG_PARENT_RUN_ID,
    TAG_RUN_ID,
    TAG_SEED,
    TAG_STATE,
    TAG_TASK,
    TAG_VERSIONS,
    TRAIN_METRICS,
    TRAINER_EVAL_BENCHMARK,
    TRL_TO_SCHEMA,
    VERSIONED_PACKAGES,
    eval_metric,
    flatten_params,
    is_valid_metric_name,
    map_trl_key,
    map_trl_logs,
    package_versions,
    parse_eval_metric,
    sanitize_metric_name,
    strict_metric_name,
    train_metric,
    unflatten_params,
    versions_tag_value,
)
from lgrpo_bench.tracking.store import (
    DEFAULT_DB_FILENAME,
    TrackingUnavailable,
    check_reachable,
    find_runs_by_tag,
    get_or_create_experiment,
    open_client,
    resolve_tracking_uri,
    sqlite_path,
    start_ui,
    ui_command,
)

if TYPE_CHECKING:
    from lgrpo_bench.tracking.callback import ExtraMetricsFn, MlflowStepCallback, attach_step_callback

_LAZY_CALLBACK_NAMES = ("ExtraMetricsFn", "MlflowStepCallback", "attach_step_callback")

__all__ = [
    "STATE_PRUNED",
    "TAG_STUDY",
    "TAG_TRIAL",
    "EVAL_IDENTITY_FIELDS",
    "EVAL_METRICS",
    "EVAL_RECORD_FIELDS",
    "EVAL_RECORDS_FILENAME",
    "EVAL_TAG_PREFIX",
    "STATE_TRAINED",
    "eval_records_artifact_dir",
    "eval_tag",
    "DEFAULT_DB_FILENAME",
    "GIT_COMMIT_UNKNOWN",
    "KINDS",
    "KIND_EVAL",
    "KIND_GRID",
    "KIND_STUDY",
    "KIND_TRAIN",
    "KIND_WARM_START",
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAM_VALUE_LENGTH",
    "PARAM_TRUNCATION_MARKER",
    "STATES",
    "STATE_DONE",
    "STATE_FAILED",
    "STATE_RUNNING",
    "TAG_ALGORITHM",
    "TAG_GIT_COMMIT",
    "TAG_GRID",
    "TAG_KIND",
    "TAG_MODEL",
    "TAG_MODEL_SIZE",
    "TAG_PARENT_RUN_ID",
    "TAG_RUN_ID",
    "TAG_SEED",
    "TAG_STATE",
    "TAG_TASK",
    "TAG_VERSIONS",
    "TRAINER_EVAL_BENCHMARK",
    "TRAIN_METRICS",
    "TRL_TO_SCHEMA",
    "VERSIONED_PACKAGES",
    "BatchedMetricLogger",
    "ExtraMetricsFn",
    "MetricFlushError",
    "MlflowStepCallback",
    "TrackingUnavailable",
    "attach_step_callback",
    "check_reachable",
    "eval_metric",
    "find_runs_by_tag",
    "flatten_params",
    "get_or_create_experiment",
    "is_valid_metric_name",
    "map_trl_key",
    "map_trl_logs",
    "open_client",
    "package_versions",
    "parse_eval_metric",
    "resolve_tracking_uri",
    "sanitize_metric_name",
    "sqlite_path",
    "strict_metric_name",
    "start_ui",
    "train_metric",
    "ui_command",
    "unflatten_params",
    "versions_tag_value",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_CALLBACK_NAMES:
        from lgrpo_bench.tracking import callback

        return getattr(callback, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
