"""Running a sweep: ask Optuna for trials, run each as a run through the grid executors, tell the values.

Contract:

* a trial is a run: base + overrides + the trial's parameters, with the run identity of any run (equal
  parameters → the same run id → the run is trained once and its value reused);
* each trial's MLflow run is tagged ``lgrpo.study`` / ``lgrpo.trial`` and nested under the study's parent
  run (``lgrpo.kind = study``); its value is read from the store once the run is done
  (:func:`~lgrpo_bench.sweeps.study.objective_value`);
* at most ``parallel`` trials run at once, and trials start only until ``n_trials`` trials are finished
  (complete or pruned) or in flight;
* a trial whose run fails is told FAIL and retried with the same parameters (Optuna's retry callback, up
  to ``max_retries``; the retried run resumes from its checkpoint);
* crash safety: running trials get a heartbeat every ``heartbeat_interval`` seconds (RDB storages: Optuna's
  heartbeat; journal files: a ``lgrpo:heartbeat`` system attribute). A sweep re-run after the orchestrator
  died fails the trials whose heartbeat is older than ``grace_period`` and retries them, so the study ends
  with exactly ``n_trials`` finished trials; Ctrl-C fails and re-queues the trials in flight at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from lgrpo_bench.config.loading import ConfigError
from lgrpo_bench.config.sweep import LoadedSweep
from lgrpo_bench.dispatch.executors import Executor, make_executor
from lgrpo_bench.dispatch.job import JobResult, RunJob, record_failure
from lgrpo_bench.dispatch.orchestrator import grid_lock, make_job, redact_executor_env
from lgrpo_bench.runs.resolve import prepare_run, trial_config
from lgrpo_bench.sweeps.study import distribution, objective_value, open_study
from lgrpo_bench.tracking import record
from lgrpo_bench.tracking.studies import TRIAL_ENV, TrialLink, retry_callback

__all__ = ["JOURNAL_HEARTBEAT_ATTR", "SweepSummary", "run_sweep", "study_parent_run"]

JOURNAL_HEARTBEAT_ATTR = "lgrpo:heartbeat"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class SweepSummary:
    """What a ``run_sweep`` call did, and the study's state at its end."""

    study: str
    started: list[int] = field(default_factory=list)
    complete: list[int] = field(default_factory=list)
    pruned: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    reused: list[int] = field(default_factory=list)
    finished_total: int = 0
    n_trials: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        return 0 if self.finished_total >= self.n_trials and not self.interrupted else 1


def study_parent_run(client, experiment_id: str, study: str, sweep_text: str = "") -> str:
    """The study's MLflow parent run (``lgrpo.kind = study``), created when missing; marked running."""
    from lgrpo_bench import tracking as t

    from lgrpo_bench.tracking.reader import open_reader

    with open_reader(client=client) as reader:
        found = reader.runs([experiment_id], tag_equals={t.TAG_STUDY: study, t.TAG_KIND: t.KIND_STUDY}, metrics=False)
    if found:
        parent_id = found[0].info.run_id
        client.update_run(parent_id, status="RUNNING")
        record.set_parent_state(client, parent_id, t.STATE_RUNNING)
    else:
        parent_id = record.create_run(client, experiment_id, run_name=f"study-{study}", tags={
            t.TAG_KIND: t.KIND_STUDY, t.TAG_STUDY: study, t.TAG_VERSIONS: t.versions_tag_value()})
        if sweep_text:
            client.log_text(parent_id, sweep_text, t.ARTIFACT_SWEEP)
    return parent_id


def _train_run(client, experiment_id: str, rid: str):
    """The training run of run id ``rid`` (:func:`lgrpo_bench.tracking.reader.train_runs_by_run_id`), or None."""
    from lgrpo_bench.tracking.reader import open_reader, train_runs_by_run_id

    with open_reader(client=client) as reader:
        found = train_runs_by_run_id(reader, [experiment_id], rid)
    return found[0] if found else None


