"""The engine: noise models, solvers, simulate and first_exit_time (issue 2).

Statistical tolerances are derived from the Monte Carlo standard error (SE) of the
quantity tested; `Z = 4` standard errors gives a false-failure rate of about 6e-5 per
check, and every seed is fixed, so a failure is reproducible.
"""

from __future__ import annotations

import math
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from children import npz_on_one_and_four_devices
from scipy import integrate, stats

import sdn
from sdn import domains, noise, solvers
from sdn.engine.lanes import lane_count

Z = 4.0


# ----------------------------------------------------------------------------- helpers


def exact_mfpt_symmetric(mu, sigma2, x_b):
    """MFPT from 0 to ±x_b of a symmetric 1-D diffusion, by nested scipy quadrature.

    By symmetry it equals the problem with a reflecting wall at 0 and an absorbing one
    at x_b (docs/theory.md §4): T = ∫_0^{x_b} s(y) ∫_0^y m(z) dz dy.
    """

    def psi(y):  # ∫_0^y −2μ/σ²
        return integrate.quad(lambda u: -2 * mu(u) / sigma2(u), 0, y, epsabs=1e-12)[0]

    def inner(y):
        return integrate.quad(
            lambda z: 2 / sigma2(z) * math.exp(psi(y) - psi(z)), 0, y, epsabs=1e-12
        )[0]

    return integrate.quad(inner, 0, x_b, epsabs=1e-10, limit=200)[0]


def pld_sde(h=1.0, eta=0.1, b=1, sigma_g=1.0, sigma_h=2.0):
    return sdn.sgd_sde(lambda w: h * w, noise.power_law(sigma_g, sigma_h), eta, b)


# ----------------------------------------------------------------------------- noise models


def test_power_law_variance_formula():
    w = jnp.linspace(-2, 2, 9)
    model = noise.power_law(1.5, 0.7, center=0.3, sigma_gh=0.4)
    x = w - 0.3
    np.testing.assert_allclose(model.variance(w), 1.5 + 2 * 0.4 * x + 0.7 * x**2, rtol=1e-6)
    np.testing.assert_allclose(model.covariance(w), np.diag(model.variance(w)), rtol=1e-6)


def test_full_noise_increments_have_the_covariance():
    cov = jnp.array([[2.0, 0.8], [0.8, 1.0]])
    model = noise.full(cov)
    np.testing.assert_allclose(model.factor @ model.factor, cov, atol=1e-5)
    n, dt = 40_000, 0.5
    dw = model.block(jax.random.key(1), jnp.zeros(2), dt, n)
    x = jax.vmap(lambda d: model.diffusion(jnp.zeros(2), d))(dw)
    emp = np.cov(np.asarray(x).T)
    # SE of a sample covariance entry: sqrt((Σ_ii Σ_jj + Σ_ij²) / n) for Gaussians.
    c = np.asarray(cov) * dt
    se = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c**2) / n)
    assert np.all(np.abs(emp - c) < Z * se)


