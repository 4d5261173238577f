"""Trainer callbacks of a run: held-out accuracy, sample tables, progress lines."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from transformers import TrainerCallback

from lgrpo_bench.tracking.schema import samples_artifact

ScoreFn = Callable[[str, str], float]


class HeldoutAccuracyCallback(TrainerCallback):
    """Greedy accuracy on a fixed held-out set at step 0 and every ``every`` steps (``train/heldout_acc``), by
    :func:`lgrpo_bench.models.heldout.greedy_accuracy_of` (the function the tiny warm starts are measured by).

    The value is stored in ``latest`` and picked up by the MLflow callback's ``extra_metrics_fn`` at the
    same step; ``history`` keeps ``(step, accuracy)`` pairs.
    """

    def __init__(self, trainer, prompts: Sequence[str], answers: Sequence[str], score: ScoreFn, *, every: int,
                 max_new_tokens: int, batch_size: int = 128):
        self.trainer = trainer
        self.prompts = list(prompts)
        self.answers = list(answers)
        self.score = score
        self.every = every
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.latest: dict[str, float] = {}
        self.history: list[tuple[int, float]] = []

    def measure(self, step: int) -> float:
        from lgrpo_bench.models.heldout import greedy_accuracy_of

        outcome = greedy_accuracy_of(self.trainer.model, self.trainer.processing_class, self.prompts, self.answers,
                                     self.score, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        self.history.append((step, outcome.acc))
        self.latest = {"train/heldout_acc": outcome.acc, "train/heldout_length": outcome.mean_length}
        return outcome.acc

    def on_train_begin(self, args, state, control, **kwargs):
        if self.every and self.prompts and state.global_step == 0:
            self.measure(0)
            self.trainer.log({})  # logs heldout_acc at step 0 (the warm start's accuracy)

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if self.every and self.prompts and (step % self.every == 0 or step == state.max_steps):
            self.measure(step)

    def pop_latest(self) -> dict[str, float]:
        latest, self.latest = self.latest, {}
        return latest


class ProgressCallback(TrainerCallback):
    """One line per logged step: step/max, reward, length, λ, held-out accuracy, seconds per step."""

    def __init__(self, emit: Callable[[str], None], every: int = 1):
        self.emit = emit
        self.every = max(every, 1)
        self._start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        step = state.global_step
        if "reward" not in logs or step % self.every and step != state.max_steps:
            return
        parts = [f"step {step}/{state.max_steps}", f"reward {logs['reward']:.3f}"]
        if "completions/mean_length" in logs:
            parts.append(f"len {logs['completions/mean_length']:.1f}")
        if "lambda" in logs:
            parts.append(f"λ {logs['lambda']:+.3f}")
        elapsed = time.perf_counter() - self._start
        parts.append(f"{elapsed / max(step, 1):.2f} s/step")
        self.emit("  ".join(parts))


class SampleTableCallback(TrainerCallback):
    """Every ``every`` steps, the last generation batch (prompt, completion, reward, advantage) as an MLflow table."""

    def __init__(self, trainer, log_table: Callable[[dict[str, list[Any]], str], None], every: int):
        self.trainer = trainer
        self.log_table = log_table
        self.every = every

    def on_step_end(self, args, state, control, **kwargs):
        if not self.every or state.global_step % self.every:
            return
        logs = self.trainer._logs
        prompts, completions = list(logs["prompt"]), list(logs["completion"])
        n = min(len(prompts), len(completions), 64)
        if not n:
            return
        rewards = {name: list(values)[-n:] for name, values in logs["rewards"].items()}
        table = {"step": [state.global_step] * n, "prompt": prompts[-n:], "completion": completions[-n:],
                 "advantage": list(logs["advantages"])[-n:], **rewards}
        self.log_table(table, samples_artifact(state.global_step))
