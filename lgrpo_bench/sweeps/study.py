"""Optuna studies of a sweep: storage, sampler, pruner, and reading a trial's value back from MLflow.

The study remembers the sweep it belongs to (user attributes ``lgrpo:sweep_hash``, ``lgrpo:base``,
``lgrpo:space``, ``lgrpo:objective``, ``lgrpo:executor``), so ``sweep show`` and ``sweep export`` work
from the storage alone, and re-running a *different* sweep under the same study name is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial

from lgrpo_bench.config.loading import ConfigError
from lgrpo_bench.config.sweep import LoadedSweep, SpaceEntry, SweepConfig
from lgrpo_bench.dispatch.orchestrator import REDACTED, SECRET_ENV_KEY
from lgrpo_bench.tracking.studies import make_pruner, open_storage, retry_callback

__all__ = [
    "ATTR_BASE", "ATTR_EXECUTOR", "ATTR_OBJECTIVE", "ATTR_SPACE", "ATTR_SWEEP_HASH", "SweepGridSampler",
    "TrialSeededSampler", "distribution", "make_sampler", "objective_value", "open_study", "sweep_hash", "trial_seed",
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


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``'s draws in a study seeded ``seed`` (a 32-bit hash of both: studies with
    neighbouring seeds do not share draws shifted by one trial, as ``seed + number`` would)."""
    return int.from_bytes(hashlib.sha256(f"lgrpo-sampler/{seed}/{number}".encode()).digest()[:4], "big")


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler whose draws for a trial are seeded by :func:`trial_seed` (the study's seed, the trial's number).

    Optuna's storage gives every trial a number atomically (``Study.ask`` creates the trial, then the sampler sees
    it), so sweeps running in several processes on one study draw independently, and a study resumed later
    continues where it stopped without replaying its first draws, while the same study replayed with the same
    seed and values draws the same points. It holds one inner sampler per trial, made by ``build(seed)`` in
    ``before_trial`` (the first sampler call of a trial, before any draw) and dropped in ``after_trial``; every
    call is delegated to the inner sampler of its trial (only Optuna's public sampler interface is used).
    """

    _KEEP = 256  # inner samplers of trials asked here and not told here (told by another process): the newest kept

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int):
        self._build = build
        self._seed = seed
        self._inner: OrderedDict[int, optuna.samplers.BaseSampler] = OrderedDict()
        self._lock = threading.Lock()

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        with self._lock:
            inner = self._inner.get(trial.number)
            if inner is None:
                inner = self._inner[trial.number] = self._build(trial_seed(self._seed, trial.number))
                while len(self._inner) > self._KEEP:
                    self._inner.popitem(last=False)
            return inner

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(trial).after_trial(study, trial, state, values)
        with self._lock:
            self._inner.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Nothing to do: every trial's draws are seeded from its number (``Study.optimize(n_jobs>1)`` calls this)."""


class SweepGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``after_trial``, which calls ``Study.stop`` once the grid is used up:
    that raises outside ``Study.optimize`` (a sweep asks and tells, and stops at ``n_trials`` by itself)."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def make_sampler(sweep: SweepConfig) -> optuna.samplers.BaseSampler:
    """Seeded TPE (default), random, or grid sampler over the sweep's space. A trial's random draws depend on the
    sweep's seed and the trial's number (and, for TPE past its startup trials, on the values told before), never on
    when a process opened the study or how many trials it saw then.

    * tpe / random: a :class:`TrialSeededSampler`: trial ``n`` draws from the seed ``trial_seed(sampler.seed, n)``.
      Trial numbers are unique (the storage assigns them atomically), so concurrent sweep processes on one study
      draw independently and a resumed study does not replay its first draws; the same seed, with the same
      values told, replays the same points. "Never identical" means independent draws: over a continuous range two
      trials' points differ (with probability 1); over a discrete space with few values two independent draws may
      still coincide by chance (TPE, too, may propose a point again). Equal parameters are the same run
      (the same run id), trained once and its value reused.
    * grid: Optuna's grid sampler seeded with ``sampler.seed`` (the seed only shuffles the grid's order, and must
      not change between sessions: a resumed study would map its grid ids to other points). Trial ``n`` takes
      point ``n`` of the shuffled grid, so trials, in any number of processes, take distinct points until every
      point has been started; after that a trial repeats a point not yet finished (Optuna's rule), which is the
      same run, trained once.
    """
    config = sweep.sampler
    if config.kind == "grid":
        return SweepGridSampler({key: entry.grid_values() for key, entry in sweep.space.items()}, seed=config.seed)
    if config.kind == "random":
        return TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), config.seed)
    n_startup_trials = config.n_startup_trials
    return TrialSeededSampler(lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials),
                              config.seed)


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
                           grace_period=sweep.grace_period, stale_trial_callback=retry, writable=True)
    study = optuna.create_study(study_name=sweep.name, storage=storage, sampler=make_sampler(sweep),
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
