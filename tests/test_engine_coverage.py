"""Engine behaviour the main engine tests leave out, checked against formulas or the law.

Solvers' formulas with a given increment (multi-dimensional Milstein, Heun), the
Brownian-bridge crossing probability of a box with several active walls and infinite
bounds, full-covariance, α-stable and vector-minibatch noise through `simulate` and
`first_exit_time`, the bridge being off for non-Gaussian noise, and `t0`. Statistical
checks use 4 standard errors of the Monte Carlo estimate, or a test at level 1e-3.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sstats

from sdn import EXITED, SDE, domains, first_exit_time, noise, simulate, solvers

SG, SH, SCALE = np.array([0.5, 2.0]), np.array([3.0, 0.7]), 0.2


def _power_law_sde():
    return SDE(lambda w: -1.5 * w, noise.power_law(SG, SH), SCALE)


def _g_and_derivative(w):
    # g_j = sqrt(scale (σ_g,j + σ_H,j w_j²)), ∂g_j/∂w_j = scale σ_H,j w_j / g_j
    g = np.sqrt(SCALE * (SG + SH * w**2))
    return g, SCALE * SH * w / g


def test_milstein_uses_each_coordinates_own_derivative():
    w, dw, dt = np.array([0.8, -1.3]), np.array([0.3, -0.2]), 0.05
    g, dg = _g_and_derivative(w)
    expected = w - 1.5 * w * dt + g * dw + 0.5 * g * dg * (dw**2 - dt)
    got = solvers.milstein(_power_law_sde(), jnp.asarray(w), 0.0, dt, jnp.asarray(dw))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_heun_is_the_stratonovich_corrected_trapezoid():
    w, dw, dt = np.array([0.8, -1.3]), np.array([0.3, -0.2]), 0.05

    def corrected(x):  # Itô drift minus ½ g g'
        g, dg = _g_and_derivative(x)
        return -1.5 * x - 0.5 * g * dg

    a0, b0 = corrected(w), _g_and_derivative(w)[0] * dw
    pred = w + a0 * dt + b0
    expected = w + 0.5 * (a0 + corrected(pred)) * dt + 0.5 * (b0 + _g_and_derivative(pred)[0] * dw)
    got = solvers.heun(_power_law_sde(), jnp.asarray(w), 0.0, dt, jnp.asarray(dw))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_box_crossing_probability_combines_every_wall():
    box = domains.box([-1.0, -np.inf, 0.0], [1.0, 2.0, np.inf])
    w, w_next = np.array([0.5, 1.5, 0.2]), np.array([0.8, 1.9, 0.1])
    v = np.array([0.1, 0.2, 0.05])
    walls = [  # (distance now, distance next, v dt) for each finite wall
        (w[0] + 1, w_next[0] + 1, v[0]),
        (1 - w[0], 1 - w_next[0], v[0]),
        (2 - w[1], 2 - w_next[1], v[1]),
        (w[2], w_next[2], v[2]),
    ]
    keep = np.prod([1 - np.exp(-2 * d0 * d1 / s) for d0, d1, s in walls])
    got = float(box.crossing_probability(jnp.asarray(w), jnp.asarray(w_next), jnp.asarray(v)))
    assert got == pytest.approx(1 - keep, rel=1e-5)
    assert 0.5 < got < 1  # several walls are active here
    # a step that ends beyond a wall has crossed it
    beyond = jnp.asarray([1.2, 0.0, 1.0])
    assert float(box.crossing_probability(jnp.asarray(w), beyond, jnp.asarray(v))) == 1.0


def test_full_covariance_noise_reaches_its_stationary_covariance():
    # dw = −w dt + sqrt(s) L dB: stationary covariance s C / 2.
    cov = np.array([[1.0, 0.6], [0.6, 0.5]])
    sde = SDE(lambda w: -w, noise.full(cov), 0.4)
    n = 4000
    x = np.asarray(simulate(0, sde, jnp.zeros(2), dt=0.01, n_steps=600, n_paths=n))
    sigma = 0.4 * cov / 2
    emp = np.cov(x.T)
    se = np.sqrt((sigma**2 + np.outer(np.diag(sigma), np.diag(sigma))) / n)
    # t = 6 leaves e^{-12} of the start; Euler's O(dt) bias is 0.5% of Σ, below the error
    assert np.all(np.abs(emp - sigma) < 4 * se), (emp, sigma)


def test_full_covariance_exit_from_a_strip():
    # Only coordinate 0 is bounded (coordinate 1 has infinite bounds): the exit of
    # Brownian motion of variance C_00 from (−1, 1), E T = 1 / C_00.
    cov = np.array([[2.0, 0.9], [0.9, 1.0]])
    sde = SDE(lambda w: 0.0 * w, noise.full(cov), 1.0)
    box = domains.box([-1.0, -np.inf], [1.0, np.inf])
    r = first_exit_time(1, sde, jnp.zeros(2), box, dt=1e-3, n_steps=20_000, n_paths=2000)
    s = r.summary()
    assert s["exited"] == 2000
    assert abs(s["mean_time"] - 0.5) < 4 * s["sem"] + 0.01  # bridge: bias well under 1%


def test_alpha_stable_sums_are_stable_with_self_similar_scale():
    # Zero drift: after T the state is c T^(1/α) S, S standard symmetric α-stable.
    alpha, c, t = 1.5, 0.7, 2.0
    sde = SDE(lambda w: 0.0 * w, noise.alpha_stable(alpha, c), 1.0)
    x = np.asarray(simulate(2, sde, 0.0, dt=0.05, n_steps=40, n_paths=4000))
    reference = sstats.levy_stable.rvs(alpha, 0.0, size=4000, random_state=3)
    p = sstats.ks_2samp(x / (c * t ** (1 / alpha)), reference).pvalue
    assert p > 1e-3, p


@pytest.mark.parametrize("kind", ["alpha_stable", "minibatch"])
def test_bridge_is_off_for_non_gaussian_noise(kind):
    if kind == "alpha_stable":
        model = noise.alpha_stable(1.7, 0.5)
    else:
        data = jnp.asarray(np.random.default_rng(0).normal(size=(50, 2)))
        model = noise.minibatch(lambda w, x: w - x, data, 5)
    sde = SDE(lambda w: -w, model, 0.5)
    box = domains.box(-jnp.ones(2), jnp.ones(2))
    kw = dict(dt=0.01, n_steps=50_000, n_paths=64)
    on = first_exit_time(4, sde, jnp.zeros(2), box, boundary_correction=True, **kw)
    off = first_exit_time(4, sde, jnp.zeros(2), box, boundary_correction=False, **kw)
    assert bool(jnp.all(on.status == EXITED))
    np.testing.assert_array_equal(np.asarray(on.steps), np.asarray(off.steps))
    # Gaussian noise of the same size does use the bridge (exits come earlier)
    gauss = SDE(lambda w: -w, noise.isotropic(1.0), 0.5)
    on = first_exit_time(4, gauss, jnp.zeros(2), box, boundary_correction=True, **kw)
    off = first_exit_time(4, gauss, jnp.zeros(2), box, boundary_correction=False, **kw)
    assert np.mean(np.asarray(on.steps)) < np.mean(np.asarray(off.steps))


def test_vector_minibatch_noise_has_covariance_scale_c_dt():
    # ℓ_i(w) = |w − x_i|²/2: ∇ℓ_i = w − x_i, so C = Cov(x) (with the finite-population
    # factor without replacement); one Euler step's noise has covariance scale · C · dt.
    x = jnp.asarray(np.random.default_rng(1).normal(size=(40, 2)) * [1.0, 0.5] + [0.0, 1.0])
    model = noise.minibatch(lambda w, xi: w - xi, x, 8, replace=False)
    sde = SDE(lambda w: -(w - x.mean(0)), model, 0.3)
    w0, dt, n = jnp.array([0.2, -0.1]), 0.1, 4000
    w1 = np.asarray(simulate(5, sde, w0, dt=dt, n_steps=1, n_paths=n))
    noise_part = w1 - np.asarray(w0 + sde.drift(w0) * dt)
    target = 0.3 * np.asarray(model.covariance(w0)) * dt
    emp = np.cov(noise_part.T)
    se = np.sqrt((target**2 + np.outer(np.diag(target), np.diag(target))) / n)
    assert np.all(np.abs(emp - target) < 4 * se), (emp, target)
    # and through first_exit_time
    r = first_exit_time(6, sde, w0, domains.box([-0.5, -0.5], [0.5, 0.5]), dt=dt,
                        n_steps=10_000, n_paths=32)  # fmt: skip
    assert bool(jnp.all(r.status == EXITED)) and bool(jnp.all(jnp.isfinite(r.time)))


def test_first_exit_time_t0_shifts_times_only():
    sde = SDE(lambda w: -w, noise.isotropic(1.0), 1.0)
    kw = dict(dt=0.01, n_steps=10_000, n_paths=32)
    a = first_exit_time(7, sde, 0.0, domains.interval(-1.0, 1.0), **kw)
    b = first_exit_time(7, sde, 0.0, domains.interval(-1.0, 1.0), t0=5.0, **kw)
    np.testing.assert_array_equal(np.asarray(a.steps), np.asarray(b.steps))
    np.testing.assert_allclose(np.asarray(b.time), np.asarray(a.time) + 5.0, rtol=1e-6)


def _square_exit_time() -> float:
    """E τ from the centre of (−1, 1)² for planar Brownian motion (generator ½Δ).

    u = (1 − x²) − Σ_{k odd} A_k cosh(kπy/2) cos(kπx/2) solves ½Δu = −1 with u = 0 on
    the boundary, A_k = 32 (−1)^((k−1)/2) / ((kπ)³ cosh(kπ/2)); at the centre ≈ 0.58937.
    """
    k = np.arange(1, 40, 2)
    a = 32 * (-1.0) ** ((k - 1) // 2) / ((k * np.pi) ** 3 * np.cosh(k * np.pi / 2))
    return float(1 - a.sum())


def test_box_exit_in_two_dimensions_matches_the_series():
    # Both coordinates move and reach their walls: the exit time of the square, to the
    # Monte Carlo error (4 sem ≈ 3% at 2000 paths) plus 0.5% for the time step with
    # the bridge correction.
    exact = _square_exit_time()
    sde = SDE(lambda w: 0.0 * w, noise.isotropic(1.0), 1.0)
    box = domains.box(-jnp.ones(2), jnp.ones(2))
    r = first_exit_time(8, sde, jnp.zeros(2), box, dt=1e-3, n_steps=20_000, n_paths=2000)
    s = r.summary()
    assert s["exited"] == 2000
    assert abs(s["mean_time"] - exact) < 4 * s["sem"] + 0.005 * exact, (s, exact)
