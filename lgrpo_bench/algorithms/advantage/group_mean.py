"""Dr. GRPO's advantage (Liu et al. 2025, arXiv:2503.20783 §3): the group mean as baseline, no scaling.

    A_i = R_i − mean_g R

Dividing by the group std up-weights groups whose rewards barely differ (a question-difficulty bias, the paper
argues). TRL ``scale_rewards="none"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where advantages are computed: the presets read this module without it
    import torch

NAME = "group_mean"
SUMMARY = "A_i = R_i − mean_g R (Dr. GRPO, arXiv 2503.20783; TRL scale_rewards=none)"


def compute(rewards: torch.Tensor, group_size: int, keep: torch.Tensor) -> torch.Tensor:
    import torch
    from lgrpo_bench.algorithms.advantage.statistics import group_means

    return torch.nan_to_num(rewards - group_means(rewards, group_size), nan=0.0)
