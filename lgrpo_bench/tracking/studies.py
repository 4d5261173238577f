"""Optuna studies as a store: opening a storage, building a pruner, and the link from a trial to its run.

A sweep (:mod:`lgrpo_bench.sweeps`) starts each trial's run with the environment variable :data:`TRIAL_ENV` holding
a JSON :class:`TrialLink`; the run's training (:mod:`lgrpo_bench.training.pruning`) reports its values to that trial.
Both sides open the storage and build the pruner here, so neither imports the other.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TRIAL_ENV", "TrialLink", "make_pruner", "open_storage", "retry_callback"]

TRIAL_ENV = "LGRPO_TRIAL"


@dataclass(frozen=True)
class TrialLink:
    """Which trial a training process is: storage URL, study name, trial id/number, what to report, the pruner."""

    storage: str
    study: str
    trial_id: int
    number: int
    metric: str
    every: int
    pruner: dict[str, Any] = field(default_factory=dict)

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrialLink | None:
        raw = (os.environ if environ is None else environ).get(TRIAL_ENV)
        if not raw:
            return None
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError) as error:
            raise ValueError(f"${TRIAL_ENV} is not a trial link: {error}") from None


def make_pruner(config: Mapping[str, Any]):
    """``{kind: median | successive_halving | none, ...}`` (a :class:`~lgrpo_bench.config.sweep.PrunerConfig`
    dump) → the Optuna pruner; steps are optimizer steps."""
    import optuna

    kind = config.get("kind", "none")
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=config.get("n_startup_trials", 2),
                                           n_warmup_steps=config.get("n_warmup_steps", 0))
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=config.get("min_resource", 1),
                                                      reduction_factor=config.get("reduction_factor", 3))
    return optuna.pruners.NopPruner()


def open_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 stale_trial_callback: Callable | None = None):
    """An Optuna RDB storage (heartbeats when ``heartbeat_interval``) or a journal file (``journal:PATH``)."""
    import optuna

    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                  "heartbeat_stale_trial_callback": stale_trial_callback}
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)


def retry_callback(max_retries: int | None):
    """Optuna's callback that re-queues a failed trial with the same parameters (up to ``max_retries`` times)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries)
