"""The implied token preference of each aggregation: weight per token against completion length.

For one group of G completions with lengths |o_1| < ... < |o_G| (the whole batch, N = G, P = 1, one micro-batch),
the weight a token of completion i receives relative to DAPO's token mean is w_i · Σ_j |o_j|
(:func:`lgrpo_bench.algorithms.relative_token_weight`):

- token_mean (DAPO), local_token_mean (one micro-batch), prompt_mean (one prompt): ≡ 1;
- seq_mean_token_mean (GRPO): Σ_j|o_j| / (G·|o_i|) ∝ 1/|o_i|;
- constant (Dr. GRPO): Σ_j|o_j| / (G·L_max), flat;
- lambda (λ-GRPO): f_i = G·softmax(h^λ)_i, rising with length for λ > 0.

The surrogate, advantage and group filter do not change the weights, so every preset is drawn by its aggregation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lgrpo_bench.algorithms.presets import HYPERPARAMETERS

__all__ = ["example_group_lengths", "implied_token_weights"]


def example_group_lengths(group_size: int, max_completion_length: int) -> list[int]:
    """G lengths evenly spread over [L_max/G, L_max] (rounded): the group the preference plot weights."""
    return [max(1, round(max_completion_length * (i + 1) / group_size)) for i in range(group_size)]


def implied_token_weights(
    algorithm: str, lengths: Sequence[int], *, max_completion_length: int, lam: float | None = None,
    r: float = HYPERPARAMETERS["r"].default,
) -> np.ndarray:
    """w_i · Σ_j |o_j| for each completion of one group with these ``lengths`` (see the module doc).

    ``algorithm``: an aggregation (``lambda``, ``prompt_mean``, …) or a preset (drawn by its aggregation)."""
    import torch

    from lgrpo_bench.algorithms import batch_weight_inputs, completion_weights, relative_token_weight

    lengths_t = torch.tensor([float(x) for x in lengths], dtype=torch.float64)
    weights = completion_weights(algorithm, lengths_t, group_size=len(lengths), lam=lam, r=r,
                                 max_completion_length=max_completion_length)
    inputs = batch_weight_inputs(lengths_t, len(lengths), max_completion_length)
    return relative_token_weight(weights, inputs).detach().numpy()
