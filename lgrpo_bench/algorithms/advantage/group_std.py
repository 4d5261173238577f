"""GRPO's group-normalised advantage (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300 §4.1.2).

    A_i = (R_i − mean_g R) / (std_g R + 1e-4)      (std: sample std, ddof 1, over the G completions of the group)

TRL ``scale_rewards="group"`` (its default; sample std and ε 1e-4 as here); verl uses ε 1e-6.
"""

import torch

from lgrpo_bench.algorithms.advantage.statistics import ADVANTAGE_STD_EPS, group_means, nanstd

NAME = "group_std"


def compute(rewards: torch.Tensor, group_size: int, keep: torch.Tensor) -> torch.Tensor:
    std = nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size)
    return torch.nan_to_num((rewards - group_means(rewards, group_size)) / (std + ADVANTAGE_STD_EPS), nan=0.0)
