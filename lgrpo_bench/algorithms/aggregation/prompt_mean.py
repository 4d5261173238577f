"""The prompt mean (ScaleRL, "The Art of Scaling Reinforcement Learning Compute for LLMs", arXiv:2510.13786; SkyRL ``prompt_mean``): the token mean inside
each prompt's group, then the mean over prompts.

    w_i = 1 / (P · Σ_{j∈g(i)} |o_j|)

P is the number of prompts (groups) that enter the loss, g(i) the group of completion i. Every prompt weighs the
same whatever its completions' lengths, and inside a group every token weighs the same. TRL has no equivalent
(PR #5828 was closed). A group without tokens is counted with one token (its rows have nothing to weight).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a weight is computed: the presets read this module without it
    import torch

    from lgrpo_bench.algorithms.base import WeightInputs


NAME = "prompt_mean"
SUMMARY = "w_i = 1/(P·Σ_{j∈g(i)}|o_j|): token mean inside each prompt's group, mean over prompts (ScaleRL, arXiv 2510.13786)"


def weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    from lgrpo_bench.algorithms.base import as_float, as_like

    lengths = as_float(inputs.lengths)
    group_tokens = as_float(inputs.group_lengths).sum(dim=-1).to(lengths.dtype).clamp(min=1.0)
    group_size = inputs.group_lengths.shape[-1]
    prompts = inputs.num_groups if inputs.num_groups is not None else as_like(inputs.num_completions, lengths) / group_size
    return 1.0 / (as_like(prompts, lengths).clamp(min=1.0) * group_tokens)
