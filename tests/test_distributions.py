"""The report's distribution functions (``lgrpo_bench.reports.distributions``): closed forms by hand, scipy as the
oracle over the range the reports and power searches use, and no scipy import on the paths ``plan`` and ``report``
take."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import special

from lgrpo_bench.reports.distributions import betainc, noncentral_t_cdf, normal_quantile, t_cdf, t_quantile

DFS = [0.4, 1.0, 1.7, 2.0, 3.0, 4.6, 8.0, 29.0, 100.0, 1_000.0, 19_998.0]


# ---------------------------------------------------------------------------------------------------------
# closed forms, by hand
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [-40.0, -3.0, -1.0, -1e-8, 0.0, 0.5, 2.0, 12.706])
def test_t_cdf_of_one_and_two_degrees_of_freedom(t):
    """ν = 1 is the Cauchy: F = ½ + atan(t)/π; ν = 2: F = ½ + t / (2√(t² + 2))."""
    assert float(t_cdf(t, 1.0)) == pytest.approx(0.5 + math.atan(t) / math.pi, rel=1e-13, abs=1e-300)
    assert float(t_cdf(t, 2.0)) == pytest.approx(0.5 + t / (2 * math.sqrt(t * t + 2)), rel=1e-13, abs=1e-300)


@pytest.mark.parametrize("p", [1e-10, 0.025, 0.3, 0.5, 0.8, 0.975, 1 - 1e-9])
def test_t_quantile_of_one_and_two_degrees_of_freedom(p):
    """ν = 1: t = tan(π(p − ½)) = −cot(π p) (written so in the tails, where tan near ±π/2 loses digits);
    ν = 2: t = (2p − 1)/√(2p(1 − p)); 12.7062047 is the textbook t_{0.975, 1}."""
    cauchy = 0.0 if p == 0.5 else (-1 / math.tan(math.pi * p) if p < 0.5 else 1 / math.tan(math.pi * (1 - p)))
    assert float(t_quantile(p, 1.0)) == pytest.approx(cauchy, rel=1e-12, abs=1e-15)
    assert float(t_quantile(p, 2.0)) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12, abs=1e-15)
    assert float(t_quantile(0.975, 1.0)) == pytest.approx(12.7062047, abs=1e-7)


def test_betainc_by_hand():
    """I_x(1, 1) = x; I_x(2, 1) = x²; I_x(1, 2) = 1 − (1 − x)²; I_x(a, b) = 1 − I_{1−x}(b, a); the ends are 0 and 1."""
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert betainc(1.0, 1.0, x) == pytest.approx(x, abs=1e-15)
        assert betainc(2.0, 1.0, x) == pytest.approx(x * x, abs=1e-15)
        assert betainc(1.0, 2.0, x) == pytest.approx(1 - (1 - x) ** 2, abs=1e-15)
        assert betainc(3.5, 0.5, x) == pytest.approx(1 - betainc(0.5, 3.5, 1 - x), abs=1e-15)
    with pytest.raises(ValueError):
        betainc(0.0, 1.0, 0.5)


def test_noncentral_t_without_noncentrality_is_the_t():
    for df in [df for df in DFS if df >= 2 or df == 1]:
        for t in (-12.7, -2.0, 0.0, 0.7, 3.1):
            assert noncentral_t_cdf(t, df, 0.0) == pytest.approx(float(t_cdf(t, df)), abs=1e-11), (t, df)


def test_noncentral_t_refuses_what_its_quadrature_cannot_do():
    """For ν < 2 not an integer, the density of √(V/ν) ∝ s^{ν−1} is not smooth at 0: refused, not approximated."""
    for df in (0.5, 1.7):
        with pytest.raises(ValueError, match="ν ≥ 1 an integer or ν ≥ 2"):
            noncentral_t_cdf(1.0, df, 0.0)


def test_noncentral_t_of_a_huge_sample_is_the_shifted_normal():
    """ν → ∞: T' → Z + δ, so F(t; ν, δ) → Φ(t − δ)."""
    for t, ncp in ((1.96, 2.8), (-1.0, 0.5), (3.0, 0.0)):
        normal = 0.5 * math.erfc(-(t - ncp) / math.sqrt(2))
        assert noncentral_t_cdf(t, 1e7, ncp) == pytest.approx(normal, abs=1e-6)


