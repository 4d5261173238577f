"""Trainer callback that logs TRL's metrics to MLflow under the schema names, in batches.

It replaces transformers' stock ``MLflowCallback``, which writes to the store synchronously at every log
event (in transformers 5.24 one ``mlflow.log_metrics`` call per event, a store transaction each time),
starts its own fluent MLflow run and logs every ``TrainingArguments`` field as a param. Here the
run is ours (created by the caller), metrics are renamed by the caller's ``metric_name`` (for TRL's trainer,
:func:`lgrpo_bench.training.trl_metrics.map_trl_key`) and written by a
:class:`~lgrpo_bench.tracking.logger.BatchedMetricLogger`; see that module for the measured overhead.

Use :func:`attach_step_callback` to add it to a trainer and remove the stock callback in one go, or pass
``report_to=[]`` (``"none"``) in the trainer arguments and ``callbacks=[MlflowStepCallback(...)]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lgrpo_bench.tracking.logger import BatchedMetricLogger
from lgrpo_bench.tracking.schema import TRAIN_NONFINITE_VALUES, train_metric

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from transformers import Trainer

__all__ = ["ExtraMetricsFn", "MlflowStepCallback", "attach_step_callback"]

_logger = logging.getLogger(__name__)

ExtraMetricsFn = Callable[[TrainerState, Mapping[str, Any]], "Mapping[str, float | None] | None"]
"""``extra_metrics_fn(state, logs) -> {name: value}``: extra metrics for the same step, called at each log event.

