"""λ's own optimizer, stepped beside the policy's: the policy optimizer holds model parameters only.

FSDP2 (``accelerate`` with ``fsdp_version: 2``) replaces every parameter of the policy optimizer by the sharded model
parameter of the same storage and fails on any other (λ is outside the model), so λ never joins the policy optimizer.
Its optimizer is stepped in the policy optimizer's post-step hook with the learning rate

    lr_t = lambda_lr × (policy lr_t / learning_rate)          (the policy's LR schedule factor)

Adam uses the policy's β₁, β₂ and ε (TrainingArguments ``adam_beta1``, ``adam_beta2``, ``adam_epsilon``) and no
weight decay: the same update λ got as a weight-decay-free param group of the policy's AdamW. SGD steps
``λ ← λ − lr_t · g``. Its state (Adam's step count and moments; SGD has none) is saved in ``lambda_state.json``
inside each checkpoint as plain numbers (exact: float32 → float64 → float32) and restored on resume.
"""

from __future__ import annotations

from typing import Any

import torch

from lgrpo_bench.training.lambda_rate import LAMBDA_OPTIMIZERS


def make_lambda_optimizer(name: str, lam: torch.nn.Parameter, lambda_lr: float, betas: tuple[float, float],
                          eps: float, fused: bool | None = None) -> torch.optim.Optimizer:
    """λ's optimizer: ``adam`` (betas, eps, no weight decay; ``fused`` kernel or not, as the policy's, so that λ's
    update is the same to the last bit) or ``sgd`` (plain gradient descent), at ``lambda_lr``."""
    if name == "adam":
        return torch.optim.Adam([lam], lr=lambda_lr, betas=betas, eps=eps, weight_decay=0.0, fused=fused)
    if name == "sgd":
        return torch.optim.SGD([lam], lr=lambda_lr)
    raise ValueError(f"unknown λ optimizer {name!r}: choose one of {', '.join(LAMBDA_OPTIMIZERS)}")


def scheduled_lambda_lr(lambda_lr: float, policy_lr: float, base_lr: float) -> float:
    """``lambda_lr × policy_lr / base_lr``: λ's rate under the policy's schedule factor this step."""
    return lambda_lr * policy_lr / base_lr


def lambda_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """λ's optimizer state as JSON numbers: ``{name: float | None}`` (Adam: step, exp_avg, exp_avg_sq)."""
    states = list(optimizer.state_dict()["state"].values())
    state = states[0] if states else {}
    return {key: (float(value) if isinstance(value, torch.Tensor) else value) for key, value in state.items()}


def load_lambda_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore what :func:`lambda_optimizer_state` saved (the param group's hyperparameters stay this run's)."""
    tensors = {key: (torch.tensor(value, dtype=torch.float32) if isinstance(value, float) else value)
               for key, value in state.items()}
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": {0: tensors} if tensors else {}, "param_groups": current["param_groups"]})


__all__ = ["lambda_optimizer_state", "load_lambda_optimizer_state", "make_lambda_optimizer", "scheduled_lambda_lr"]
