"""GRPO's aggregation (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300 §4.1): mean over completions of each
completion's token mean.

    w_i = 1 / (N · |o_i|)

Each completion counts equally whatever its length, so a token of a short completion weighs more than a token
of a long one (the length bias Dr. GRPO and λ-GRPO discuss). TRL ``loss_type="grpo"`` and ``"sapo"`` (N = the
micro-batch's rows, divided by the accumulation steps: the same sum for equal micro-batches); verl
``loss_agg_mode="seq-mean-token-mean"``. An empty completion is counted with length 1 (it has no tokens to weight).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a weight is computed: the presets read this module without it
    import torch

    from lgrpo_bench.algorithms.base import WeightInputs


NAME = "seq_mean_token_mean"
SUMMARY = "w_i = 1/(N·|o_i|): token mean per completion, mean over completions (GRPO, arXiv 2402.03300)"
TOKEN_LEVEL = False  # every completion weighs the same whatever its length: a sequence-level ratio counts once


def weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    from lgrpo_bench.algorithms.base import as_float, as_like

    lengths = as_float(inputs.lengths).clamp(min=1.0)
    return 1.0 / (as_like(inputs.num_completions, lengths).clamp(min=1.0) * lengths)
