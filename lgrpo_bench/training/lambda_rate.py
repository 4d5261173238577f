"""Was λ's update at its optimizer's rate limit? (λ said honestly: a final λ ≈ lambda_lr × steps is the optimizer's
speed, not a learned preference.)

Adam normalises the gradient: its step is lr_t · m̂/(√v̂ + ε), and while the gradient keeps one sign |m̂/√v̂| ≈ 1,
so λ moves by about lr_t each step whatever the gradient's size (its first step is exactly lr_t). A step is
*rate-limited* when

    |Δλ| ≥ 0.9 · lr_t          (lr_t = lambda_lr × the LR schedule's factor at that step)

SGD's step lr_t · g is proportional to the gradient: it has no rate limit and is never flagged. Pure functions, no
torch; the trainer logs the flag each step (``train/lambda_rate_limited``) and the fraction of flagged steps as the
tag ``lgrpo.lambda.rate_limited_frac`` at the end of training.
"""

from __future__ import annotations

from collections.abc import Sequence

from lgrpo_bench.algorithms.presets import HYPERPARAMETERS

#: |Δλ| at or above this fraction of lr_t counts as "at the rate limit" (Adam's steady-sign step is ≈ 1·lr_t).
RATE_LIMIT_FRACTION = 0.9
LAMBDA_OPTIMIZERS: tuple[str, ...] = HYPERPARAMETERS["lambda_optimizer"].choices  # declared in aggregation/lambda_preference.py


def lambda_rate_limited(delta: float, lr: float, optimizer: str) -> bool:
    """True when a λ step of size ``delta`` taken with learning rate ``lr`` (schedule applied) hit the rate limit."""
    if optimizer not in LAMBDA_OPTIMIZERS:
        raise ValueError(f"unknown λ optimizer {optimizer!r}: choose one of {', '.join(LAMBDA_OPTIMIZERS)}")
    if optimizer == "sgd" or lr <= 0:
        return False
    return abs(delta) >= RATE_LIMIT_FRACTION * lr


def rate_limited_fraction(flags: Sequence[bool]) -> float | None:
    """Share of steps flagged (None without steps)."""
    return sum(bool(f) for f in flags) / len(flags) if flags else None


__all__ = ["LAMBDA_OPTIMIZERS", "RATE_LIMIT_FRACTION", "lambda_rate_limited", "rate_limited_fraction"]