class _Heartbeats:
    """Keeps the heartbeat of the trials in flight (a daemon thread)."""

    def __init__(self, study: optuna.Study, interval_s: float):
        self.study = study
        self.interval_s = interval_s
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def add(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.add(trial_id)
        self.beat(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.discard(trial_id)

    def beat(self, trial_id: int) -> None:
        storage = self.study._storage
        with contextlib.suppress(Exception):  # a finished trial cannot be updated; the next beat skips it
            if is_heartbeat_enabled(storage):
                storage.record_heartbeat(trial_id)
            else:
                storage.set_trial_system_attr(trial_id, JOURNAL_HEARTBEAT_ATTR, time.time())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                self.beat(trial_id)


def fail_stale_trials(study: optuna.Study, grace_period_s: float, max_retries: int) -> list[int]:
    """Fail running trials whose heartbeat is older than the grace period and re-queue them (numbers returned).

    RDB storages: Optuna's own heartbeat check (its retry callback re-queues). Journal files: the same rule
    on :data:`JOURNAL_HEARTBEAT_ATTR`, with Optuna's retry callback called here.
    """
    storage = study._storage
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if is_heartbeat_enabled(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    else:
        retry = retry_callback(max_retries)
        now = time.time()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            last = trial.system_attrs.get(JOURNAL_HEARTBEAT_ATTR, trial.datetime_start.timestamp()
                                          if trial.datetime_start else 0.0)
            if now - float(last) > grace_period_s:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                    retry(study, study._storage.get_trial(trial._trial_id))
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(before - after)


def _retry(study: optuna.Study, trial_id: int, max_retries: int) -> None:
    retry_callback(max_retries)(study, study._storage.get_trial(trial_id))


def run_sweep(loaded: LoadedSweep, *, emit: Callable[[str], None] | None = None, poll_s: float = 1.0,
              executor: Executor | None = None) -> SweepSummary:
    """Run trials until the study has ``n_trials`` finished trials (see the module docstring)."""
    from lgrpo_bench import tracking as t

    say = emit or (lambda line: None)
    sweep = loaded.sweep
    started_at = time.perf_counter()
    summary = SweepSummary(sweep.name, n_trials=sweep.n_trials)
    study = open_study(loaded)
    distributions = {key: distribution(entry) for key, entry in sweep.space.items()}
    base_config = prepare_run(trial_config(loaded, {}), write=False).config
    client = t.open_client(base_config.tracking.uri)
    experiment_id = t.get_or_create_experiment(client, base_config.tracking.experiment)
    runs_dir = Path(base_config.tracking.runs_dir)
    if executor is None:
        try:
            executor = make_executor(sweep.executor, f"sweep-{sweep.name}", slots=sweep.parallel)
        except ValueError as error:
            raise ConfigError(f"{loaded.path}: executor: {error}") from None

    in_flight: dict[str, list[optuna.trial.Trial]] = {}  # run id → trials waiting for that run
    jobs: dict[str, RunJob] = {}

    def finished_count() -> int:
        return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))

    def tell_from_run(trial: optuna.trial.Trial, rid: str) -> None:
        run = _train_run(client, experiment_id, rid)
        state = run.data.tags.get(t.TAG_STATE) if run else None
        if state == t.STATE_PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
            summary.pruned.append(trial.number)
            say(f"trial {trial.number}: pruned (run {rid})")
            return
        value = objective_value(client, run.info.run_id, sweep.objective.metric, sweep.objective.last_k) if run else None
        if state != t.STATE_DONE or value is None:
            why = f"run {rid} ended {state or 'without an MLflow run'} without {sweep.objective.metric}"
            study.tell(trial, state=TrialState.FAIL)
            summary.failed[trial.number] = why
            _retry(study, trial._trial_id, sweep.max_retries)
            say(f"trial {trial.number}: failed ({why}); re-queued")
            return
        study.tell(trial, value)
        summary.complete.append(trial.number)
        say(f"trial {trial.number}: {sweep.objective.metric} = {value:.4f}  {trial.params}")

    def start_trial(heartbeats: _Heartbeats, parent_id: str) -> bool:
        with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for Study.optimize; we beat ourselves
            warnings.simplefilter("ignore", UserWarning)
            trial = study.ask(fixed_distributions=distributions)
        params = dict(trial.params)
        try:
            prepared = prepare_run(trial_config(loaded, params), write=False)
        except ConfigError as error:
            study.tell(trial, state=TrialState.FAIL)
            summary.failed[trial.number] = str(error)
            say(f"trial {trial.number}: its parameters make an invalid run config: {error}")
            return True
        rid = prepared.run_id
        summary.started.append(trial.number)
        if rid in in_flight:
            in_flight[rid].append(trial)
            heartbeats.add(trial._trial_id)
            summary.reused.append(trial.number)
            return True
        existing = _train_run(client, experiment_id, rid)
        if existing is not None and existing.data.tags.get(t.TAG_STATE) in (t.STATE_DONE, t.STATE_PRUNED):
            summary.reused.append(trial.number)
            tell_from_run(trial, rid)
            return True
        link = TrialLink(storage=loaded.storage, study=sweep.name, trial_id=trial._trial_id, number=trial.number,
                         metric=sweep.pruner.metric, every=sweep.pruner.every, pruner=sweep.pruner.model_dump(mode="json"))
        job = make_job(prepared, sweep.executor, label=f"trial {trial.number}", parent_run_id=parent_id,
                       extra_env={TRIAL_ENV: link.to_env()})
        in_flight[rid] = [trial]
        jobs[rid] = job
        heartbeats.add(trial._trial_id)
        executor.submit([job])
        say(f"trial {trial.number}: started run {rid}  {params}")
        return True

    def finish(result: JobResult, heartbeats: _Heartbeats) -> None:
        trials = in_flight.pop(result.run_id, [])
        job = jobs.pop(result.run_id)
        for trial in trials:
            heartbeats.discard(trial._trial_id)
        error = result.error
        if not result.ok and not result.cancelled and not result.recorded:
            error = record_failure(job, result.error)
        if result.ok or (not result.cancelled and error is None):  # done (maybe before its worker died)
            for trial in trials:
                tell_from_run(trial, result.run_id)
            return
        for trial in trials:
            study.tell(trial, state=TrialState.FAIL)
            summary.failed[trial.number] = error or "cancelled"
            _retry(study, trial._trial_id, sweep.max_retries)
            say(f"trial {trial.number}: failed ({error or 'cancelled'}); re-queued with the same parameters")

    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        with grid_lock(runs_dir, f"sweep-{sweep.name}"):
            stale = fail_stale_trials(study, sweep.grace_period, sweep.max_retries)
            if stale:
                say(f"trials {stale} were running in a sweep process that is gone: failed and re-queued")
            sweep_text = loaded.path.read_text() if loaded.path.is_file() else ""
            parent_id = study_parent_run(client, experiment_id, sweep.name,
                                         redact_executor_env(sweep_text, sweep.executor.env))
            executor.start()
            with _Heartbeats(study, sweep.heartbeat_interval) as heartbeats:
                try:
                    last_stale_check = time.monotonic()
                    while not stop.is_set():
                        running_elsewhere = [tr for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                                             if tr._trial_id not in heartbeats.trial_ids]
                        if running_elsewhere and time.monotonic() - last_stale_check >= min(sweep.heartbeat_interval, 5):
                            last_stale_check = time.monotonic()
                            stale = fail_stale_trials(study, sweep.grace_period, sweep.max_retries)
                            if stale:
                                say(f"trials {stale} lost their sweep process (no heartbeat for {sweep.grace_period} s): "
                                    "failed and re-queued")
                                continue
                        busy = sum(len(v) for v in in_flight.values())
                        while (len(in_flight) < sweep.parallel
                               and finished_count() + busy + len(running_elsewhere) < sweep.n_trials):
                            start_trial(heartbeats, parent_id)
                            busy = sum(len(v) for v in in_flight.values())
                        if not in_flight and not running_elsewhere and finished_count() >= sweep.n_trials:
                            break
                        for result in executor.wait(timeout_s=poll_s):
                            finish(result, heartbeats)
                    if stop.is_set():
                        summary.interrupted = True
                        say("stopping: trials in flight are failed and re-queued; run the sweep again to continue")
                        executor.cancel()
                        deadline = time.monotonic() + 60
                        while in_flight and time.monotonic() < deadline:
                            for result in executor.wait(timeout_s=poll_s):
                                finish(result, heartbeats)
                finally:
                    executor.close()
            finished = finished_count()
            record.set_parent_state(client, parent_id, t.STATE_DONE if finished >= sweep.n_trials else t.STATE_FAILED)
            client.set_terminated(parent_id, "FINISHED" if finished >= sweep.n_trials else "KILLED")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    summary.finished_total = finished_count()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        summary.best_value = study.best_value
        summary.best_params = dict(study.best_params)
    summary.seconds = time.perf_counter() - started_at
    return summary
