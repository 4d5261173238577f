"""GRPO's aggregation (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300 §4.1): mean over completions of each
completion's token mean.

    w_i = 1 / (N · |o_i|)

Each completion counts equally whatever its length, so a token of a short completion weighs more than a token
of a long one (the length bias Dr. GRPO and λ-GRPO discuss). TRL ``loss_type="grpo"`` and ``"sapo"`` (N = the
micro-batch's rows, divided by the accumulation steps: the same sum for equal micro-batches); verl
``loss_agg_mode="seq-mean-token-mean"``. An empty completion is counted with length 1 (it has no tokens to weight).
"""

import torch

from lgrpo_bench.algorithms.base import WeightInputs, as_float, as_like

NAME = "seq_mean_token_mean"


def weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    lengths = as_float(inputs.lengths).clamp(min=1.0)
    return 1.0 / (as_like(inputs.num_completions, lengths).clamp(min=1.0) * lengths)
