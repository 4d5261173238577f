"""Distribution functions of the report's t test and its power, in numpy and the standard library.

scipy.special has them all, but importing it costs 0.3 s, a third of what ``lgrpo-bench plan`` may take; these are
checked against scipy in ``tests/test_distributions.py`` (1e-10 relative for the t functions, 1e-10 absolute for the
noncentral t).

* :func:`betainc` — the regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz;
  Press et al., *Numerical Recipes* 3rd ed., §6.4), using I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges
  slowly. Scalar, in plain floats: a table's t tests take a handful of values, where numpy's per-call overhead
  would dominate.
* :func:`t_cdf` — Student's t CDF: for t ≤ 0, F(t; ν) = ½ · I_{ν/(ν+t²)}(ν/2, ½), and F(−t) = 1 − F(t).
* :func:`t_quantile` — its inverse: Newton's method on log F against log |t| inside a bisection bracket (the
  quantile of ν ≥ 1 lies between the normal's and the Cauchy's, ν = 1).
* :func:`normal_quantile` — the standard library's ``statistics.NormalDist``.
* :func:`noncentral_t_cdf` — P(T' ≤ t) for T' = (Z + δ)/√(V/ν), Z standard normal, V ~ χ²_ν:
  F(t; ν, δ) = ∫₀^∞ Φ(t·s − δ) f_S(s) ds with S = √(V/ν),
  f_S(s) = 2 (ν/2)^{ν/2} / Γ(ν/2) · s^{ν−1} e^{−ν s²/2}, by Gauss–Legendre panels over E[S] ± 12 sd(S), each no
  wider than Φ's step (1/|t|) or the spread of S.

:func:`t_cdf` and :func:`t_quantile` take arrays (broadcast, element by element; :func:`t_quantile` solves each
distinct (p, ν) once and remembers it).
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np

__all__ = ["betainc", "noncentral_t_cdf", "normal_quantile", "t_cdf", "t_quantile"]

_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 10_000
_STANDARD_NORMAL = NormalDist()


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1)/(a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) >= _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2.0 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) >= _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) >= _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"the incomplete beta continued fraction did not converge in {_MAX_TERMS} terms")


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def betainc(a: float, b: float, x: float, y: float | None = None, log_beta: float | None = None) -> float:
    """I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1. ``y``: 1 − x when the caller knows it more precisely than ``1 - x``
    rounds it (x near 1); ``log_beta``: log B(a, b) when the caller has it already."""
    y = 1.0 - x if y is None else y
    if not (a > 0 and b > 0 and 0 <= x <= 1):
        raise ValueError(f"betainc needs a, b > 0 and 0 ≤ x ≤ 1, got a={a}, b={b}, x={x}")
    if x <= 0:
        return 0.0
    if y <= 0:
        return 1.0
    log_beta = _log_beta(a, b) if log_beta is None else log_beta
    front = math.exp(a * math.log(x) + b * math.log(y) - log_beta)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, y) / b


def _t_log_beta(df: float) -> float:
    """log B(ν/2, ½)."""
    return _log_beta(df / 2.0, 0.5)


def _t_tail(s: float, df: float, log_beta: float) -> float:
    """F(−|s|; ν) = ½ · I_{ν/(ν+s²)}(ν/2, ½)."""
    squared = s * s
    return 0.5 * betainc(df / 2.0, 0.5, df / (df + squared), squared / (df + squared), log_beta)


def _t_cdf(t: float, df: float) -> float:
    if not df > 0:
        raise ValueError(f"the t distribution needs ν > 0, got {df}")
    tail = _t_tail(t, df, _t_log_beta(df))
    return tail if t <= 0 else 1.0 - tail


_t_cdf_elementwise = np.frompyfunc(_t_cdf, 2, 1)


def t_cdf(t, df) -> np.ndarray:
    """Student's t CDF F(t; ν) (arrays broadcast; ν > 0)."""
    return np.asarray(_t_cdf_elementwise(np.asarray(t, dtype=float), np.asarray(df, dtype=float)), dtype=float)


