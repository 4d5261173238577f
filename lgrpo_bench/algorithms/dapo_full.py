"""The full DAPO recipe as published (Yu et al. 2025), not only its token-level aggregation.

    w_i = keep_i / Σ_j keep_j·|o_j|,   ε_low = 0.2, ε_high = 0.28 (clip-higher)

- token-level mean (as ``dapo``);
- clip-higher: the ratio is clipped to [1-0.2, 1+0.28];
- overlong reward shaping: a soft penalty over the last ``overlong_buffer_tokens`` before L_max
  (see ``lgrpo_bench.tasks.rewards.overlong_penalty``);
- truncated completions (no EOS before L_max) are masked out of the loss;
- dynamic sampling: groups whose rewards all agree carry no signal and are dropped from the loss and
  from its normaliser (keep_i = 0).

Departure from the paper: DAPO re-samples prompts until the batch is full of mixed-reward groups; here
the batch simply shrinks (TRL has no re-sampling loop), so an optimizer step may see fewer groups.
"""

from lgrpo_bench.algorithms.base import AlgorithmSpec
from lgrpo_bench.algorithms.dapo import token_mean_weight

SPEC = AlgorithmSpec(
    name="dapo_full",
    summary="Full DAPO: token mean + clip-higher (0.2/0.28) + overlong shaping + truncation mask + dynamic sampling",
    reference="Yu et al. 2025, DAPO, arXiv:2503.14476, §3.1-3.4",
    weight=token_mean_weight,
    epsilon_low=0.2,
    epsilon_high=0.28,
    mask_truncated_completions=True,
    drop_uniform_reward_groups=True,
    overlong_penalty=True,
)
