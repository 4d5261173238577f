"""A run's MLflow training run: found or created once, under the run's lock, and every move of its state.

:func:`open_tracked_run` is the only code that creates a training run (``lgrpo.kind = train``). It is called by the
lifecycle (:mod:`lgrpo_bench.runs.lifecycle`) while the run's lock is held (:func:`lgrpo_bench.runs.owner.claim_run`),
so one run id has at most one training run per (store, experiment), however many grids, sweeps or terminals ask for
it. The run's folder is settled against it first (:func:`lgrpo_bench.runs.owner.settle_folder`) and its
``owner.json`` names it.

:class:`TrackedRun` carries the MLflow client and run id, the state it is in, and the moves the lifecycle makes
(``running``, ``trained``, ``pruned``, ``done``, ``failed``, ``stopped``): each goes through the run record
(:mod:`lgrpo_bench.tracking.record`, the only writer of ``lgrpo.state``).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lgrpo_bench.config import RunConfig, dump_yaml, identity_payload
from lgrpo_bench.runs.owner import Owner, settle_folder, write_owner
from lgrpo_bench.tracking import record
from lgrpo_bench.tracking.record import PARENT_RUN_ENV, RunLayout

__all__ = ["TrackedRun", "open_tracked_run", "run_tags"]

ERROR_TEXT_CHARS = 5000
LOG_TAIL_CHARS = 20000


@dataclass
class TrackedRun:
    """The training run of one run id in its store (see the module docstring)."""

    client: Any
    uri: str
    experiment: str
    experiment_id: str
    mlflow_run_id: str
    state: str | None
    """``lgrpo.state`` as it is now (the lifecycle's moves update it)."""
    tags: dict[str, str] = field(default_factory=dict)
    created: bool = False
    """True when this call created the MLflow run."""

    def move(self, new: str) -> None:
        """Move to state ``new`` (allowed moves: :data:`lgrpo_bench.tracking.record.TRANSITIONS`)."""
        record.set_state(self.client, self.mlflow_run_id, new, current=self.state)
        self.state = new

    def set_status(self, status: str) -> None:
        """MLflow's own run status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``)."""
        if status == "RUNNING":
            self.client.update_run(self.mlflow_run_id, status="RUNNING")
        else:
            self.client.set_terminated(self.mlflow_run_id, status)

    def fail(self, error: str, *, step: str, exception: BaseException | None = None, log_tail: str = "") -> None:
        """Record a failure: ``lgrpo.error`` and ``lgrpo.failed_step``, state ``failed`` (a run whose training finished
        keeps ``trained``, so only its evaluation is redone), the traceback and the log's tail as artifacts."""
        from lgrpo_bench import tracking as t

        record.mark_failed(self.client, self.mlflow_run_id, error[:ERROR_TEXT_CHARS], step=step, current=self.state)
        if self.state not in (t.STATE_TRAINED, t.STATE_DONE):
            self.state = t.STATE_FAILED
        if exception is not None:
            self.client.log_text(self.mlflow_run_id, "".join(traceback.format_exception(exception)), t.ARTIFACT_ERROR)
        if log_tail:
            self.client.log_text(self.mlflow_run_id, log_tail[-LOG_TAIL_CHARS:], t.ARTIFACT_TRAIN_LOG_TAIL)
        if step == "train":
            self.set_status("FAILED")

    def stop(self) -> None:
        """Record an interruption on request (Ctrl-C, SIGINT/SIGTERM): state ``stopped`` unless training finished."""
        from lgrpo_bench import tracking as t

        record.mark_stopped(self.client, self.mlflow_run_id, current=self.state)
        if self.state not in (t.STATE_TRAINED, t.STATE_DONE):
            self.state = t.STATE_STOPPED
            self.set_status("KILLED")

    def last_logged_step(self) -> int:
        """The last step an earlier attempt logged (``train/loss`` each step, held-out accuracy from step 0); -1 if none."""
        from lgrpo_bench import tracking as t

        steps = [m.step for name in (t.TRAIN_LOSS, t.TRAIN_HELDOUT_ACC)
                 for m in self.client.get_metric_history(self.mlflow_run_id, name)]
        return max(steps, default=-1)


def run_tags(config: RunConfig, rid: str) -> dict[str, str]:
    """The tags a training run is created with (identity, algorithm axes, grid, parent run, versions)."""
    from lgrpo_bench import tracking as t
    from lgrpo_bench.algorithms.presets import stored_algorithm
    from lgrpo_bench.tracking.provenance import git_commit

    axes = stored_algorithm(config).axes
    tags = {
        t.TAG_KIND: t.KIND_TRAIN, t.TAG_RUN_ID: rid, t.TAG_ALGORITHM: config.algorithm.name,
        t.TAG_MODEL: config.model.name, t.TAG_SEED: str(config.train.seed), t.TAG_TASK: config.task.name,
        t.TAG_GIT_COMMIT: git_commit(), t.TAG_VERSIONS: t.versions_tag_value(),
        t.TAG_AGGREGATION: axes["aggregation"], t.TAG_SURROGATE: axes["surrogate"],
        t.TAG_ADVANTAGE: axes["advantage"], t.TAG_GROUP_FILTER: axes["group_filter"],
        "mlflow.runName": f"{config.algorithm.name}-{config.model.name}-s{config.train.seed}",
    }
    if config.tracking.grid:
        tags[t.TAG_GRID] = config.tracking.grid
        tags[t.grid_member_tag(config.tracking.grid)] = "true"
    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:  # set by lgrpo_bench.dispatch for runs of a grid: MLflow nests them under the grid's run
        tags[t.TAG_PARENT_RUN_ID] = parent
    return tags


def open_tracked_run(config: RunConfig, run_id: str, layout: RunLayout, say: Callable[[str], None], *,
                     create: bool = True) -> TrackedRun | None:
    """The training run of ``run_id`` in the config's store and experiment, found or (with ``create``) created in
    state ``running`` with its tags, params (the flattened resolved config) and ``config.yaml`` artifact; None when
    it does not exist and ``create`` is False. Call holding the run's lock (see the module docstring)."""
    from mlflow.entities import Param

    from lgrpo_bench import tracking as t
    from lgrpo_bench.algorithms.presets import stored_algorithm
    from lgrpo_bench.tracking.reader import find_train_run, open_reader

    uri = t.resolve_tracking_uri(config.tracking.uri)
    client = t.open_client(uri)
    experiment = config.tracking.experiment
    experiment_id = t.get_or_create_experiment(client, experiment)
    with open_reader(client=client) as reader:
        existing = find_train_run(reader, experiment, run_id)
    if existing is None and not create:
        return None
    settle_folder(layout, uri, experiment, existing.info.run_id if existing is not None else None, say)
    if existing is not None:
        tracked = TrackedRun(client, uri, experiment, experiment_id, existing.info.run_id,
                             existing.data.tags.get(t.TAG_STATE), dict(existing.data.tags))
    else:
        tags = run_tags(config, run_id)
        mlflow_run_id = record.create_run(client, experiment_id, tags=tags)
        params = t.flatten_params(identity_payload(config, stored_algorithm(config).identity()))
        params["run_id"] = run_id
        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per log_batch
            client.log_batch(mlflow_run_id, params=items[start : start + 100])
        client.log_text(mlflow_run_id, dump_yaml(config), t.ARTIFACT_CONFIG)
        tracked = TrackedRun(client, uri, experiment, experiment_id, mlflow_run_id, t.STATE_RUNNING,
                             {**tags, t.TAG_STATE: t.STATE_RUNNING}, created=True)
        say(f"run {run_id}: MLflow run {mlflow_run_id} in experiment {experiment!r}")
    write_owner(layout, Owner(uri, experiment, tracked.mlflow_run_id))
    if config.tracking.grid and t.grid_member_tag(config.tracking.grid) not in tracked.tags:
        client.set_tag(tracked.mlflow_run_id, t.grid_member_tag(config.tracking.grid), "true")
    return tracked