@functools.lru_cache(maxsize=65_536)
def _t_quantile(p: float, df: float) -> float:
    """Solved in the lower tail q = min(p, 1 − p) for s = |t| (F(−s) = q, computed without cancellation), by Newton's
    method on log F(−s) against log s inside the bracket [0, cot(π q)] (the Cauchy's quantile, the largest of ν ≥ 1;
    doubled for ν < 1), from the normal quantile (the smallest)."""
    if not (0 < p < 1 and df > 0):
        raise ValueError(f"t_quantile needs 0 < p < 1 and ν > 0, got p={p}, ν={df}")
    q = min(p, 1.0 - p)
    if q == 0.5:
        return 0.0
    log_beta = _t_log_beta(df)
    low, high = 0.0, 1.0 / math.tan(math.pi * q)
    while _t_tail(high, df, log_beta) > q:  # ν < 1 has heavier tails than the Cauchy
        high *= 2.0
    s = min(-_STANDARD_NORMAL.inv_cdf(q), high)
    log_q = math.log(q)
    for _ in range(200):
        tail = _t_tail(s, df, log_beta)
        if tail == q:
            break
        if tail > q:  # s is below the quantile
            low = s
        else:
            high = s
        # Newton on log F(−s) against log s: near linear for heavy tails (F ~ s^−ν), smooth for light ones
        log_density = -0.5 * math.log(df) - log_beta - (df + 1.0) / 2.0 * math.log1p(s * s / df)
        following = math.inf
        if tail > 0:
            slope = math.exp(log_density + math.log(s) - math.log(tail))
            following = s * math.exp(min((math.log(tail) - log_q) / slope, 700.0))
        if not low < following < high:
            following = math.sqrt(low * high) if low > 0 else 0.5 * high
        converged = abs(following - s) <= 4e-14 * s
        s = following
        if converged:
            break
    else:
        raise ArithmeticError(f"t_quantile({p}, {df}) did not converge")
    return s if p > 0.5 else -s


_t_quantile_elementwise = np.frompyfunc(_t_quantile, 2, 1)


def t_quantile(p, df) -> np.ndarray:
    """The t with F(t; ν) = p (arrays broadcast; 0 < p < 1, ν > 0), to 1e-13 relative."""
    return np.asarray(_t_quantile_elementwise(np.asarray(p, dtype=float), np.asarray(df, dtype=float)), dtype=float)


def normal_quantile(p: float) -> float:
    """Φ⁻¹(p)."""
    return _STANDARD_NORMAL.inv_cdf(p)


@functools.lru_cache(maxsize=1)
def _legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(nodes)


_PANEL_NODES = 20
_SPREAD = 12.0
_erfc = np.frompyfunc(math.erfc, 1, 1)


def noncentral_t_cdf(t: float, df: float, ncp: float) -> float:
    """F(t; ν, δ) = P(T' ≤ t) of the noncentral t with noncentrality δ and ν degrees of freedom, an integer ≥ 1 or
    any ν ≥ 2 (module doc). Below, s^{ν−1} is not smooth at 0 and Gauss–Legendre panels lose digits; the power of
    a t test over n seeds has ν = n − 1 or 2n − 2."""
    if not (df >= 2 or (df >= 1 and float(df).is_integer())):
        raise ValueError(f"the noncentral t here needs ν ≥ 1 an integer or ν ≥ 2, got {df}")
    half = df / 2.0
    mean = math.exp(0.5 * math.log(2.0 / df) + math.lgamma((df + 1.0) / 2.0) - math.lgamma(half))  # E[S]
    spread = math.sqrt(max(1.0 - mean * mean, 0.0)) or 1.0 / math.sqrt(2.0 * df)  # sd(S)
    low, high = max(0.0, mean - _SPREAD * spread), mean + _SPREAD * spread
    width = min(spread, 1.0 / abs(t) if t else math.inf)
    panels = max(2, min(4096, math.ceil((high - low) / width)))
    edges = np.linspace(low, high, panels + 1)
    nodes, weights = _legendre(_PANEL_NODES)
    middles, halves = (edges[1:] + edges[:-1]) / 2.0, (edges[1:] - edges[:-1]) / 2.0
    s = (middles[:, None] + halves[:, None] * nodes[None, :]).ravel()
    w = (halves[:, None] * weights[None, :]).ravel()
    log_density = math.log(2.0) + half * math.log(half) - math.lgamma(half) + (df - 1.0) * np.log(s) - half * s * s
    phi = 0.5 * np.asarray(_erfc(-(t * s - ncp) / math.sqrt(2.0)), dtype=float)
    return float(min(1.0, max(0.0, np.sum(w * phi * np.exp(log_density)))))