def test_alpha_stable_increments_follow_the_stable_law():
    alpha = 1.5
    model = noise.alpha_stable(alpha, c=1.0)
    x = np.asarray(model.block(jax.random.key(2), jnp.zeros(()), 1.0, 4000))
    # Characteristic function exp(−|t|^α): scipy's levy_stable with beta=0, scale 1.
    ks = stats.kstest(x, stats.levy_stable(alpha, 0.0).cdf)
    assert ks.pvalue > 1e-3
    # and dt^(1/α) self-similarity
    y = np.asarray(model.block(jax.random.key(2), jnp.zeros(()), 0.01, 4000))
    np.testing.assert_allclose(y, x * 0.01 ** (1 / alpha), rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("replace", [True, False])
def test_minibatch_noise_has_covariance_c_over_b(replace):
    k1, k2 = jax.random.split(jax.random.key(3))
    n, b = 20, 5
    h = jax.random.gamma(k1, 2.0, (n,)) / 2.0
    c = jax.random.normal(k2, (n,))
    data = (h, c)
    model = noise.minibatch(lambda w, d: d[0] * (w - d[1]), data, b, replace=replace)
    w = jnp.array(0.4)
    draws = model.block(jax.random.key(4), w, 1.0, 20_000)
    full_grad = jnp.mean(h * (w - c))
    xi = jax.vmap(lambda d: model.batch_gradient(w, d))(draws) - full_grad
    per_sample = np.asarray(h * (w - c))
    factor = 1.0 if replace else (n - b) / (n - 1)
    target = per_sample.var() / b * factor
    np.testing.assert_allclose(model.variance(w) / b, target, rtol=1e-5)
    xi = np.asarray(xi, dtype=np.float64)
    # SE of a sample variance: sqrt((m4 − σ⁴)/N), m4 estimated from the draws.
    se = math.sqrt((np.mean(xi**4) - xi.var() ** 2) / xi.size)
    assert abs(xi.var() - target) < Z * se
    assert abs(xi.mean()) < Z * math.sqrt(target / xi.size)


# ----------------------------------------------------------------------------- solvers


def _gbm_errors(solver, mu=0.5, sig=0.8, n_paths=2000, fine=2**10, levels=(3, 4, 5, 6, 7)):
    """Strong errors at T=1 on GBM, all step sizes driven by the same Brownian paths."""
    sde = sdn.SDE(lambda w: mu * w, noise.power_law(0.0, sig**2), 1.0)
    dw_fine = jax.random.normal(jax.random.key(5), (n_paths, fine)) / math.sqrt(fine)
    exact = jnp.exp((mu - sig**2 / 2) + sig * dw_fine.sum(axis=1))
    errs = []
    for level in levels:
        n = 2**level
        dw = dw_fine.reshape(n_paths, n, fine // n).sum(axis=2)
        dt = 1.0 / n

        def path(incs, dt=dt):
            return jax.lax.scan(lambda w, d: (solver(sde, w, 0.0, dt, d), None), 1.0, incs)[0]

        errs.append(jnp.abs(jax.vmap(path)(dw) - exact))
    return np.array([2.0**-lv for lv in levels]), np.stack([np.asarray(e) for e in errs])


@pytest.mark.parametrize(
    "solver, order", [(solvers.euler_maruyama, 0.5), (solvers.milstein, 1.0), (solvers.heun, 1.0)]
)
def test_strong_order_on_geometric_brownian_motion(solver, order):
    dts, errs = _gbm_errors(solver)
    slope = np.polyfit(np.log(dts), np.log(errs.mean(axis=1)), 1)[0]
    # Bootstrap the slope over paths for its Monte Carlo SE; the asymptotic order is
    # approached only as dt → 0, so 0.15 is allowed for pre-asymptotic curvature.
    rng = np.random.default_rng(0)
    boots = [
        np.polyfit(
            np.log(dts),
            np.log(errs[:, rng.integers(0, errs.shape[1], errs.shape[1])].mean(axis=1)),
            1,
        )[0]
        for _ in range(200)
    ]
    assert abs(slope - order) < 0.15 + Z * np.std(boots), (slope, np.std(boots))


def test_heun_without_ito_correction_would_be_wrong():
    # GBM's Stratonovich solution differs from the Itô one; our Heun must give Itô's mean.
    mu, sig = 0.5, 0.8
    sde = sdn.SDE(lambda w: mu * w, noise.power_law(0.0, sig**2), 1.0)
    x = sdn.simulate(6, sde, 1.0, dt=0.01, n_steps=100, n_paths=20_000, solver="heun")
    x = np.asarray(x, dtype=np.float64)
    se = x.std() / math.sqrt(x.size)
    assert abs(x.mean() - math.exp(mu)) < Z * se + 0.01  # + O(dt) weak bias
    assert abs(x.mean() - math.exp(mu + sig**2 / 2)) > 10 * se  # Stratonovich's mean


def test_solver_steps_match_their_formulas():
    sde = sdn.SDE(lambda w: -2.0 * w, noise.power_law(1.0, 3.0), 0.5)
    w, dt, dw = jnp.array(0.7), 0.1, jnp.array(0.3)
    g = math.sqrt(0.5 * (1 + 3 * 0.49))
    dg = 0.5 * 3 * 2 * 0.7 / (2 * g)  # d/dw sqrt(0.5(1+3w²)) = 0.5·3·2w / (2g)
    em = 0.7 - 2 * 0.7 * dt + g * 0.3
    np.testing.assert_allclose(solvers.euler_maruyama(sde, w, 0.0, dt, dw), em, rtol=1e-6)
    mil = em + 0.5 * g * dg * (0.09 - dt)
    np.testing.assert_allclose(solvers.milstein(sde, w, 0.0, dt, dw), mil, rtol=1e-6)


# ----------------------------------------------------------------------------- simulate


def test_ornstein_uhlenbeck_mean_and_variance():
    theta, s, x0, dt, n = 1.5, 0.8, 2.0, 0.01, 100
    sde = sdn.SDE(lambda w: -theta * w, noise.isotropic(s), 1.0)
    x = np.asarray(sdn.simulate(7, sde, x0, dt=dt, n_steps=n, n_paths=40_000), np.float64)
    t = n * dt
    mean, var = x0 * math.exp(-theta * t), s / (2 * theta) * (1 - math.exp(-2 * theta * t))
    # Euler–Maruyama's own moments are known exactly; their O(dt) distance from the
    # continuous ones is the allowed bias.
    a = 1 - theta * dt
    em_mean, em_var = x0 * a**n, s * dt * (1 - a ** (2 * n)) / (1 - a**2)
    se_mean, se_var = math.sqrt(var / x.size), var * math.sqrt(2 / x.size)
    assert abs(x.mean() - mean) < Z * se_mean + abs(em_mean - mean)
    assert abs(x.var() - var) < Z * se_var + abs(em_var - var)
    assert abs(em_var - var) < 0.01 * var


@pytest.mark.slow
@pytest.mark.parametrize("sigma_h", [5.0, 8.0])
def test_power_law_stationary_law_is_student_t(sigma_h):
    eta, b, h, sigma_g = 0.1, 1, 1.0, 1.0
    nu = 1 + 2 * b * h / (eta * sigma_h)
    scale = math.sqrt(sigma_g / (sigma_h * nu))
    sde = pld_sde(h, eta, b, sigma_g, sigma_h)
    x = np.asarray(sdn.simulate(8, sde, 0.0, dt=0.005, n_steps=2000, n_paths=10_000))
    student = stats.kstest(x, stats.t(nu, scale=scale).cdf)
    assert student.pvalue > 1e-3, (nu, student)
    gauss_sd = scale * math.sqrt(nu / (nu - 2))
    gauss = stats.kstest(x, stats.norm(scale=gauss_sd).cdf)
    assert gauss.pvalue < 1e-6, gauss


def test_save_every_and_observe():
    sde = sdn.SDE(lambda w: -w, noise.isotropic(1.0), 1.0)
    tr = sdn.simulate_trajectory(
        9, sde, jnp.zeros(3), dt=0.1, n_steps=120, n_paths=4, save_every=10
    )
    assert tr.value.shape == (4, 13, 3) and tr.time.shape == (13,)
    np.testing.assert_allclose(tr.time[-1], 12.0, rtol=1e-5)
    final = sdn.simulate(9, sde, jnp.zeros(3), dt=0.1, n_steps=120, n_paths=4)
    np.testing.assert_array_equal(tr.value[:, -1], final)
    np.testing.assert_array_equal(tr.value[:, 0], 0.0)
    obs = sdn.simulate_trajectory(
        9, sde, jnp.zeros(3), dt=0.1, n_steps=120, n_paths=4, save_every=10, observe=jnp.sum
    )
    np.testing.assert_allclose(obs.value, tr.value.sum(-1), rtol=1e-5, atol=1e-6)


def test_float64_is_kept():
    with jax.enable_x64(True):
        sde = sdn.SDE(lambda w: -w, noise.isotropic(1.0), 1.0)
        x = sdn.simulate(0, sde, jnp.zeros(2, jnp.float64), dt=0.1, n_steps=10, n_paths=3)
        assert x.dtype == jnp.float64
    x = sdn.simulate(0, sde, jnp.zeros(2), dt=0.1, n_steps=10, n_paths=3)
    assert x.dtype == jnp.float32


def test_results_do_not_depend_on_chunk_size():
    sde = pld_sde()
    a = sdn.simulate(10, sde, 0.0, dt=0.01, n_steps=75, n_paths=1000)
    b = sdn.simulate(10, sde, 0.0, dt=0.01, n_steps=75, n_paths=1000, chunk_size=300)
    np.testing.assert_array_equal(a, b)
    dom = domains.interval(-0.5, 0.5)
    e1 = sdn.first_exit_time(11, sde, 0.0, dom, dt=0.01, n_steps=5000, n_paths=700)
    e2 = sdn.first_exit_time(11, sde, 0.0, dom, dt=0.01, n_steps=5000, n_paths=700, chunk_size=256)
    for x, y in zip(e1, e2):
        np.testing.assert_array_equal(x, y)


def test_jit_and_vmap_over_parameters_match_the_eager_driver():
    def final_mean(h):
        sde = sdn.sgd_sde(lambda w: h * w, noise.power_law(1.0, 2.0), 0.1, 1)
        return sdn.simulate(12, sde, 0.5, dt=0.01, n_steps=60, n_paths=64).mean()

    hs = jnp.array([0.5, 1.0, 2.0])
    vmapped = jax.jit(jax.vmap(final_mean))(hs)
    eager = jnp.array([final_mean(h) for h in [0.5, 1.0, 2.0]])
    np.testing.assert_allclose(vmapped, eager, rtol=1e-5, atol=1e-6)

    def mean_exit(h):
        sde = sdn.sgd_sde(lambda w: h * w, noise.power_law(1.0, 2.0), 0.1, 1)
        r = sdn.first_exit_time(
            13, sde, 0.0, domains.interval(-0.5, 0.5), dt=0.01, n_steps=3000, n_paths=32
        )
        return r.time

    traced = jax.jit(jax.vmap(mean_exit))(hs)
    eager = jnp.stack([mean_exit(h) for h in [0.5, 1.0, 2.0]])
    np.testing.assert_allclose(traced, eager, rtol=1e-6)


def test_sgd_through_the_driver_equals_a_hand_written_loop():
    k1, k2 = jax.random.split(jax.random.key(14))
    n, b, lr = 30, 4, 0.05
    h = 0.5 + jax.random.uniform(k1, (n,))
    c = jax.random.normal(k2, (n,))

    def sample_grad(w, d):
        return d[0] * (w - d[1])

    model = noise.minibatch(sample_grad, (h, c), b)
    sde = sdn.sgd_sde(lambda w: jnp.mean(h * (w - c)), model, lr, b)
    n_steps, key = 120, jax.random.key(15)
    out = sdn.simulate(key, sde, 1.0, dt=lr, n_steps=n_steps, n_paths=3, solver="sgd")

    for i in range(3):
        w = np.float32(1.0)
        path_key = jax.random.fold_in(key, i)
        for blk in range(math.ceil(n_steps / sdn.EngineConfig().block_steps)):
            idx = jax.random.randint(jax.random.fold_in(path_key, blk), (50, b), 0, n)
            for j in range(50):
                if blk * 50 + j >= n_steps:
                    break
                w = w - lr * np.mean(np.asarray(h)[idx[j]] * (w - np.asarray(c)[idx[j]]))
        np.testing.assert_allclose(out[i], w, rtol=1e-5)
    # Euler–Maruyama on the same minibatch model is the same process, up to rounding.
    em = sdn.simulate(key, sde, 1.0, dt=lr, n_steps=n_steps, n_paths=3)
    np.testing.assert_allclose(em, out, rtol=1e-4, atol=1e-5)


def test_same_results_on_one_and_four_devices(tmp_path):
    script = textwrap.dedent(
        """
        import sys, numpy as np, jax, sdn
        from sdn import noise, domains
        assert len(jax.devices()) == int(sys.argv[2])
        sde = sdn.sgd_sde(lambda w: w, noise.power_law(1.0, 2.0), 0.1, 1)
        x = sdn.simulate(3, sde, 0.0, dt=0.01, n_steps=60, n_paths=1001, chunk_size=512)
        e = sdn.first_exit_time(3, sde, 0.0, domains.interval(-0.5, 0.5), dt=0.01,
                                n_steps=4000, n_paths=301)
        refill = sdn.EngineConfig(refill_above=8, smallest_bucket=4)  # refill lanes
        r = sdn.first_exit_time(3, sde, 0.0, domains.interval(-0.5, 0.5), dt=0.01,
                                n_steps=4000, n_paths=301, config=refill)
        np.testing.assert_array_equal(r.time, e.time)
        np.savez(sys.argv[1], x=x, t=e.time, s=e.status, r=r.steps)
        """
    )
    results = npz_on_one_and_four_devices(script, tmp_path)
    for name in ("x", "t", "s", "r"):
        np.testing.assert_array_equal(results[0][name], results[1][name])


def test_refilled_lanes_give_every_path_its_own_numbers():
    # Lanes that take new paths as theirs exit must not change any path's numbers: compare
    # against one batch of all paths (no refill), with shared and with per-path parameters.
    sde, dom = pld_sde(), domains.interval(-0.5, 0.5)
    kw = dict(dt=0.01, n_steps=3000)
    whole = sdn.first_exit_time(11, sde, 0.0, dom, n_paths=700, **kw)

    def build(h):
        return sdn.sgd_sde(jax.tree_util.Partial(lambda h, w: h * w, h), pld_sde().noise, 0.1, 1)

    per_sde = jax.tree.map(lambda a: jnp.repeat(a, 350, 0), jax.vmap(build)(jnp.array([0.5, 2.0])))
    keys = jax.random.split(jax.random.key(12), 700)
    per_dom = jax.tree.map(lambda a: jnp.full((700,), a), dom)
    per_whole = sdn.first_exit_time_per_path(keys, per_sde, jnp.zeros(700), per_dom, **kw)
    refill = sdn.EngineConfig(refill_above=32, smallest_bucket=16)
    assert lane_count(700, 1, refill) == 256  # lanes get refilled about three times
    refilled = sdn.first_exit_time(11, sde, 0.0, dom, n_paths=700, config=refill, **kw)
    per_refilled = sdn.first_exit_time_per_path(
        keys, per_sde, jnp.zeros(700), per_dom, config=refill, **kw
    )
    for a, b in [*zip(whole, refilled), *zip(per_whole, per_refilled)]:
        np.testing.assert_array_equal(a, b)
    assert int(np.sum(np.asarray(whole.status) == sdn.ExitStatus.EXITED)) > 600
    # The two curvatures differ, so a mix-up of rows between lanes would show.
    t = np.asarray(per_refilled.time)
    assert t[350:].mean() > 1.5 * t[:350].mean()  # the stiffer basin holds paths longer


# ----------------------------------------------------------------------------- first exits


@pytest.mark.slow
def test_power_law_exit_time_matches_quadrature_with_bridge():
    eta, b, sg, sh, h, xb = 0.1, 1, 1.0, 2.0, 1.0, 1.0
    exact = exact_mfpt_symmetric(lambda x: -h * x, lambda x: eta / b * (sg + sh * x * x), xb)
    assert abs(exact - 192) < 1  # docs/theory.md §4 quotes T ≈ 192
    sde = pld_sde(h, eta, b, sg, sh)
    dom = domains.interval(-xb, xb)
    kw = dict(dt=1e-2, n_steps=10**6, n_paths=4000)
    bridged = sdn.first_exit_time(16, sde, 0.0, dom, **kw).summary()
    plain = sdn.first_exit_time(16, sde, 0.0, dom, boundary_correction=False, **kw).summary()
    assert bridged["exited"] == 4000
    assert abs(bridged["mean_time"] - exact) < Z * bridged["sem"], (bridged, exact)
    # discrete monitoring overestimates exit times: the bias must be visible
    assert plain["mean_time"] - exact > Z * plain["sem"], (plain, exact)


@pytest.mark.slow
def test_constant_noise_exit_time_matches_quadrature():
    eta, b, sg, h, xb = 0.1, 1, 4.0, 1.0, 1.0
    exact = exact_mfpt_symmetric(lambda x: -h * x, lambda x: eta / b * sg, xb)
    sde = sdn.sgd_sde(lambda w: h * w, noise.isotropic(sg), eta, b)
    r = sdn.first_exit_time(
        17, sde, 0.0, domains.interval(-xb, xb), dt=1e-2, n_steps=10**6, n_paths=3000
    ).summary()
    assert abs(r["mean_time"] - exact) < Z * r["sem"], (r, exact)


def test_exit_status_counts_inside_and_diverged():
    sde = sdn.SDE(lambda w: 0.0 * w, noise.isotropic(1e-6), 1.0)
    r = sdn.first_exit_time(0, sde, 0.0, domains.interval(-1, 1), dt=0.1, n_steps=30, n_paths=5)
    assert np.all(r.status == sdn.INSIDE) and np.all(r.steps == 30)
    np.testing.assert_allclose(r.time, 3.0, rtol=1e-6)
    blow = sdn.SDE(lambda w: w**3, noise.isotropic(1e-6), 1.0)
    r = sdn.first_exit_time(
        0,
        blow,
        2.0,
        domains.from_function(lambda w: jnp.isfinite(w)),
        dt=1.0,
        n_steps=40,
        n_paths=5,
    )
    assert np.all(r.status == sdn.DIVERGED)
    assert np.all(np.isfinite(r.position))
    assert np.isnan(r.summary()["mean_time"]) and r.summary()["diverged"] == 5


def test_box_exit_in_two_dimensions():
    sde = sdn.SDE(lambda w: 0.0 * w, noise.diagonal(jnp.array([1.0, 1e-8])), 1.0)
    dom = domains.box(jnp.array([-0.5, -1.0]), jnp.array([0.5, 1.0]))
    kw = dict(dt=1e-3, n_steps=50_000, n_paths=400)
    plain = sdn.first_exit_time(1, sde, jnp.zeros(2), dom, boundary_correction=False, **kw)
    # Only the first coordinate moves: it leaves through ±0.5.
    assert np.all(plain.status == sdn.EXITED) and np.all(np.abs(plain.position[:, 0]) >= 0.5)
    r = sdn.first_exit_time(1, sde, jnp.zeros(2), dom, **kw)
    # A bridge-detected exit reports the last monitored state, inside but near the wall.
    assert np.all(r.status == sdn.EXITED) and np.all(np.abs(r.position[:, 0]) > 0.4)
    s = r.summary()  # E τ = 0.5² for Brownian motion
    assert abs(s["mean_time"] - 0.25) < Z * s["sem"] + 0.01


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    sde = pld_sde()
    dom = domains.interval(-1.0, 1.0)
    ok = dict(dt=0.01, n_steps=10, n_paths=4)
    with pytest.raises(ValueError, match="dt"):
        sdn.simulate(0, sde, 0.0, **{**ok, "dt": 0.0})
    with pytest.raises(ValueError, match="n_steps"):
        sdn.simulate(0, sde, 0.0, **{**ok, "n_steps": 0})
    with pytest.raises(ValueError, match="n_paths"):
        sdn.simulate(0, sde, 0.0, **{**ok, "n_paths": 0})
    with pytest.raises(TypeError, match="n_paths"):
        sdn.simulate(0, sde, 0.0, **{**ok, "n_paths": 2.5})
    with pytest.raises(ValueError, match="w0"):
        sdn.simulate(0, sde, jnp.nan, **ok)
    with pytest.raises(ValueError, match="solver"):
        sdn.simulate(0, sde, 0.0, solver="rk4", **ok)
    vec = sdn.SDE(lambda w: -w, noise.power_law(jnp.ones(3), 1.0), 1.0)
    with pytest.raises(ValueError, match="sigma_g"):
        sdn.simulate(0, vec, jnp.zeros(2), **ok)
    with pytest.raises(ValueError, match="sigma_g"):
        noise.power_law(-1.0, 1.0)
    with pytest.raises(ValueError, match="sigma_gh"):
        noise.power_law(1.0, 1.0, sigma_gh=2.0)
    with pytest.raises(ValueError, match="variance"):
        noise.isotropic(-0.1)
    with pytest.raises(ValueError, match="positive semi-definite"):
        noise.full(jnp.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="alpha"):
        noise.alpha_stable(2.5)
    with pytest.raises(ValueError, match="lo < hi"):
        domains.interval(1.0, 1.0)
    with pytest.raises(ValueError, match="not inside"):
        sdn.first_exit_time(0, sde, 2.0, dom, dt=0.01, n_steps=10, n_paths=2)
    with pytest.raises(ValueError, match="n_steps"):
        sdn.first_exit_time(0, sde, 0.0, dom, dt=0.01, n_steps=0, n_paths=2)
    with pytest.raises(ValueError, match="milstein"):
        full = sdn.SDE(lambda w: -w, noise.full(jnp.eye(2)), 1.0)
        sdn.simulate(0, full, jnp.zeros(2), solver="milstein", **ok)
    with pytest.raises(ValueError, match="learning rate"):
        mb = noise.minibatch(lambda w, c: w - c, jnp.arange(5.0), 2)
        bad = sdn.sgd_sde(lambda w: w, mb, 0.1, 2)
        sdn.simulate(0, bad, 0.0, dt=0.2, n_steps=5, n_paths=2, solver="sgd")
    with pytest.raises(ValueError, match="batch_size"):
        noise.minibatch(lambda w, c: w - c, jnp.arange(5.0), 6, replace=False)
    with pytest.raises(TypeError, match="sde"):
        sdn.simulate(0, "not an sde", 0.0, **ok)


def test_per_path_parameters_reproduce_per_point_runs():
    from sdn import first_exit_time_per_path

    def build(h, sh):
        drift = jax.tree_util.Partial(lambda h, w: h * w, h)
        return sdn.sgd_sde(drift, noise.power_law(1.0, sh), 0.1, 1)

    hs, shs, n, key = jnp.array([0.5, 2.0]), jnp.array([1.0, 4.0]), 150, jax.random.key(3)
    dom = domains.interval(-0.5, 0.5)
    kw = dict(dt=0.01, n_steps=50_000)
    per_point = [
        sdn.first_exit_time(
            jax.random.fold_in(key, p), build(hs[p], shs[p]), 0.0, dom, n_paths=n, **kw
        ).time
        for p in range(2)
    ]
    sdes = jax.tree.map(lambda a: jnp.repeat(a, n, axis=0), jax.vmap(build)(hs, shs))
    keys = jnp.concatenate(
        [
            jax.vmap(lambda i, p=p: jax.random.fold_in(jax.random.fold_in(key, p), i))(
                jnp.arange(n)
            )
            for p in range(2)
        ]
    )
    boxes = jax.tree.map(lambda a: jnp.full((2 * n,), a), dom)
    r = first_exit_time_per_path(keys, sdes, jnp.zeros(2 * n), boxes, chunk_size=128, **kw)
    np.testing.assert_array_equal(np.concatenate(per_point), r.time)
    with pytest.raises(ValueError, match="leading path axis"):
        first_exit_time_per_path(keys, build(1.0, 1.0), jnp.zeros(2 * n), boxes, **kw)
