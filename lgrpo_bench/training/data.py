"""Training and held-out datasets of a run, as TRL expects them (a ``prompt`` column plus ``answer``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from lgrpo_bench.config import RunConfig


@dataclass(frozen=True)
class TaskData:
    """Prompts with gold answers: ``train`` for RL, ``heldout`` for greedy accuracy during training."""

    train: Dataset
    heldout_prompts: list[str]
    heldout_answers: list[str]


def build_task_data(config: RunConfig, tokenizer=None) -> TaskData:
    """Rows ``{"prompt", "answer", "id"}`` rendered with the run's template.

    arith and lenmix: problems generated from ``task.data_seed`` (the held-out split is disjoint from training);
    math: MATH training problems (``task.data`` or the hub), the last ``train.heldout_size`` of a seeded
    shuffle held out from training.
    """
    from lgrpo_bench.tasks.templates import render_prompt

    template = config.resolved_template
    task = config.task
    if task.name in ("arith", "lenmix"):  # lenmix: arith's problems and split, other answer styles
        from lgrpo_bench.tasks.arith import train_test_split

        train_problems, heldout = train_test_split(
            seed=task.data_seed, n_train=task.num_train_problems, n_test=task.num_heldout_problems,
            digits=tuple(task.digits),
        )
        rows = [{"id": p.id, "prompt": render_prompt(template, p.problem, tokenizer), "answer": p.answer} for p in train_problems]
        heldout_rows = [(render_prompt(template, p.problem, tokenizer), p.answer) for p in heldout]
    else:
        import random

        from lgrpo_bench.tasks.math_data import load_math_train

        data_dir = Path(config.eval.data_dir) if config.eval.data_dir else None
        problems = load_math_train(task.data, task.levels, data_dir)
        problems = list(problems)
        random.Random(task.data_seed).shuffle(problems)
        n_heldout = min(config.train.heldout_size, len(problems) // 10)
        heldout, train_problems = problems[:n_heldout], problems[n_heldout:]
        rows = [{"id": p.id, "prompt": render_prompt(template, p.problem, tokenizer), "answer": p.answer} for p in train_problems]
        heldout_rows = [(render_prompt(template, p.problem, tokenizer), p.answer) for p in heldout]
    heldout_rows = heldout_rows[: config.train.heldout_size]
    return TaskData(
        train=Dataset.from_list(rows),
        heldout_prompts=[prompt for prompt, _ in heldout_rows],
        heldout_answers=[answer for _, answer in heldout_rows],
    )
