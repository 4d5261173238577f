"""PPO-Lite's advantage ("Tricks or Traps? A Deep Dive into RL for LLM Reasoning", arXiv:2508.08221): group-mean
baseline, batch-level scale.

    A_i = (R_i − mean_g R) / (std_B R + 1e-4)      (std_B: sample std over every completion that enters the loss)

TRL ``scale_rewards="batch"`` takes the std over the whole generation batch (all processes); so does this when no
group is filtered. With a group filter the std is taken over the kept groups only (verl's order: filter, then
normalise), a choice TRL cannot make (it has no filter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where advantages are computed: the presets read this module without it
    import torch

NAME = "batch_std"
SUMMARY = "A_i = (R_i − mean_g R)/(std_batch R + 1e-4), sample std over the groups in the loss (PPO-Lite, arXiv 2508.08221; TRL scale_rewards=batch)"


def compute(rewards: torch.Tensor, group_size: int, keep: torch.Tensor) -> torch.Tensor:
    import torch
    from lgrpo_bench.algorithms.advantage.statistics import ADVANTAGE_STD_EPS, group_means, nanstd

    kept = rewards[keep > 0]
    std = nanstd(kept) if kept.numel() > 1 else torch.tensor(float("nan"), dtype=rewards.dtype, device=rewards.device)
    return torch.nan_to_num((rewards - group_means(rewards, group_size)) / (std + ADVANTAGE_STD_EPS), nan=0.0)
