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


# ---------------------------------------------------------------------------------------
# The rival escape laws (docs/theory.md §6.7)
# ---------------------------------------------------------------------------------------

_H = np.repeat([0.5, 1.0, 2.0, 4.0], 8)
_DL = np.tile(np.linspace(0.25, 2.0, 8), 4)
_LAW_KW = dict(lr=0.1, batch_size=1, sigma_g=1.0, sigma_h=_H**2)


def _walled_basin_times():
    from sdn.theory import walled_basin_escape_times

    t = walled_basin_escape_times(_H, _DL, 0.1, 1, 1.0, 1.0)
    return np.asarray(t.power_law, float), np.asarray(t.langevin, float)


def test_rank_escape_laws_recognises_power_law_and_langevin_quadrature():
    from sdn.stats import EscapeLaw, rank_escape_laws

    pld, lan = _walled_basin_times()
    r = rank_escape_laws(_DL, _H, pld, 0.01 * pld, alpha=1.5, **_LAW_KW)
    assert r.best is EscapeLaw.POWER_LAW
    assert abs(r.fits["power_law"].k - 1) < 0.02 and r.fits["power_law"].rms < 0.2
    assert r.fits["kramers"].rms > 1.0 and r.fits["levy"].rms > 1.0
    r = rank_escape_laws(_DL, _H, lan, 0.01 * lan, alpha=1.5, **_LAW_KW)
    assert r.best is EscapeLaw.KRAMERS
    kr = r.fits["kramers"]
    assert abs(kr.k - 1) < 0.05 and abs(kr.c + 1) < 0.1 and kr.rms < 0.15  # T ∝ 1/h
    assert r.fits["power_law"].rms > 1.0


def test_rank_escape_laws_undecided_within_the_noise_and_sigma_h_zero():
    from sdn.stats import EscapeLaw, rank_escape_laws

    pld, lan = _walled_basin_times()
    # Errors of 1000% in τ (se of log τ 10): every law fits within them.
    r = rank_escape_laws(_DL, _H, pld, 10.0 * pld, alpha=1.5, **_LAW_KW)
    assert r.best is EscapeLaw.UNDECIDED
    # σ_H = 0: the power law is Kramers' law, and the verdict says kramers.
    kw = dict(_LAW_KW, sigma_h=0.0)
    r = rank_escape_laws(_DL, _H, lan, 0.01 * lan, alpha=1.5, **kw)
    assert r.best is EscapeLaw.KRAMERS and "power_law" not in r.fits
    with pytest.raises(ValueError, match="sem"):
        rank_escape_laws(_DL, _H, lan, -lan, **_LAW_KW)


def test_rank_escape_laws_recognises_levy_simulation():
    # Drift-free α-stable noise on the walled basins' intervals (−r, r), r = sqrt(2ΔL/h),
    # 400 paths each: the time follows the width (Getoor: τ ∝ r^α), and the Lévy form wins.
    import jax.numpy as jnp

    import sdn
    from sdn import SDE, domains, noise
    from sdn.stats import EscapeLaw, rank_escape_laws

    h, dl = np.repeat([0.5, 1.0, 2.0, 4.0], 4), np.tile([0.25, 0.5, 1.0, 2.0], 4)
    sde = SDE(lambda w: 0.0 * w, noise.alpha_stable(1.5, 1.0), 1.0)
    means, sems = [], []
    for hi, di in zip(h, dl):
        r = float(np.sqrt(2 * di / hi))
        res = sdn.first_exit_time(
            0,
            sde,
            jnp.float32(0.0),
            domains.interval(-r, r),
            dt=2e-3 * r**1.5,
            n_steps=20_000,
            n_paths=400,
        )
        s = res.summary()
        means.append(s["mean_time"])
        sems.append(s["sem"])
    kw = dict(lr=0.1, batch_size=1, sigma_g=1.0, sigma_h=h**2)
    ranking = rank_escape_laws(dl, h, np.array(means), np.array(sems), alpha=1.5, **kw)
    assert ranking.best is EscapeLaw.LEVY, ranking
    assert abs(ranking.fits["levy"].k - 1) < 4 * ranking.fits["levy"].k_se + 0.05
