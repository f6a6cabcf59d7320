"""Tests for sdn.landscapes: analytic landscapes and finite-sum problems."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdn.landscapes import (
    DoubleWell,
    digits_logistic,
    double_well,
    finite_sum_quadratic,
    quadratic_basin,
    sharp_flat_2d,
)


def _d2(f, x):
    return jax.jit(jax.grad(jax.grad(f)))(jnp.asarray(x, dtype=jnp.float32))


def test_quadratic_basin():
    basin = quadratic_basin(3.0, 0.5)
    assert float(basin.barrier) == pytest.approx(3.0 * 0.25 / 2)
    np.testing.assert_allclose(basin.grad(jnp.array([-1.0, 0.2])), [-3.0, 0.6], rtol=1e-6)
    assert basin.bounds == (-basin.wall, basin.wall)
    assert float(_d2(basin.loss, 0.1)) == pytest.approx(3.0)


@pytest.mark.parametrize(
    "h_min, h_saddle, barrier", [(2.0, 1.0, 0.5), (1.0, 3.0, 2.0), (8.0, 0.5, 0.1)]
)
def test_double_well_sets_curvatures_and_barrier_independently(h_min, h_saddle, barrier):
    well = double_well(h_min, h_saddle, barrier)
    a, s, b = well.minimum, well.saddle, well.other_minimum
    assert float(well.loss(a)) == pytest.approx(0.0, abs=1e-6)
    assert float(well.loss(s) - well.loss(a)) == pytest.approx(barrier, rel=1e-5)
    for x in (a, s, b):
        assert float(well.grad(x)) == pytest.approx(0.0, abs=1e-5 * h_min)
    assert float(_d2(well.loss, a)) == pytest.approx(h_min, rel=1e-4)
    assert float(_d2(well.loss, b)) == pytest.approx(h_min, rel=1e-4)
    assert float(_d2(well.loss, s)) == pytest.approx(-h_saddle, rel=1e-4)
    # no other critical points: L' < 0 left of each minimum's basin side, > 0 right
    x = jnp.linspace(float(a) - 3.0, float(b) + 3.0, 2001)
    g = jax.jit(well.grad)(x)
    assert bool(jnp.all(g[x < a - 1e-3] < 0)) and bool(jnp.all(g[(x > a + 1e-3) & (x < -1e-3)] > 0))
    assert bool(jnp.all(g[(x > 1e-3) & (x < b - 1e-3)] < 0)) and bool(jnp.all(g[x > b + 1e-3] > 0))


def test_double_well_third_derivative_continuous_at_minimum():
    # The outer quartic continues L with L''' continuous at ±d (Laplace asymptotics need it).
    with jax.enable_x64(True):
        well = double_well(1.0, 3.0, 1.0)
        d3 = jax.grad(jax.grad(jax.grad(well.loss)))
        d = float(well.half_width)
        assert float(d3(d - 1e-9)) == pytest.approx(float(d3(d + 1e-9)), rel=1e-6)


def test_landscapes_are_pytrees_for_vmap_and_jit():
    wells = DoubleWell(
        jnp.array([1.0, 2.0, 4.0]), jnp.array([1.0, 1.0, 1.0]), jnp.array([0.5, 1.0, 2.0])
    )
    barriers = jax.vmap(lambda w: w.loss(w.saddle) - w.loss(w.minimum))(wells)
    np.testing.assert_allclose(barriers, [0.5, 1.0, 2.0], rtol=1e-5)
    curv = jax.jit(jax.vmap(lambda w: jax.grad(w.grad)(w.minimum)))(wells)
    np.testing.assert_allclose(curv, [1.0, 2.0, 4.0], rtol=1e-4)
    assert len(jax.tree.leaves(quadratic_basin(1.0, 1.0))) == 2


def test_sharp_flat_2d_minima_and_saddle():
    land = sharp_flat_2d(curvature_sharp=8.0, curvature_flat=0.5, curvature_saddle=1.0, barrier=0.7)
    hess = jax.jit(jax.hessian(land.loss))
    for w, h in [(land.sharp_minimum, 8.0), (land.flat_minimum, 0.5)]:
        np.testing.assert_allclose(land.grad(w), [0.0, 0.0], atol=1e-5)
        np.testing.assert_allclose(hess(w), h * np.eye(2), rtol=1e-4, atol=1e-5)
        assert float(land.loss(land.saddle) - land.loss(w)) == pytest.approx(0.7, rel=1e-5)
    hs = hess(land.saddle)
    assert float(hs[0, 0]) == pytest.approx(-1.0, rel=1e-4) and float(hs[1, 1]) > 0
    np.testing.assert_allclose(land.grad(land.saddle), [0.0, 0.0], atol=1e-6)
    assert land.loss(jnp.zeros((5, 2))).shape == (5,)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: quadratic_basin(0.0, 1.0), "curvature"),
        (lambda: quadratic_basin(1.0, -1.0), "wall"),
        (lambda: double_well(1.0, 1.0, 0.0), "barrier"),
        (lambda: double_well(-1.0, 1.0, 1.0), "curvature_min"),
        (lambda: double_well(1.0, 0.0, 1.0), "curvature_saddle"),
        (lambda: sharp_flat_2d(curvature_flat=0.0), "curvature_flat"),
        (lambda: finite_sum_quadratic(jax.random.key(0), 10, curvature=-2.0), "curvature"),
        (lambda: finite_sum_quadratic(jax.random.key(0), 10, curvature_spread=-1.0), "spread"),
        (lambda: finite_sum_quadratic(jax.random.key(0), 1), "n"),
    ],
)
def test_bad_input_names_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_finite_sum_quadratic_minimum_and_gradients():
    prob = finite_sum_quadratic(
        jax.random.key(1), n=500, dim=3, curvature=2.0, curvature_spread=0.5
    )
    h, c = np.asarray(prob.data["curvature"]), np.asarray(prob.data["center"])
    assert h.shape == (500, 3) and np.all(h > 0)
    np.testing.assert_allclose(prob.minimum, (h * c).sum(0) / h.sum(0), rtol=1e-5)
    np.testing.assert_allclose(prob.grad(prob.minimum), 0.0, atol=1e-5)
    w = jnp.array([0.3, -1.0, 2.0])
    per_sample = jax.vmap(prob.sample_grad, in_axes=(None, 0))(w, prob.data)
    np.testing.assert_allclose(per_sample, h * (np.asarray(w) - c), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(per_sample.mean(0), prob.grad(w), rtol=1e-5, atol=1e-6)
    # u ~ Gamma with mean 1, variance 0.5: sample mean/var of h/2 over 1500 draws.
    # sd of the mean sqrt(0.5/1500) = 0.018; of the variance ≈ sqrt((μ4 − σ⁴)/n) ≈ 0.04.
    u = h / 2.0
    assert abs(u.mean() - 1.0) < 4 * 0.018
    assert abs(u.var() - 0.5) < 4 * 0.04


def test_finite_sum_moments_and_exact_quadratic_covariance():
    prob = finite_sum_quadratic(jax.random.key(2), n=400, dim=2, curvature=1.5, center_spread=0.7)
    mom = jax.jit(lambda p: p.gradient_noise_moments())(prob)
    h = np.asarray(prob.data["curvature"], dtype=float)
    c = np.asarray(prob.data["center"], dtype=float)
    w_star = (h * c).sum(0) / h.sum(0)
    g = h * (w_star - c)
    # direct population moments from per-sample gradients and Hessians (docs/theory.md §1)
    np.testing.assert_allclose(mom.sigma_g, g.var(0), rtol=1e-4)
    np.testing.assert_allclose(mom.sigma_h, h.var(0), rtol=1e-4)
    np.testing.assert_allclose(
        mom.sigma_gh, ((g - g.mean(0)) * (h - h.mean(0))).mean(0), rtol=1e-3, atol=1e-5
    )
    # C(w) = Cov_i ∇ℓ_i(w) = σ_g + 2 σ_gH x + σ_H x² exactly, at several w
    per_sample = jax.jit(jax.vmap(prob.sample_grad, in_axes=(None, 0)))
    for x in [-2.0, -0.3, 0.0, 0.5, 3.0]:
        w = jnp.asarray(w_star + x, dtype=jnp.float32)
        grads = np.asarray(per_sample(w, prob.data), float)
        cov = grads.var(0)
        pred = (
            np.asarray(mom.sigma_g)
            + 2 * np.asarray(mom.sigma_gh) * x
            + np.asarray(mom.sigma_h) * x**2
        )
        np.testing.assert_allclose(cov, pred, rtol=2e-4)


@pytest.mark.slow
def test_digits_logistic_minimum_and_moments():
    prob = digits_logistic(l2=1e-3, steps=200)
    assert prob.data["x"].shape == (1797, 64) and prob.n == 1797
    grad = prob.grad(prob.minimum)
    assert max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(grad)) < 1e-4
    # closed-form per-sample Hessian diagonal against autodiff on two samples
    flat, unravel = jax.flatten_util.ravel_pytree(prob.minimum)

    @jax.jit
    def sample_hessian(v, datum):
        return jax.hessian(lambda u: prob.sample_loss(unravel(u), datum))(v)

    for i in [0, 1000]:
        datum = jax.tree.map(lambda a, i=i: a[i], prob.data)
        full = sample_hessian(flat, datum)
        closed = jax.flatten_util.ravel_pytree(prob.sample_hessian_diagonal(prob.minimum, datum))[0]
        np.testing.assert_allclose(jnp.diagonal(full), closed, rtol=1e-4, atol=1e-6)
    # moments against a direct computation for a few coordinates, by autodiff HVPs
    mom = prob.gradient_noise_moments()
    coords = np.array([5, 300, 333, 645])  # weights and a bias entry

    def per_sample(datum):
        f = lambda v: prob.sample_loss(unravel(v), datum)  # noqa: E731
        g = jax.grad(f)(flat)
        hdiag = jax.vmap(lambda e: jax.jvp(jax.grad(f), (flat,), (e,))[1])(
            jnp.eye(flat.size)[coords]
        )
        return g[coords], hdiag[jnp.arange(coords.size), coords]

    g, hd = jax.jit(jax.vmap(per_sample))(prob.data)
    g, hd = np.asarray(g, float), np.asarray(hd, float)
    flat_mom = [np.asarray(jax.flatten_util.ravel_pytree(m)[0])[coords] for m in mom]
    np.testing.assert_allclose(flat_mom[0], g.var(0), rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(flat_mom[2], hd.var(0), rtol=1e-3, atol=1e-9)
    cov = ((g - g.mean(0)) * (hd - hd.mean(0))).mean(0)
    np.testing.assert_allclose(flat_mom[1], cov, rtol=1e-3, atol=1e-8)
