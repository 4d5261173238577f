"""DAPO's dynamic sampling with re-sampling (Yu et al. 2025, arXiv:2503.14476 §3.2, eq. 11; verl
``algorithm.filter_groups`` with ``max_num_gen_batches``).

    0 < |{o_i : correct}| < G   for every group of the batch

Generate a batch; keep its mixed-accuracy groups; while fewer than ``target`` (= prompts_per_step, per process) are
held and fewer than ``max_generation_batches`` rounds were generated, generate another round from new prompts;
then train on exactly ``target`` mixed groups. A step that reaches the cap trains on the mixed groups it has, padded
with uniform groups that get keep = 0 (so tensor shapes stay those TRL expects), and says so in its metrics
(``train/group_filter_cap_reached``). Departure from verl: ``max_generation_batches`` 0 (unbounded) is refused, as
a model that solves everything would loop forever.

The prompts of extra rounds are drawn by :func:`round_prompt_indices` from (seed, step, round) alone, so a resumed
run draws the same ones, and every process gets its own slice of one draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lgrpo_bench.algorithms.group_filter.mixed import mixed_accuracy_groups
from lgrpo_bench.algorithms.hyperparameter import Hyperparameter

if TYPE_CHECKING:
    import torch

NAME = "resample"
SUMMARY = ("keep generating groups from new prompts until the batch holds prompts_per_step mixed-accuracy groups, "
           "at most max_generation_batches rounds (DAPO's dynamic sampling, arXiv 2503.14476 §3.2; verl filter_groups)")
REFILLS = True
HYPERPARAMETERS = (
    Hyperparameter("max_generation_batches", 10, "generation rounds one step may use at most (verl "
                   "max_num_gen_batches; its 0 = unbounded is refused here); a step that reaches it trains on the mixed "
                   "groups it has and logs train/group_filter_cap_reached", ge=1, in_every_run_id=True),
)


def keep_groups(accuracy: torch.Tensor) -> torch.Tensor:
    return mixed_accuracy_groups(accuracy)


def round_prompt_indices(dataset_size: int, *, seed: int, step: int, round_index: int, num_processes: int,
                         process_index: int, per_process: int) -> list[int]:
    """Dataset rows for extra round ``round_index`` (≥ 1) of optimizer step ``step``, this process's slice.

    One draw without replacement (when the dataset is large enough) of ``num_processes · per_process`` rows from a
    generator seeded by (seed, step, round_index); process p takes rows [p·per_process, (p+1)·per_process).
    """
    import numpy as np

    total = num_processes * per_process
    rng = np.random.default_rng([seed, step, round_index])
    drawn = rng.choice(dataset_size, size=total, replace=total > dataset_size)
    return [int(i) for i in drawn[process_index * per_process : (process_index + 1) * per_process]]


def select_groups(mixed_by_round: list[torch.Tensor], target: int) -> list[tuple[int, int, bool]]:
    """The ``target`` groups one process trains on, as (round, group index within the round, enters the loss).

    The first ``target`` mixed groups in generation order; when there are fewer, the first uniform groups pad the
    batch to ``target`` with "enters the loss" False. ``mixed_by_round[k]`` is (groups of round k,) bool.
    """
    mixed = [(k, g, True) for k, flags in enumerate(mixed_by_round) for g in range(flags.numel()) if bool(flags[g])]
    chosen = mixed[:target]
    if len(chosen) < target:
        uniform = [(k, g, False) for k, flags in enumerate(mixed_by_round) for g in range(flags.numel()) if not bool(flags[g])]
        chosen += uniform[: target - len(chosen)]
    return chosen


def needs_another_round(mixed_counts: list[int], target: int, rounds_done: int, max_rounds: int) -> bool:
    """True while some process holds fewer than ``target`` mixed groups and the cap allows another round.

    ``mixed_counts``: mixed groups held by each process (gathered, so every process takes the same decision and
    calls the collective generation step the same number of times)."""
    return rounds_done < max_rounds and min(mixed_counts) < target
