"""Dr. GRPO's advantage (Liu et al. 2025, arXiv:2503.20783 §3): the group mean as baseline, no scaling.

    A_i = R_i − mean_g R

Dividing by the group std up-weights groups whose rewards barely differ (a question-difficulty bias, the paper
argues). TRL ``scale_rewards="none"``.
"""

import torch

from lgrpo_bench.algorithms.advantage.statistics import group_means

NAME = "group_mean"


def compute(rewards: torch.Tensor, group_size: int, keep: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(rewards - group_means(rewards, group_size), nan=0.0)
