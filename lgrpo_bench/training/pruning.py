"""A training run as an Optuna trial: intermediate values reported to the study, pruning stops training.

When this process is a sweep's trial (``$LGRPO_TRIAL`` holds a :class:`~lgrpo_bench.tracking.studies.TrialLink`),
training

* tags its MLflow run with ``lgrpo.study`` and ``lgrpo.trial``;
* every ``every`` optimizer steps reports ``metric`` (a ``train/`` metric) to the trial, and when the
  study's pruner says so, stops training at that step; the run ends with ``lgrpo.state = pruned`` and no
  evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from transformers import TrainerCallback

from lgrpo_bench.tracking.studies import TrialLink, make_pruner, open_storage

__all__ = ["PruningCallback"]


class PruningCallback(TrainerCallback):
    """Reports ``link.metric`` every ``link.every`` steps and stops training when the trial should be pruned.

    ``values(step, logs)`` returns the step's metrics under schema names (``train/...``). With ``can_stop``
    False (a multi-process run, where one rank cannot stop the others) values are reported, never acted on.
    """

    def __init__(self, link: TrialLink, values: Callable[[int, Mapping[str, Any]], Mapping[str, float]], *,
                 can_stop: bool = True):
        import optuna

        self.link = link
        self.values = values
        self.can_stop = can_stop
        study = optuna.load_study(study_name=link.study, storage=open_storage(link.storage),
                                  pruner=make_pruner(link.pruner))
        self.trial = optuna.trial.Trial(study, link.trial_id)
        self.pruned_at: int | None = None
        self.reported: dict[int, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        step = state.global_step
        if step == 0 or step % self.link.every or step in self.reported:
            return
        value = self.values(step, logs or {}).get(self.link.metric)
        if value is None:
            return
        self.trial.report(float(value), step)
        self.reported[step] = float(value)
        if self.can_stop and self.trial.should_prune():
            self.pruned_at = step
            control.should_training_stop = True
