"""Completion-length statistics of one generation batch, logged every step (pure torch, no I/O).

Length weighting is what separates GRPO (1/|o_i|), DAPO (1/Σ|o|), Dr. GRPO (1/L_max) and λ-GRPO, so the trainer
logs how length relates to correctness and to the advantage (``docs/TESTBED.md``):

* :func:`length_by_correctness`: mean length of the incorrect (accuracy reward == 0) and of the correct
  (accuracy reward > 0) completions — Dr. GRPO's claim (arXiv 2503.20783) is that GRPO's 1/|o_i| lets the
  incorrect ones grow longer;
* :func:`length_advantage_corr`: the within-group Pearson correlation of length and advantage, averaged over the
  groups where both vary — the sign λ-GRPO's λ should follow (arXiv 2510.06870).

Rows come in groups of ``group_size`` consecutive completions (TRL's order).
"""

from __future__ import annotations

import torch

__all__ = ["length_advantage_corr", "length_by_correctness"]


def length_by_correctness(lengths: torch.Tensor, accuracy: torch.Tensor) -> dict[str, float]:
    """``{"incorrect": mean |o_i| over i with acc_i == 0, "correct": mean |o_i| over i with acc_i > 0}``.

    A class with no completion is left out of the result (never NaN); rows whose accuracy is NaN (no scorer
    answered) belong to neither. ``lengths`` and ``accuracy`` are (N,) tensors.
    """
    if lengths.shape != accuracy.shape:
        raise ValueError(f"lengths {tuple(lengths.shape)} and accuracy {tuple(accuracy.shape)} differ in shape")
    lengths, accuracy = lengths.double(), accuracy.double()
    out: dict[str, float] = {}
    for name, mask in (("incorrect", accuracy == 0), ("correct", accuracy > 0)):
        if bool(mask.any()):
            out[name] = float(lengths[mask].mean())
    return out


def length_advantage_corr(lengths: torch.Tensor, advantages: torch.Tensor, group_size: int,
                          eps: float = 1e-8) -> float | None:
    r"""Mean over groups g, whose lengths and advantages both vary, of the Pearson correlation

    .. math:: \rho_g = \frac{\sum_{i\in g}(L_i-\bar L_g)(A_i-\bar A_g)}
                           {\sqrt{\sum_{i\in g}(L_i-\bar L_g)^2}\sqrt{\sum_{i\in g}(A_i-\bar A_g)^2}}

    (means within the group, not over the batch). ``None`` when no group qualifies (a group "varies" when its
    sum of squared deviations exceeds ``eps``). ``lengths`` and ``advantages``: (N,) with N a multiple of
    ``group_size``.
    """
    if lengths.shape != advantages.shape or lengths.ndim != 1:
        raise ValueError(f"lengths {tuple(lengths.shape)} and advantages {tuple(advantages.shape)} must be the "
                         "same 1-d shape")
    if group_size < 2 or lengths.numel() % group_size:
        raise ValueError(f"{lengths.numel()} rows do not split into groups of {group_size} (group_size >= 2)")
    x = lengths.double().view(-1, group_size)
    y = advantages.double().view(-1, group_size)
    dx = x - x.mean(dim=1, keepdim=True)
    dy = y - y.mean(dim=1, keepdim=True)
    sxx, syy = (dx * dx).sum(dim=1), (dy * dy).sum(dim=1)
    varies = (sxx > eps) & (syy > eps) & torch.isfinite(sxx) & torch.isfinite(syy)
    if not bool(varies.any()):
        return None
    rho = (dx * dy).sum(dim=1)[varies] / (sxx[varies].sqrt() * syy[varies].sqrt())
    return float(rho.mean())