``logs`` is the trainer's raw log dict (TRL names). Returned names go through the callback's ``metric_name`` like
TRL's (with TRL's mapping, ``"train/heldout_acc"`` passes through, ``"heldout_acc"`` becomes ``train/heldout_acc``); on a
name clash the extra value wins over TRL's.
"""


class MlflowStepCallback(TrainerCallback):
    """Log each ``on_log`` dict at ``state.global_step`` to MLflow run ``run_id``, under schema names.

    Contract:
      * only the world main process (``state.is_world_process_zero``) logs; other ranks do nothing and never
        create a logger;
      * every key of the log dict is kept: renamed by ``metric_name`` (the trainer's log key → our metric name,
        e.g. :func:`lgrpo_bench.training.trl_metrics.map_trl_key`, called once per key); a key
        whose name is already taken in the same event is stored under ``train/raw/<key>`` (warned once);
        values that are not numbers (strings, lists) are skipped with one warning per key and counted in
        ``skipped_non_numeric``; ``None`` is skipped; a NaN or ±inf value is not stored under its own name (a
        mean over steps would become NaN or inf) but counted, at every training step, in
        :data:`~lgrpo_bench.tracking.schema.TRAIN_NONFINITE_VALUES` (0 when every value was finite), and each key
        that was ever non-finite is named once in the log (``nonfinite_by_key`` counts them);
      * ``extra_metrics_fn`` (see :data:`ExtraMetricsFn`) adds metrics to each event;
      * events at steps ≤ ``skip_steps_up_to`` are dropped: a resumed run re-computes the steps between its
        last checkpoint and the interruption, whose metrics the store already holds;
      * the buffer is flushed before every checkpoint (``on_log`` of a step with ``control.should_save``), on ``on_save`` (so checkpoints and metrics agree when a run resumes) and on
        ``on_train_end``; :meth:`close` flushes and stops the writer thread. Flush failures raise
        :class:`~lgrpo_bench.tracking.logger.MetricFlushError` and stop training: a run with holes in its
        metrics is not a valid benchmark result.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        metric_name: Callable[[str], str],
        flush_every_s: float = 5.0,
        max_buffer: int = 1000,
        background: bool = True,
        extra_metrics_fn: ExtraMetricsFn | None = None,
        skip_steps_up_to: int = -1,
    ):
        self.client = client
        #: Steps ≤ this were logged by an earlier attempt of a resumed run: not logged again (no duplicates).
        self.skip_steps_up_to = skip_steps_up_to
        self.run_id = run_id
        self.metric_name = metric_name
        self.flush_every_s = flush_every_s
        self.max_buffer = max_buffer
        self.background = background
        self.extra_metrics_fn = extra_metrics_fn
        self.skipped_non_numeric = 0
        self.nonfinite_by_key: dict[str, int] = {}
        """``{metric name: steps at which it was NaN or ±inf}``."""
        self._metric_logger: BatchedMetricLogger | None = None
        self._names: dict[str, str] = {}
        self._warned_keys: set[str] = set()

    @property
    def metric_logger(self) -> BatchedMetricLogger | None:
        """The logger, once the main process logged something (``None`` before, and on other ranks)."""
        return self._metric_logger

    def _logger_for_main_process(self) -> BatchedMetricLogger:
        if self._metric_logger is None:
            self._metric_logger = BatchedMetricLogger(
                self.client,
                self.run_id,
                flush_every_s=self.flush_every_s,
                max_buffer=self.max_buffer,
                background=self.background,
            )
        return self._metric_logger

    def _name(self, key: str) -> str:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = self.metric_name(key)
        return name

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned_keys:
            self._warned_keys.add(key)
            _logger.warning(message, *args)

    def _numeric_or_none(self, key: str, value: Any) -> tuple[bool, Any]:
        """(keep, value): numbers and None are kept; anything ``float()`` refuses is skipped with a warning."""
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return True, value
        if not isinstance(value, (str, bytes)):
            try:
                return True, float(value)
            except (TypeError, ValueError):
                pass
        self.skipped_non_numeric += 1
        self._warn_once(key, "log key %r has non-numeric value %r (%s); it is not logged to MLflow", key, value, type(value).__name__)
        return False, None

    def metrics_for(self, state: TrainerState, logs: Mapping[str, Any]) -> dict[str, Any]:
        """The schema-named metrics one ``on_log`` event produces (``extra_metrics_fn`` included)."""
        metrics: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, value in logs.items():
            keep, number = self._numeric_or_none(key, value)
            if not keep:
                continue
            name = self._name(key)
            if name in metrics:
                fallback = train_metric(f"raw/{key}")
                self._warn_once(key, "log keys %r and %r both map to %r; %r is logged as %r", sources[name], key, name, key, fallback)
                name = fallback
            metrics[name] = number
            sources[name] = key
        if self.extra_metrics_fn is not None:
            for key, value in (self.extra_metrics_fn(state, logs) or {}).items():
                keep, number = self._numeric_or_none(key, value)
                if not keep:
                    continue
                name = self._name(key)
                if name in metrics:
                    self._warn_once(f"extra:{key}", "extra metric %r replaces the trainer's %r for %r", key, sources[name], name)
                metrics[name] = number
        return metrics

    def _count_nonfinite(self, metrics: Mapping[str, Any], step: int) -> int:
        """How many values of ``metrics`` are NaN or ±inf; names each such key in the log the first time."""
        count = 0
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not math.isfinite(value):
                count += 1
                self.nonfinite_by_key[name] = self.nonfinite_by_key.get(name, 0) + 1
                self._warn_once(f"nonfinite:{name}", "%s is %s at step %d: not stored under its name (counted in %s; "
                                "later steps are counted without another line)", name, value, step, TRAIN_NONFINITE_VALUES)
        return count

    # -- TrainerCallback events --------------------------------------------------------------------------
    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if not state.is_world_process_zero or state.global_step <= self.skip_steps_up_to:
            return
        metrics = self.metrics_for(state, logs or {})
        if metrics and "loss" in (logs or {}):  # a training step (not an in-loop eval): count what is not finite
            metrics[TRAIN_NONFINITE_VALUES] = float(self._count_nonfinite(metrics, state.global_step))
        if metrics:
            self._logger_for_main_process().log(metrics, step=state.global_step)
        if control.should_save and self._metric_logger is not None:
            # the checkpoint of this step is written next: its metrics must be in the store first, or a run
            # killed right after the checkpoint would resume past steps whose metrics were never written
            self._metric_logger.flush()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.is_world_process_zero and self._metric_logger is not None:
            self._metric_logger.flush()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.is_world_process_zero and self._metric_logger is not None:
            self._metric_logger.flush()

    def close(self) -> None:
        """Flush and release the logger's writer thread (safe to call on every rank, and twice)."""
        if self._metric_logger is not None:
            self._metric_logger.close()


def attach_step_callback(trainer: Trainer, client: MlflowClient, run_id: str, **options: Any) -> MlflowStepCallback:
    """Add a :class:`MlflowStepCallback` to ``trainer`` and remove transformers' stock ``MLflowCallback``.

    ``options`` go to :class:`MlflowStepCallback` (``metric_name`` among them). Returns the callback (call its ``close()`` when done).
    """
    from transformers.integrations import MLflowCallback

    if any(isinstance(callback, MLflowCallback) for callback in trainer.callback_handler.callbacks):
        _logger.info("removing transformers' MLflowCallback: lgrpo-bench logs to MLflow through MlflowStepCallback")
        trainer.remove_callback(MLflowCallback)
    callback = MlflowStepCallback(client, run_id, **options)
    trainer.add_callback(callback)
    return callback
