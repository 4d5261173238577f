"""Whether a training run learned: the health gate a run passes before it may be ``trained`` (and later ``done``).

A run that took no optimizer step (an empty training set), or whose every step had a non-finite loss, reward or
gradient norm (an infinite reward weight, a diverged learning rate), has not learned anything: the lifecycle
(:mod:`lgrpo_bench.runs.lifecycle`) marks it ``failed`` with :meth:`TrainingHealth.reason`, instead of evaluating the
untouched warm start as a trained result. The verdict reads the trainer's log history, which a checkpoint carries,
so a resumed run counts the steps of its earlier attempts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["HEALTH_KEYS", "TrainingHealth"]

HEALTH_KEYS: tuple[str, ...] = ("loss", "reward", "grad_norm")
"""The trainer's log keys (TRL names) that must be finite in a healthy step."""


@dataclass(frozen=True)
class TrainingHealth:
    """What the optimizer steps of a run looked like (all attempts: the trainer's log history survives a resume).

    ``healthy_steps``: logged steps whose loss, reward and gradient norm are all finite; ``steps``: optimizer steps
    taken; ``nonfinite``: ``{key: steps where it was NaN or ±inf}`` among loss, reward and gradient norm."""

    steps: int
    logged_steps: int
    healthy_steps: int
    nonfinite: dict[str, int]

    @property
    def learned(self) -> bool:
        return self.steps >= 1 and self.healthy_steps >= 1

    def reason(self) -> str:
        """Why the run did not learn (empty when it did)."""
        if self.learned:
            return ""
        if self.steps == 0:
            return ("did not learn: training took 0 optimizer steps (no training example? check task.data, "
                    "task.levels and task.num_train_problems)")
        bad = ", ".join(f"{key} in {count} of {self.logged_steps} steps" for key, count in sorted(self.nonfinite.items()))
        return (f"did not learn: no optimizer step had a finite loss, reward and gradient norm ({bad or 'no step was logged'}); "
                "check the reward weights and the learning rate")

    @classmethod
    def of_log_history(cls, log_history: list[dict], steps: int) -> TrainingHealth:
        """From the trainer's ``state.log_history`` (one dict per logged step) and ``state.global_step``."""
        logged = healthy = 0
        nonfinite: dict[str, int] = {}
        for entry in log_history:
            if "loss" not in entry:
                continue
            logged += 1
            ok = True
            for name in HEALTH_KEYS:
                value = entry.get(name)
                if value is None:
                    continue
                try:
                    finite = math.isfinite(float(value))
                except (TypeError, ValueError):
                    finite = False
                if not finite:
                    ok = False
                    nonfinite[name] = nonfinite.get(name, 0) + 1
            healthy += ok
        return cls(steps, logged, healthy, nonfinite)


