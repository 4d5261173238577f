"""GRPO's group-normalised advantage (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300 §4.1.2).

    A_i = (R_i − mean_g R) / (std_g R + 1e-4)      (std: sample std, ddof 1, over the G completions of the group)

TRL ``scale_rewards="group"`` (its default; sample std and ε 1e-4 as here); verl uses ε 1e-6.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where advantages are computed: the presets read this module without it
    import torch

NAME = "group_std"
SUMMARY = "A_i = (R_i − mean_g R)/(std_g R + 1e-4), sample std (GRPO; TRL scale_rewards=group)"


def compute(rewards: torch.Tensor, group_size: int, keep: torch.Tensor) -> torch.Tensor:
    import torch
    from lgrpo_bench.algorithms.advantage.statistics import ADVANTAGE_STD_EPS, group_means, nanstd

    std = nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size)
    return torch.nan_to_num((rewards - group_means(rewards, group_size)) / (std + ADVANTAGE_STD_EPS), nan=0.0)
