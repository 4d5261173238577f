r"""Evaluation statistics: pure functions of per-sample correctness, no I/O.

For problem :math:`i` with :math:`n_i` samples of which :math:`c_i` are correct:

* per-problem accuracy :math:`a_i = c_i / n_i`;
* ``acc`` :math:`= \frac{1}{N}\sum_i a_i` (pass@1 for greedy, the mean over samples for avg@k);
* ``acc_stderr`` :math:`= s / \sqrt{N}` with :math:`s` the sample standard deviation (ddof 1) of the
  :math:`a_i`: the standard error over problems (lm-eval's ``mean_stderr``; sampling noise within a problem
  is averaged into :math:`a_i`);
* ``pass@k`` :math:`= \frac{1}{N}\sum_i \left(1 - \binom{n_i - c_i}{k} / \binom{n_i}{k}\right)`, the unbiased
  estimator of Chen et al. 2021 (HumanEval), defined for :math:`k \le n_i`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["mean_stderr", "pass_at_k", "pass_at_k_values", "reported_ks"]


def pass_at_k(n: int, c: int, k: int) -> float:
    r"""Unbiased pass@k of one problem: :math:`1 - \binom{n-c}{k} / \binom{n}{k}`.

    The probability that at least one of ``k`` samples drawn without replacement from the ``n`` generated
    (``c`` correct) is correct. Raises ``ValueError`` unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # product form of C(n-c, k) / C(n, k), stable for large n
    return 1.0 - math.prod((n - c - j) / (n - j) for j in range(k))


def reported_ks(k: int) -> list[int]:
    """The k' reported for ``k`` samples per problem: powers of two below ``k``, and ``k`` itself."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    values = [2**p for p in range(k.bit_length()) if 2**p < k]
    return values + [k]


def pass_at_k_values(samples_and_correct: Sequence[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over problems given as ``(n_i, c_i)`` pairs."""
    if not samples_and_correct:
        raise ValueError("pass@k of an empty problem list is undefined")
    return sum(pass_at_k(n, c, k) for n, c in samples_and_correct) / len(samples_and_correct)


def mean_stderr(values: Sequence[float]) -> float:
    """Standard error of the mean: sample standard deviation (ddof 1) / sqrt(N); NaN for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)
