"""Optuna studies of a sweep: storage, sampler, pruner, and reading a trial's value back from MLflow.

The study remembers the sweep it belongs to (user attributes ``lgrpo:sweep_hash``, ``lgrpo:base``,
``lgrpo:space``, ``lgrpo:objective``, ``lgrpo:executor``), so ``sweep show`` and ``sweep export`` work
from the storage alone, and re-running a *different* sweep under the same study name is refused.
"""

from __future__ import annotations

import hashlib
import json
import math

import optuna

from lgrpo_bench.config.loading import ConfigError
from lgrpo_bench.config.sweep import LoadedSweep, SpaceEntry, SweepConfig
from lgrpo_bench.dispatch.orchestrator import REDACTED, SECRET_ENV_KEY
from lgrpo_bench.tracking.studies import make_pruner, open_storage, retry_callback

__all__ = [
    "ATTR_BASE", "ATTR_EXECUTOR", "ATTR_OBJECTIVE", "ATTR_SPACE", "ATTR_SWEEP_HASH", "distribution",
    "make_sampler", "objective_value", "open_study", "sweep_hash",
]

ATTR_SWEEP_HASH = "lgrpo:sweep_hash"
ATTR_BASE = "lgrpo:base"
ATTR_SPACE = "lgrpo:space"
ATTR_OBJECTIVE = "lgrpo:objective"
ATTR_EXECUTOR = "lgrpo:executor"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distribution(entry: SpaceEntry) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of a space entry (float/int range with log or step, or categorical)."""
    if entry.categorical is not None:
        return optuna.distributions.CategoricalDistribution(tuple(entry.categorical))
    low, high = entry.bounds
    if entry.int_range is not None:
        return optuna.distributions.IntDistribution(int(low), int(high), log=entry.log, step=int(entry.step or 1))
    return optuna.distributions.FloatDistribution(float(low), float(high), log=entry.log, step=entry.step)


def make_sampler(sweep: SweepConfig, n_existing_trials: int = 0) -> optuna.samplers.BaseSampler:
    """Seeded TPE (default), random, or grid sampler over the sweep's space.

    The seed is ``sampler.seed + n_existing_trials``: a sampler's random state does not survive its process,
    so a re-opened study would otherwise draw again the points its first session drew; offsetting by the
    trials already stored keeps a resumed sweep deterministic without repeating them.
    """
    config = sweep.sampler
    seed = config.seed + n_existing_trials
    if config.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.kind == "grid":
        return optuna.samplers.GridSampler({key: entry.grid_values() for key, entry in sweep.space.items()}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=config.n_startup_trials)


def sweep_hash(loaded: LoadedSweep) -> str:
    """Content hash of what defines the study's trials: base config, space, objective, sampler and pruner."""
    sweep = loaded.sweep
    payload = {
        "base": loaded.base, "space": {k: v.model_dump(mode="json", by_alias=True) for k, v in sweep.space.items()},
        "objective": sweep.objective.model_dump(mode="json"), "sampler": sweep.sampler.model_dump(mode="json"),
        "pruner": sweep.pruner.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def open_study(loaded: LoadedSweep, *, heartbeats: bool = True) -> optuna.Study:
    """Create the sweep's study, or load it when it exists (refusing one that a different sweep created)."""
    sweep = loaded.sweep
    retry = retry_callback(sweep.max_retries)
    storage = open_storage(loaded.storage, heartbeat_interval=sweep.heartbeat_interval if heartbeats else None,
                           grace_period=sweep.grace_period, stale_trial_callback=retry)
    try:
        existing = len(storage.get_all_trials(storage.get_study_id_from_name(sweep.name), deepcopy=False))
    except KeyError:
        existing = 0
    study = optuna.create_study(study_name=sweep.name, storage=storage, sampler=make_sampler(sweep, existing),
                                pruner=make_pruner(sweep.pruner.model_dump()), direction=sweep.objective.direction,
                                load_if_exists=True)
    digest = sweep_hash(loaded)
    stored = study.user_attrs.get(ATTR_SWEEP_HASH)
    if stored is None:
        study.set_user_attr(ATTR_SWEEP_HASH, digest)
        study.set_user_attr(ATTR_BASE, loaded.base)
        study.set_user_attr(ATTR_SPACE, {k: v.model_dump(mode="json", by_alias=True, exclude_none=True)
                                         for k, v in sweep.space.items()})
        study.set_user_attr(ATTR_OBJECTIVE, sweep.objective.model_dump(mode="json"))
        executor = sweep.executor.model_dump(mode="json")
        executor["env"] = {key: REDACTED if SECRET_ENV_KEY.search(key) else value for key, value in executor["env"].items()}
        study.set_user_attr(ATTR_EXECUTOR, executor)  # secrets are not stored (export writes this into a grid file)
    elif stored != digest:
        raise ConfigError(f"{loaded.path}: name: study {sweep.name!r} in {loaded.storage} was created by a different sweep "
                          f"(base, space, objective, sampler or pruner changed: {stored} ≠ {digest}); give the sweep a new "
                          "name or delete the study")
    if study.direction.name.lower() != sweep.objective.direction:
        raise ConfigError(f"{loaded.path}: objective.direction: the stored study {sweep.name!r} maximises/minimises "
                          f"differently ({study.direction.name.lower()})")
    return study


def objective_value(client, mlflow_run_id: str, metric: str, last_k: int) -> float | None:
    """The trial value from its MLflow run: an eval metric's value, or the mean of a train metric's last
    ``last_k`` logged values. None when the run has not logged it (or it is not finite)."""
    if metric.startswith("eval/"):
        value = client.get_run(mlflow_run_id).data.metrics.get(metric)
    else:
        history = sorted(client.get_metric_history(mlflow_run_id, metric), key=lambda m: (m.step, m.timestamp))
        if not history:
            return None
        tail = [m.value for m in history[-last_k:]]
        value = sum(tail) / len(tail)
    if value is None or not math.isfinite(value):
        return None
    return float(value)
