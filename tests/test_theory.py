"""Tests for sdn.theory: stationary laws, exact MFPT quadrature, escape asymptotics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from sdn.landscapes import double_well, quadratic_basin
from sdn.theory import (
    gaussian_stationary,
    kramers_escape_time,
    log_mean_first_passage_time,
    mean_first_passage_time,
    power_law_escape_time,
    power_law_stationary,
    walled_basin_escape_times,
)

ETA, B, SG = 0.1, 1.0, 1.0


# ---------------------------------------------------------------------------------------
# Stationary laws (docs/theory.md §3)
# ---------------------------------------------------------------------------------------


def test_student_t_parameters_match_science_formulas():
    law = power_law_stationary(1.0, 0.1, 1, 1.0, 2.0)
    nu = 1 + 2 * 1 * 1.0 / (0.1 * 2.0)
    assert float(law.df) == pytest.approx(nu)
    assert float(law.scale) == pytest.approx(np.sqrt(1.0 / (2.0 * nu)))


@pytest.mark.parametrize("sigma_h", [0.5, 2.0, 20.0])
def test_student_t_density_is_stationary_for_fokker_planck(sigma_h):
    # Zero probability flux J = −h x p − d/dx (D p) is the stationary Fokker–Planck
    # equation in 1-D with natural boundaries; checked by autodiff on a grid.
    _assert_zero_flux(1.3, ETA, B, sigma_h)


def _assert_zero_flux(h, eta, b, sigma_h):
    """The power-law Student-t has zero Fokker–Planck flux with `D = (η/2b)(σ_g + σ_H x²)`."""
    law = power_law_stationary(h, eta, b, SG, sigma_h)

    def diffusion(x):
        return 0.5 * eta / b * (SG + sigma_h * x * x)

    dp = jax.vmap(jax.grad(lambda x: diffusion(x) * law.pdf(x)))
    x = jnp.linspace(-3.0, 3.0, 61)
    flux = -h * x * law.pdf(x) - dp(x)
    assert float(jnp.max(jnp.abs(flux))) < 1e-6 * float(jnp.max(h * jnp.abs(x) * law.pdf(x)))
    return law


def test_gaussian_density_is_stationary_for_constant_noise():
    h = 2.0
    law = gaussian_stationary(h, ETA, B, SG)
    d = 0.5 * ETA * SG / B
    dp = jax.vmap(jax.grad(law.pdf))
    x = jnp.linspace(-1.0, 1.0, 41)
    flux = -h * x * law.pdf(x) - d * dp(x)
    assert float(jnp.max(jnp.abs(flux))) < 1e-5
    assert float(law.variance) == pytest.approx(ETA * SG / (2 * B * h))


def test_student_t_functions_match_scipy_and_broadcast():
    h = jnp.array([0.5, 1.0, 4.0])
    law = power_law_stationary(h, ETA, B, SG, jnp.array([[1.0], [3.0]]))
    assert law.df.shape == (2, 3) and law.scale.shape == (2, 3)
    x = 0.7
    df, sc = np.asarray(law.df), np.asarray(law.scale)
    np.testing.assert_allclose(law.pdf(x), stats.t.pdf(x, df, scale=sc), rtol=1e-5)
    np.testing.assert_allclose(law.logpdf(x), stats.t.logpdf(x, df, scale=sc), rtol=1e-5)
    np.testing.assert_allclose(law.cdf(x), stats.t.cdf(x, df, scale=sc), rtol=1e-5)
    np.testing.assert_allclose(law.cdf(-x), stats.t.cdf(-x, df, scale=sc), rtol=1e-5)
    np.testing.assert_allclose(law.sf(3 * x), stats.t.sf(3 * x, df, scale=sc), rtol=1e-4)
    q = law.ppf(0.99)
    np.testing.assert_allclose(law.cdf(q), 0.99, rtol=1e-5)
    # jittable pdf/cdf: the law is a pytree
    np.testing.assert_allclose(jax.jit(lambda lw: lw.cdf(x))(law), law.cdf(x), rtol=1e-6)


def test_student_t_pdf_integrates_to_one():
    law = power_law_stationary(1.0, 0.1, 1, 1.0, 2.0)
    total = integrate.quad(lambda v: float(law.pdf(v)), -np.inf, np.inf)[0]
    assert total == pytest.approx(1.0, rel=1e-5)


def test_moments_that_do_not_exist_are_reported():
    # ν = 1 + 2bh/(ησ_H): σ_H = 20 gives ν = 2 (no variance), σ_H = 10 gives ν = 3.
    law = power_law_stationary(1.0, 0.1, 1, 1.0, jnp.array([20.0, 10.0, 1.0]))
    np.testing.assert_allclose(law.df, [2.0, 3.0, 21.0], rtol=1e-6)
    assert np.isinf(law.variance[0])
    df, sc = np.asarray(law.df, float), np.asarray(law.scale, float)
    np.testing.assert_allclose(law.variance[1:], stats.t.var(df[1:], scale=sc[1:]), rtol=1e-5)
    assert law.moment_exists(2).tolist() == [False, True, True]
    assert law.moment_exists(3).tolist() == [False, False, True]
    assert bool(gaussian_stationary(1.0, 0.1, 1, 1.0).moment_exists(10))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(curvature=0.0), "curvature"),
        (dict(sigma_h=-1.0), "sigma_h"),
        (dict(learning_rate=0.0), "learning_rate"),
    ],
)
def test_power_law_stationary_rejects_bad_input(kwargs, name):
    args = dict(curvature=1.0, learning_rate=0.1, batch_size=1, sigma_g=1.0, sigma_h=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        power_law_stationary(**args)


# ---------------------------------------------------------------------------------------
# Exact MFPT (docs/theory.md §4)
# ---------------------------------------------------------------------------------------


def _scipy_mfpt(mu, sig2, x0, a, c, reflect_lo):
    """Nested scipy.integrate.quad of the same formulas: the independent reference."""

    def phi(y):
        return -integrate.quad(lambda u: 2 * mu(u) / sig2(u), a, y, epsabs=0, epsrel=1e-12)[0]

    def m_integral(lo, hi, weight):
        return integrate.quad(
            lambda z: 2 / sig2(z) * np.exp(-phi(z)) * weight(z), lo, hi, epsabs=0, epsrel=1e-11
        )[0]

    if reflect_lo:
        return integrate.quad(
            lambda y: np.exp(phi(y)) * m_integral(a, y, lambda z: 1.0), x0, c, epsrel=1e-10
        )[0]

    def big_s(y):
        return integrate.quad(lambda u: np.exp(phi(u)), a, y, epsabs=0, epsrel=1e-12)[0]

    total, sx = big_s(c), big_s(x0)
    u = sx / total
    right = m_integral(x0, c, lambda z: total - big_s(z))
    left = m_integral(a, x0, big_s)
    return u * right + (1 - u) * left


CASES = [
    # (name, drift, diffusion_sq, x0, lo, hi, reflect_lo)
    ("pld_two_sided", lambda x: -x, lambda x: 0.1 * (1 + 2 * x * x), 0.3, -1.0, 1.0, False),
    ("pld_reflect", lambda x: -x, lambda x: 0.1 * (1 + 2 * x * x), 0.3, 0.0, 1.0, True),
    ("langevin_off_centre", lambda x: -2 * x + 0.3, lambda x: 0.2 + 0 * x, -0.4, -1.0, 0.8, False),
    ("cubic_drift", lambda x: x - x**3, lambda x: 0.3 * (1 + 0.5 * x * x), -1.0, -2.5, 0.5, True),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_mfpt_matches_nested_scipy_quadrature(case):
    _, mu, sig2, x0, lo, hi, reflect = case
    ref = _scipy_mfpt(mu, sig2, x0, lo, hi, reflect)
    with jax.enable_x64(True):
        got = float(mean_first_passage_time(mu, sig2, x0, lo, hi, reflect))
    assert got == pytest.approx(ref, rel=1e-4)
    # default float32 is good to a few 1e-6 on these (the rtol check guards 1e-4)
    got32 = float(mean_first_passage_time(mu, sig2, x0, lo, hi, reflect))
    assert got32 == pytest.approx(ref, rel=1e-4)


def test_mfpt_brownian_closed_forms():
    sig2 = 0.5
    x0 = jnp.array(0.3)
    two = mean_first_passage_time(lambda x: 0 * x, lambda x: sig2 + 0 * x, x0, 0.0, 1.0)
    refl = mean_first_passage_time(lambda x: 0 * x, lambda x: sig2 + 0 * x, x0, 0.0, 1.0, True)
    assert float(two) == pytest.approx(0.3 * 0.7 / sig2, rel=1e-5)
    assert float(refl) == pytest.approx((1 - 0.3**2) / sig2, rel=1e-5)
    # start on an end: zero time at the absorbing end
    assert float(mean_first_passage_time(lambda x: 0 * x, lambda x: 1 + 0 * x, 1.0, 0, 1)) == 0.0


def test_mfpt_science_numbers():
    # docs/theory.md §4: η=0.1, b=1, σ_g=1, σ_H=2, h=1, walls ±1 absorbing, start 0.
    # Nested scipy quad gives 192.3606 (PLD) and 6545.765 (constant noise).
    def pld(x):
        return ETA / B * (SG + 2.0 * x * x)

    t_pld = float(mean_first_passage_time(lambda x: -x, pld, 0.0, -1.0, 1.0))
    t_lan = float(mean_first_passage_time(lambda x: -x, lambda x: ETA / B * SG + 0 * x, 0, -1, 1))
    assert t_pld == pytest.approx(192.3606, rel=1e-5)
    assert t_lan == pytest.approx(6545.765, rel=1e-5)
    # by symmetry, reflecting at the minimum gives the same
    t_refl = float(mean_first_passage_time(lambda x: -x, pld, 0.0, 0.0, 1.0, True))
    assert t_refl == pytest.approx(t_pld, rel=1e-5)


def test_mfpt_vmaps_over_1000_parameter_sets_in_one_jitted_call():
    hs = jnp.linspace(0.25, 16.0, 1000)

    def one(h):
        return mean_first_passage_time(
            lambda x: -h * x, lambda x: ETA / B * (SG + h * h * x * x), 0.0, -1.0, 1.0
        )

    out = jax.jit(jax.vmap(one))(hs)
    assert out.shape == (1000,) and bool(jnp.all(jnp.isfinite(out)))
    for i in [0, 437, 999]:
        assert float(out[i]) == pytest.approx(float(one(hs[i])), rel=1e-5)


def test_mfpt_large_barriers_do_not_overflow_in_float32():
    # Constant noise D on (0, 1), reflecting at 0: log s(1) = 1/(2D) = 250, far beyond
    # float32's exp range (88); log T = 247.12 (float64: 247.120499, float32 within 1e-4).
    for d, n_grid in [(0.002, 4097)]:
        kw = dict(n_grid=n_grid, rtol=1e-4)

        def sig2(x, d=d):
            return 2 * d + 0 * x

        log_t = log_mean_first_passage_time(lambda x: -x, sig2, 0.0, 0.0, 1.0, True, **kw)
        with jax.enable_x64(True):
            ref = log_mean_first_passage_time(lambda x: -x, sig2, 0.0, 0.0, 1.0, True, **kw)
            # Kramers at the wall with its first correction, 1 + D/(2ΔL) (ΔL = 1/2)
            kr = float(kramers_escape_time(quadratic_basin(1.0, 1.0), 2 * d, 1.0, 1.0, log=True))
        assert np.isfinite(float(log_t))
        assert float(log_t) == pytest.approx(float(ref), abs=1e-4)
        assert float(ref) - kr == pytest.approx(np.log1p(d), abs=3 * d**2 / 0.25)


@pytest.mark.parametrize(
    "args, match",
    [
        (dict(x0=0.0, lo=1.0, hi=1.0), "lo < hi"),
        (dict(x0=0.0, lo=2.0, hi=1.0), "lo < hi"),
        (dict(x0=1.5, lo=-1.0, hi=1.0), "x0"),
        (dict(x0=0.0, lo=-1.0, hi=1.0, n_grid=9), "n_grid"),
    ],
)
def test_mfpt_rejects_bad_intervals(args, match):
    with pytest.raises(ValueError, match=match):
        mean_first_passage_time(lambda x: -x, lambda x: 0.1 + 0 * x, **args)


def test_mfpt_rejects_too_coarse_grid_and_bad_diffusion():
    # log s rises by 1/(2D) = 250 over (0, 1): 33 nodes cannot resolve the wall layer.
    with pytest.raises(ValueError, match="n_grid=33 is too coarse"):
        mean_first_passage_time(
            lambda x: -x, lambda x: 0.004 + 0 * x, 0.0, 0.0, 1.0, True, n_grid=33
        )
    with pytest.raises(ValueError, match="diffusion_sq"):
        mean_first_passage_time(lambda x: -x, lambda x: x, 0.5, -1.0, 1.0)


@pytest.mark.parametrize("reflect_lo", [False, True])
def test_mfpt_gradient_matches_finite_differences(reflect_lo):
    # Users fit drift parameters to measured escape times: d T / d a by autodiff through
    # the padded coarse levels must equal the central difference (h = 1e-4, error O(h²)).
    with jax.enable_x64(True):

        def t(a, s):
            # a coarse grid keeps it quick: both sides see the same discretisation
            return mean_first_passage_time(
                lambda x: -a * x**3,
                lambda x: s * (1.0 + 0.5 * x * x),
                0.3,
                -1.0,
                1.0,
                reflect_lo,
                n_grid=129,
                rtol=1e-2,
            )

        a, s, h = 1.5, 0.7, 1e-4
        grad = jax.grad(t, argnums=(0, 1))(a, s)
        fd_a = (t(a + h, s) - t(a - h, s)) / (2 * h)
        fd_s = (t(a, s + h) - t(a, s - h)) / (2 * h)
        assert np.all(np.isfinite(np.asarray(grad)))
        assert float(grad[0]) == pytest.approx(float(fd_a), rel=1e-6)
        assert float(grad[1]) == pytest.approx(float(fd_s), rel=1e-6)


def test_mfpt_failed_richardson_check_says_so():
    # A drift oscillating faster than 33 nodes resolve: the grid halved overshoots the fine
    # estimate more than 4 times, where the h² error model behind Richardson fails.
    def drift(x):
        return 800 * jnp.cos(80 * x)

    with pytest.raises(ValueError, match="Richardson ratio check failed"):
        mean_first_passage_time(drift, lambda x: 1 + 0 * x, 0.9, 0.0, 1.0, n_grid=33)
    # the same drift at a start where only the twice-halved grid fails: no silent result
    with pytest.raises(ValueError, match="Richardson ratio check failed"):
        mean_first_passage_time(drift, lambda x: 1 + 0 * x, 0.5, 0.0, 1.0, n_grid=33)
    with pytest.raises(ValueError, match="drift must be finite.*x=0.5"):
        mean_first_passage_time(
            lambda x: jnp.where(x > 0.5, jnp.nan, 0 * x), lambda x: 1 + 0 * x, 0.2, 0.0, 1.0
        )


# ---------------------------------------------------------------------------------------
# Batch size b > 1 (docs/theory.md §3–4: D = (η/2b) C): every formula against quadrature
# ---------------------------------------------------------------------------------------

B_BIG = 8.0


def test_stationary_laws_with_batch_size_solve_fokker_planck():
    # η = 0.8 and b = 8 give D = 0.05 (σ_g + σ_H x²): the same D as η = 0.1, b = 1, so a
    # formula that drops b (or multiplies by it) misses by a factor 8 in ν − 1 or variance.
    h, eta = 1.3, 0.8
    law = _assert_zero_flux(h, eta, B_BIG, 2.0)
    # the variance by quadrature of the density itself
    var = integrate.quad(lambda y: y * y * float(law.pdf(y)), -np.inf, np.inf)[0]
    assert float(law.variance) == pytest.approx(var, rel=1e-4)

    g = gaussian_stationary(h, eta, B_BIG, SG)
    d = 0.5 * eta * SG / B_BIG
    var = integrate.quad(lambda y: y * y * np.exp(-h * y * y / (2 * d)), -np.inf, np.inf)[0]
    var /= integrate.quad(lambda y: np.exp(-h * y * y / (2 * d)), -np.inf, np.inf)[0]
    assert float(g.variance) == pytest.approx(var, rel=1e-6)


def _basin_log_t(h, wall, eta, b, sigma_h):
    return float(
        log_mean_first_passage_time(
            lambda x: -h * x,
            lambda x: eta / b * (SG + sigma_h * x * x),
            0.0,
            0.0,
            wall,
            True,
            n_grid=4097,
        )
    )


def test_escape_asymptotics_with_batch_size_match_quadrature():
    # Walled basin, η = 0.8, b = 8: D = 0.05, ΔL/D = 20; Kramers' error ≈ D/2ΔL = 2.5%.
    # Power law with β = b h/(η σ_H) = 20, q = 16: error below 0.03/√β (the b = 1 test's
    # bound). A misplaced b changes log T by ≥ ln 8 or ΔL/D by 8x: far outside both.
    eta, h, wall = 0.8, 2.0, 1.0
    d = 0.5 * eta * SG / B_BIG
    basin = quadratic_basin(h, wall)
    exact = _basin_log_t(h, wall, eta, B_BIG, 0.0)
    approx = float(kramers_escape_time(basin, eta, B_BIG, SG, log=True))
    assert np.expm1(exact - approx) == pytest.approx(d / (2 * float(basin.barrier)), rel=0.35)

    beta, q = 20.0, 16.0
    sh = B_BIG * h / (eta * beta)
    basin = quadratic_basin(h, np.sqrt(q * SG / sh))
    exact = _basin_log_t(h, float(basin.wall), eta, B_BIG, sh)
    approx = float(power_law_escape_time(basin, eta, B_BIG, SG, sh, log=True))
    assert abs(np.expm1(approx - exact)) < 0.03 / beta**0.5

    # double well, Kramers and power law, against the quadrature with σ² = (η/b) C
    well = double_well(2.0, 1.0, 20 * d)
    a = float(well.minimum)
    for sigma_h, tol in [(0.0, 0.1), (0.4, 0.1)]:
        exact = float(
            log_mean_first_passage_time(
                lambda x, sigma_h=sigma_h: -well.grad(x),
                lambda x, sigma_h=sigma_h: eta / B_BIG * (SG + sigma_h * (x - a) ** 2),
                a,
                a - 2.0,
                well.other_minimum,
                True,
                n_grid=4097,
                rtol=1e-3,
            )
        )
        if sigma_h == 0.0:
            approx = float(kramers_escape_time(well, eta, B_BIG, SG, log=True))
        else:
            approx = float(power_law_escape_time(well, eta, B_BIG, SG, sigma_h, log=True))
        # O(D/ΔL) = 5% (b = 1 test measured coefficient ≈ 0.4 at ΔL/D = 20 → 2%)
        assert abs(np.expm1(approx - exact)) < tol, (sigma_h, approx, exact)


def test_walled_basin_escape_times_with_batch_size_match_quadrature():
    h, dl, eta, var_u = 1.0, 0.5, 0.8, 2.0
    t = walled_basin_escape_times(h, dl, eta, B_BIG, SG, var_u)
    wall = np.sqrt(2 * dl / h)
    pld = _basin_log_t(h, wall, eta, B_BIG, h * h * var_u)
    lan = _basin_log_t(h, wall, eta, B_BIG, 0.0)
    assert np.log(float(t.power_law)) == pytest.approx(pld, abs=2e-4)
    assert np.log(float(t.langevin)) == pytest.approx(lan, abs=2e-4)


# ---------------------------------------------------------------------------------------
# Escape asymptotics (docs/theory.md §4)
# ---------------------------------------------------------------------------------------


def _exact_basin_log_t(h, wall, sigma_h):
    def sig2(x):
        return ETA / B * (SG + sigma_h * x * x)

    return float(
        log_mean_first_passage_time(lambda x: -h * x, sig2, 0.0, 0.0, wall, True, n_grid=4097)
    )


def test_kramers_walled_basin_error_shrinks_like_d_over_barrier():
    d = 0.5 * ETA * SG / B
    errors = []
    for barrier_over_d in [5.0, 10.0, 20.0, 40.0]:
        h = 2.0
        wall = np.sqrt(2 * barrier_over_d * d / h)
        exact = _exact_basin_log_t(h, wall, 0.0)
        approx = float(kramers_escape_time(quadratic_basin(h, wall), ETA, B, SG, log=True))
        err = np.expm1(exact - approx)
        errors.append(err)
        # Laplace at the wall: relative error = D/(2ΔL) + O((D/ΔL)²)
        assert err == pytest.approx(0.5 / barrier_over_d, rel=0.35)
    assert np.all(np.diff(np.abs(errors)) < 0)


def test_kramers_double_well_error_shrinks_with_barrier():
    d = 0.5 * ETA * SG / B
    errors = []
    for barrier_over_d in [5.0, 10.0, 20.0, 40.0]:
        well = double_well(2.0, 1.0, barrier_over_d * d)
        lo = float(well.minimum) - 2.0
        exact = float(
            log_mean_first_passage_time(
                lambda x, well=well: -well.grad(x),
                lambda x: 2 * d + 0 * x,
                well.minimum,
                lo,
                well.other_minimum,
                True,
                n_grid=4097,
            )
        )
        approx = float(kramers_escape_time(well, ETA, B, SG, log=True))
        errors.append(abs(np.expm1(approx - exact)))
    # measured: 0.094, 0.040, 0.019, 0.009 — O(D/ΔL), coefficient ≈ 0.4
    assert np.all(np.diff(errors) < 0)
    assert all(e * r < 0.5 for e, r in zip(errors, [5.0, 10.0, 20.0, 40.0]))


@pytest.mark.parametrize("beta", [2.0, 5.0, 20.0, 80.0])
def test_power_law_walled_basin_asymptotics(beta):
    # β = b h/(η σ_H) and q = κ x_b² = 2κΔL/h set the regime; error shrinks in both.
    h = 1.0
    sigma_h = B * h / (ETA * beta)
    errors = []
    for q in [4.0, 16.0, 64.0]:
        wall = np.sqrt(q * SG / sigma_h)
        exact = _exact_basin_log_t(h, wall, sigma_h)
        approx = float(
            power_law_escape_time(quadratic_basin(h, wall), ETA, B, SG, sigma_h, log=True)
        )
        errors.append(abs(np.expm1(approx - exact)))
    # measured at β = 2: 1.4%, 0.7%, 0.2%; β = 20: 4e-4, 8e-5, 2e-5; at β = 80 the float32
    # quadrature (≈ 3e-5 at log T ≈ 300) is the floor
    if beta <= 20:
        assert np.all(np.diff(errors) < 0)
    assert max(errors) < 0.03 / beta**0.5 + 1e-4


def test_power_law_double_well_asymptotics():
    # measured relative errors (β = b h_a/(η σ_H)): σ_H=0.1 (β=200): 5.0%, 2.7%, 1.7% for
    # ΔL = 0.5, 1, 2; at ΔL = 2: 6.6% (β=40), 1.7% (β=200), 1.1% (β=1000)
    def rel_error(sigma_h, barrier):
        well = double_well(2.0, 1.0, barrier)
        a = well.minimum

        def sig2(x):
            return ETA / B * (SG + sigma_h * (x - a) ** 2)

        exact = log_mean_first_passage_time(
            lambda x: -well.grad(x),
            sig2,
            a,
            a - 3.0,
            well.other_minimum,
            True,
            n_grid=4097,
            rtol=1e-3,
        )
        approx = power_law_escape_time(well, ETA, B, SG, sigma_h, log=True)
        return abs(float(jnp.expm1(approx - exact)))

    by_barrier = [rel_error(0.1, dl) for dl in [0.5, 1.0, 2.0]]
    by_beta = [rel_error(sh, 2.0) for sh in [0.5, 0.1, 0.02]]
    assert np.all(np.diff(by_barrier) < 0) and by_barrier[-1] < 0.025
    assert np.all(np.diff(by_beta) < 0) and by_beta[-1] < 0.015


def test_power_law_escape_reduces_to_kramers_as_sigma_h_vanishes():
    # Double well: exactly Kramers. Walled basin: Kramers times 1/(1 − D/2ΔL), its first
    # Laplace correction (here D/2ΔL = 0.05).
    with jax.enable_x64(True):
        well = double_well(2.0, 1.0, 0.5)
        pld = power_law_escape_time(well, ETA, B, SG, 1e-7, log=True)
        assert float(pld) == pytest.approx(
            float(kramers_escape_time(well, ETA, B, SG, log=True)), abs=1e-4
        )
        basin = quadratic_basin(1.0, 1.0)
        pld = power_law_escape_time(basin, ETA, B, SG, 1e-7, log=True)
        kr = kramers_escape_time(basin, ETA, B, SG, log=True)
        assert float(pld - kr) == pytest.approx(-np.log1p(-0.05), abs=1e-4)


def test_escape_asymptotics_reject_other_landscapes():
    from sdn.landscapes import sharp_flat_2d

    with pytest.raises(TypeError, match="SharpFlat2D"):
        kramers_escape_time(sharp_flat_2d(), ETA, B, SG)
    with pytest.raises(ValueError, match="sigma_h"):
        power_law_escape_time(quadratic_basin(1.0, 1.0), ETA, B, SG, 0.0)


# ---------------------------------------------------------------------------------------
# Sharp versus flat (docs/theory.md §4)
# ---------------------------------------------------------------------------------------


def test_sharp_versus_flat_walled_basin_quadrature():
    # docs/theory.md §4: η=0.1, b=1, σ_g=1, Var u=1, ΔL=1; h 0.25 → 16: log T_PLD 16.4 → 0.5 and
    # log T_Langevin 19.8 → 15.6. Nested scipy quad (same setting) gives
    # PLD 16.4034, 13.6274, 10.4335, 7.2550, 4.4836, 2.2587, 0.4953
    # Langevin 19.7944, 19.1013, 18.4082, 17.7150, 17.0219, 16.3287, 15.6356.
    hs = 2.0 ** jnp.arange(-2, 5)
    t = walled_basin_escape_times(hs, 1.0, ETA, B, SG, 1.0)
    log_pld = np.log(np.asarray(t.power_law))
    log_lan = np.log(np.asarray(t.langevin))
    np.testing.assert_allclose(
        log_pld, [16.4034, 13.6274, 10.4335, 7.2550, 4.4836, 2.2587, 0.4953], atol=2e-4
    )
    np.testing.assert_allclose(
        log_lan, [19.7944, 19.1013, 18.4082, 17.7150, 17.0219, 16.3287, 15.6356], atol=2e-4
    )
    # Langevin: T ∝ 1/h exactly here (log T drops by ln 2 per doubling); PLD falls faster
    np.testing.assert_allclose(np.diff(log_lan), -np.log(2.0), atol=1e-4)
    assert np.all(np.diff(log_pld) < -1.5)
