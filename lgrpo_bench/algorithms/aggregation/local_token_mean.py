"""The local token mean: TRL's ``loss_type="bnpo"`` (TRL 1.16 ``GRPOTrainer._compute_loss``).

    w_i = 1 / (M · Σ_{j∈mb(i)} |o_j|)

mb(i) is the micro-batch row i is in (on its process) and M the number of micro-batches the generation batch is
split into over all processes, so L is the mean over micro-batches of each micro-batch's token mean. TRL's docs:
"results may slightly vary depending on the local batch size". This is the one aggregation whose gradient depends
on the micro-batch split (``SPLIT_INVARIANT = False``); with one micro-batch on one process it is ``token_mean``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a weight is computed: the presets read this module without it
    import torch

    from lgrpo_bench.algorithms.base import WeightInputs


NAME = "local_token_mean"
SUMMARY = "w_i = 1/(M·Σ_{j∈mb}|o_j|): token mean of each micro-batch, mean over the M micro-batches (TRL bnpo)"
SPLIT_INVARIANT = False


def weight(inputs: WeightInputs, lam: torch.Tensor | None, r: float) -> torch.Tensor:
    import torch
    from lgrpo_bench.algorithms.base import as_float, as_like

    lengths = as_float(inputs.lengths)
    local = inputs.num_tokens if inputs.local_num_tokens is None else inputs.local_num_tokens
    return torch.ones_like(lengths) / (as_like(local, lengths).clamp(min=1.0) * inputs.num_micro_batches)
