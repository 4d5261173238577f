"""Dr. GRPO's aggregation (Liu et al. 2025, "Understanding R1-Zero-Like Training", arXiv:2503.20783 §3).

    w_i = 1 / (N · L_max)

A constant replaces the per-completion length, so every token weighs the same, like DAPO up to a batch-dependent
constant. TRL ``loss_type="dr_grpo"`` divides each micro-batch by its own rows × L_max and by the accumulation
steps (the same sum for equal micro-batches; verl #3741 and #5798 discuss the scaling under data parallelism:
here N counts every process's completions, so the gradient does not depend on the number of processes). verl's
``seq-mean-token-sum-norm`` uses the padded length as the constant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a weight is computed: the presets read this module without it
    import torch

    from lgrpo_bench.algorithms.base import WeightInputs


NAME = "constant"
SUMMARY = "w_i = 1/(N·L_max) (Dr. GRPO, arXiv 2503.20783)"


def weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    import torch
    from lgrpo_bench.algorithms.base import as_float, as_like

    lengths = as_float(inputs.lengths)
    return torch.ones_like(lengths) / (as_like(inputs.num_completions, lengths).clamp(min=1.0) * inputs.max_completion_length)