def test_normal_quantile_by_hand():
    assert normal_quantile(0.975) == pytest.approx(1.959963984540054, rel=1e-14)
    assert normal_quantile(0.8) == pytest.approx(0.8416212335729143, rel=1e-14)


# ---------------------------------------------------------------------------------------------------------
# scipy as the oracle
# ---------------------------------------------------------------------------------------------------------
def test_t_cdf_and_quantile_agree_with_scipy():
    ts = np.array([-1e3, -50.0, -12.7, -5.0, -2.5, -1.0, -0.1, 0.0, 0.3, 1.0, 2.1, 4.0, 9.0, 40.0])
    t_grid, df_grid = np.meshgrid(ts, DFS)
    mine, oracle = t_cdf(t_grid, df_grid), special.stdtr(df_grid, t_grid)
    relative = np.abs(mine - oracle) / np.maximum(oracle, 1e-300)
    assert relative.max() < 1e-10, (relative.max(), t_grid.ravel()[relative.argmax()], df_grid.ravel()[relative.argmax()])
    ps = np.array([1e-10, 0.001, 0.025, 0.1, 0.4, 0.6, 0.8, 0.9, 0.975, 0.995, 0.9999])
    p_grid, df_grid = np.meshgrid(ps, DFS)
    mine, oracle = t_quantile(p_grid, df_grid), special.stdtrit(df_grid, p_grid)
    relative = np.abs(mine - oracle) / np.abs(oracle)
    assert relative.max() < 1e-10, (relative.max(), p_grid.ravel()[relative.argmax()], df_grid.ravel()[relative.argmax()])
    assert mine.shape == p_grid.shape


def test_welch_batches_agree_with_scipy():
    """A null simulation's Welch batch: 2,000 different ν in (1, 40), level 97.5 %."""
    rng = np.random.default_rng(3)
    df = 1 + rng.exponential(5, 2000)
    t = -rng.exponential(2, 2000)
    np.testing.assert_allclose(t_quantile(0.975, df), special.stdtrit(df, 0.975), rtol=1e-12)
    np.testing.assert_allclose(t_cdf(t, df), special.stdtr(df, t), rtol=1e-10)


def test_noncentral_t_agrees_with_scipy():
    worst = 0.0
    for df in (1, 2, 3, 4, 8, 10, 29, 100, 1000, 19998):
        for ncp in (-5, -1, 0, 0.5, 1, 2.8, 5, 14, 40):
            for t in (-12.7, -4.3, -2, -1, 0, 1, 2, 2.26, 4.3, 12.7, 50):
                oracle = float(special.nctdtr(df, ncp, t))
                if math.isnan(oracle):  # scipy gives up far in some tails
                    continue
                worst = max(worst, abs(noncentral_t_cdf(t, df, ncp) - oracle))
    assert worst < 1e-10


# ---------------------------------------------------------------------------------------------------------
# what they are for: no scipy on the command paths
# ---------------------------------------------------------------------------------------------------------
def test_the_t_test_and_its_power_import_no_scipy():
    script = ("import sys, numpy as np\n"
              "from lgrpo_bench.reports.stats import delta_interval\n"
              "from lgrpo_bench.reports.power import power_summary\n"
              "delta_interval({'0': 0.5, '1': 0.6, '2': 0.55}, {'0': 0.4, '1': 0.45, '2': 0.5})\n"
              "delta_interval({'0': 0.5, '1': 0.6}, {'7': 0.4, '8': 0.45})\n"
              "power_summary(0.02, 3, paired=True, std_df=4)\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
