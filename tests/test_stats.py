"""Tests for sdn.stats: tail indices, KS, quantile tables, bootstrap, least squares."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from sdn.stats import (
    bootstrap_ci,
    fit_constant_linear_quadratic,
    hill_estimator,
    ks_test,
    polynomial_fit,
    quantile_table,
    stable_index,
)
from sdn.theory import gaussian_stationary, power_law_stationary


@pytest.mark.parametrize("alpha", [1.5, 3.0])
def test_hill_recovers_pareto_index(alpha):
    # Exact power law: α̂ ~ N(α, α²/k), unbiased; 4 sd is a 6e-5 two-sided false alarm.
    x = np.random.default_rng(1).pareto(alpha, 100_000) + 1.0
    est = hill_estimator(x, k=2000)
    assert est.stderr == pytest.approx(est.index / np.sqrt(2000))
    assert abs(est.index - alpha) < 4 * alpha / np.sqrt(2000)


def test_hill_recovers_student_t_degrees_of_freedom():
    # Student-t tail ∝ x^−ν; Hill's bias is relative (k/n)^(2/ν) ≈ 0.016 here, i.e.
    # ≈ 0.05, a third of the sd ν/√k = 0.15 (measured mean over 20 runs: 2.975).
    law = power_law_stationary(1.0, 0.1, 1, 1.0, 10.0)  # ν = 3
    x = np.asarray(law.scale) * np.random.default_rng(2).standard_t(3.0, 200_000)
    est = hill_estimator(x, k=400)
    assert abs(est.index - float(law.tail_index)) < 4 * 3.0 / np.sqrt(400)


def test_hill_k_choices_and_errors():
    x = np.random.default_rng(0).pareto(2.0, 10_000) + 1.0
    assert hill_estimator(x).k == 100
    assert hill_estimator(x, k=0.05).k == 500
    with pytest.raises(ValueError, match="k"):
        hill_estimator(x, k=10_000)
    with pytest.raises(ValueError, match="k"):
        hill_estimator(x, k=1.5)
    with pytest.raises(ValueError, match="samples"):
        hill_estimator([1.0, np.nan, 2.0, 3.0])


@pytest.mark.parametrize("alpha, beta", [(1.2, 0.0), (1.5, 0.5), (1.8, -0.5), (2.0, 0.0)])
def test_stable_index_recovers_alpha(alpha, beta):
    # Measured sd of the estimate over 20 replicates at n = 5000: 0.029 (0.006 at α = 2),
    # bias ≤ 0.014; at n = 20000 sd ≈ 0.015, so 0.08 is > 4 sd plus the bias.
    x = stats.levy_stable.rvs(alpha, beta, size=20_000, random_state=np.random.default_rng(3))
    est = stable_index(x)
    assert abs(est.alpha - alpha) < 0.08
    assert est.stderr < 0.05


def test_stable_index_scale_for_cauchy():
    # Cauchy (α = 1) of scale c: |φ(t)| = exp(−c|t|)
    x = 2.5 * np.random.default_rng(4).standard_cauchy(50_000)
    est = stable_index(x)
    assert est.alpha == pytest.approx(1.0, abs=0.05)
    assert est.scale == pytest.approx(2.5, rel=0.06)


def test_ks_accepts_true_law_and_rejects_gaussian_of_same_variance():
    law = power_law_stationary(1.0, 0.1, 1, 1.0, 5.0)  # ν = 5
    x = np.asarray(law.scale) * np.random.default_rng(5).standard_t(5.0, 20_000)
    ok = ks_test(x, law.cdf)
    assert ok.pvalue > 1e-3  # fails with probability 1e-3 under the null
    gauss = gaussian_stationary(1.0, 0.1, 1, 1.0)
    bad = ks_test(x * float(np.sqrt(gauss.variance / law.variance)), gauss.cdf)
    assert bad.pvalue < 1e-6 and bad.statistic > ok.statistic


def test_quantile_table_brackets_theory():
    law = power_law_stationary(1.0, 0.1, 1, 1.0, 2.0)
    x = np.asarray(law.scale) * np.random.default_rng(6).standard_t(float(law.df), 50_000)
    # level 0.9999 per quantile: the 5 brackets all hold except with probability ~5e-4
    tab = quantile_table(x, law.ppf, level=0.9999)
    assert tab.measured.shape == (5,)
    assert np.all(tab.lower <= tab.measured) and np.all(tab.measured <= tab.upper)
    assert np.all(tab.lower <= tab.theoretical) and np.all(tab.theoretical <= tab.upper)
    with pytest.raises(ValueError, match="probs"):
        quantile_table(x, law.ppf, probs=(0.5, 1.0))


@pytest.mark.slow
def test_bootstrap_mean_ci_covers_at_nominal_rate():
    # 400 data sets of 100 exponential(1) values: coverage of the true mean 1 by the 90%
    # percentile interval. Binomial sd sqrt(.9·.1/400) = 0.015; percentile intervals are
    # known to undercover slightly for skewed data at n = 100 (≈ 0.88), so accept ±0.05.
    n_sets = 400
    kd, kb = jax.random.split(jax.random.key(7))
    data = jax.random.exponential(kd, (n_sets, 100))

    def ci(key, x):
        return bootstrap_ci(key, x, n_resamples=500, level=0.9)

    out = jax.jit(jax.vmap(ci))(jax.random.split(kb, n_sets), data)
    covered = float(jnp.mean((out.low < 1.0) & (1.0 < out.high)))
    assert abs(covered - 0.9) < 0.05
    assert bool(jnp.all(out.low <= out.estimate)) and bool(jnp.all(out.estimate <= out.high))


def test_bootstrap_general_statistic_and_errors():
    x = jax.random.normal(jax.random.key(8), (500,))
    ci = bootstrap_ci(jax.random.key(9), x, jnp.median, n_resamples=300)
    # sd of the median of 500 normals ≈ sqrt(π/2)/sqrt(500) = 0.056; 95% width ≈ 0.22
    assert 0.1 < float(ci.high - ci.low) < 0.4
    assert float(ci.low) < 0.0 < float(ci.high) or abs(float(ci.estimate)) > 0.1
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(jax.random.key(0), x, level=1.5)


def test_polynomial_fit_recovers_coefficients_within_standard_errors():
    rng = np.random.default_rng(10)
    x = np.linspace(-2, 2, 200)
    true = np.array([1.0, -0.5, 2.0])
    z = []
    for _ in range(200):
        y = true[0] + true[1] * x + true[2] * x**2 + 0.3 * rng.standard_normal(x.size)
        fit = polynomial_fit(x, y, 2)
        z.append((fit.coef - true) / fit.stderr)
    z = np.asarray(z)
    # each z ~ t(197) ≈ N(0, 1): sd of the sample sd over 200 runs ≈ 1/sqrt(400) = 0.05
    assert np.all(np.abs(z.mean(axis=0)) < 4 / np.sqrt(200))
    assert np.all(np.abs(z.std(axis=0) - 1.0) < 0.2)
    assert fit.residual_std == pytest.approx(0.3, rel=0.2)
    assert fit(0.0) == pytest.approx(fit.coef[0])


def test_constant_linear_quadratic_fits_rank_by_r_squared():
    rng = np.random.default_rng(11)
    x = np.linspace(-1, 1, 101)
    y = 1.0 + 3.0 * x**2 + 0.05 * rng.standard_normal(x.size)
    fits = fit_constant_linear_quadratic(x, y)
    assert fits["constant"].r_squared == 0.0
    assert fits["linear"].r_squared < 0.05
    assert fits["quadratic"].r_squared > 0.99
    assert fits["quadratic"].coef[2] == pytest.approx(3.0, abs=4 * fits["quadratic"].stderr[2])
    with pytest.raises(ValueError, match="at least"):
        polynomial_fit([0.0, 1.0], [0.0, 1.0], 2)
    with pytest.raises(ValueError, match="same size"):
        polynomial_fit(np.arange(5.0), np.arange(6.0), 1)
