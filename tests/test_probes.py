"""Probes against problems whose answer is known (docs/theory.md §1, §6.1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sdn import landscapes
from sdn.train import (
    MLP,
    gradient_moments,
    noise_along,
    per_sample_grads,
    power_law_fit,
    random_direction,
    sample_loss,
    split_model,
    taylor_coefficients,
    top_hessian_eigenvalue,
)
from sdn.train.loop import functional_apply


@pytest.fixture(scope="module")
def quadratic():
    """`ℓ_i = Σ_j h_ij (w_j − c_ij)²/2`: `C_jj(w* + x) = σ_g + 2σ_gH x_j + σ_H x_j²` exactly."""
    return landscapes.finite_sum_quadratic(
        jax.random.key(3), n=301, dim=3, curvature=1.5, curvature_spread=0.5
    )


def test_per_sample_grads_chunked_equal_unchunked(quadratic):
    w = quadratic.minimum + 0.3
    exact = jax.vmap(jax.grad(quadratic.sample_loss), (None, 0))(w, quadratic.data)
    for chunk in (1, 7, 64, 301, 1000):
        g = per_sample_grads(quadratic.sample_loss, w, quadratic.data, chunk_size=chunk)
        np.testing.assert_allclose(g, exact, rtol=1e-6, atol=1e-6)


def test_gradient_moments_match_per_sample_statistics(quadratic):
    w = quadratic.minimum - 0.2
    g = np.asarray(per_sample_grads(quadratic.sample_loss, w, quadratic.data), np.float64)
    for chunk in (13, 100, 301):
        m = gradient_moments(quadratic.sample_loss, w, quadratic.data, chunk_size=chunk)
        np.testing.assert_allclose(m.mean, g.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(m.variance, g.var(0), rtol=1e-5)


def test_fitted_sigma_g_sigma_h_match_exact_moments_per_coordinate(quadratic):
    w_star = quadratic.minimum
    exact = quadratic.gradient_noise_moments()
    sg, sgh, sh = (np.asarray(a, np.float64) for a in exact)
    v = np.asarray(random_direction(jax.random.key(1), w_star), np.float64)
    ts = np.linspace(-2.0, 2.0, 9)
    prof = noise_along(
        quadratic.sample_loss,
        w_star,
        quadratic.data,
        jnp.asarray(v, jnp.float32),
        ts,
        per_coordinate=True,
        chunk_size=50,
    )
    # Per coordinate along x = t v: C_jj = σ_g,j + 2 σ_gH,j v_j t + σ_H,j v_j² t² exactly.
    for j in range(3):
        fit = power_law_fit(prof.t, prof.per_coordinate[:, j])
        np.testing.assert_allclose(fit.sigma_g, sg[j], rtol=1e-4)
        np.testing.assert_allclose(fit.sigma_gh, sgh[j] * v[j], rtol=1e-3, atol=1e-5 * sg[j])
        np.testing.assert_allclose(fit.sigma_h, sh[j] * v[j] ** 2, rtol=1e-3)
        assert fit.r_squared["quadratic"] > 1 - 1e-6
    # Along v: v·∇ℓ_i(w* + t v) = a_i + t b_i with a_i = v·g_i, b_i = Σ_j v_j² h_ij, so
    # vᵀCv = Var a + 2t Cov(a, b) + t² Var b (cross-coordinate covariances included).
    h = np.asarray(quadratic.data["curvature"], np.float64)
    c = np.asarray(quadratic.data["center"], np.float64)
    w64 = (h * c).sum(0) / h.sum(0)
    a, b = (h * (w64 - c)) @ v, h @ v**2
    ca, cb = a - a.mean(), b - b.mean()
    fit = power_law_fit(prof.t, prof.directional)
    np.testing.assert_allclose(fit.sigma_g, np.mean(ca**2), rtol=1e-4)
    np.testing.assert_allclose(fit.sigma_gh, np.mean(ca * cb), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(fit.sigma_h, np.mean(cb**2), rtol=1e-3)
    # tr C = Σ_j C_jj.
    np.testing.assert_allclose(
        power_law_fit(prof.t, prof.trace).sigma_h, np.sum(v**2 * sh), rtol=1e-3
    )
    # The Taylor prediction from derivatives at w* is exact for a quadratic.
    taylor = taylor_coefficients(quadratic.sample_loss, w_star, quadratic.data, jnp.asarray(v))
    np.testing.assert_allclose(
        [taylor.sigma_g, taylor.sigma_gh, taylor.sigma_h],
        [fit.sigma_g, fit.sigma_gh, fit.sigma_h],
        rtol=1e-3,
        atol=1e-7,
    )


def test_fits_rank_quadratic_above_linear_above_constant(quadratic):
    v = jnp.array([1.0, 0.0, 0.0])
    prof = noise_along(
        quadratic.sample_loss, quadratic.minimum, quadratic.data, v, np.linspace(-3, 3, 13)
    )
    r2 = power_law_fit(prof.t, prof.directional).r_squared
    assert r2["constant"] == 0.0
    assert r2["linear"] < 0.5 < r2["quadratic"]
    # The loss along v is L(w*) + H_00 t²/2.
    h = float(quadratic.hessian[0])
    np.testing.assert_allclose(prof.loss - prof.loss[6], h * prof.t**2 / 2, rtol=1e-4, atol=1e-5)


def test_power_iteration_finds_top_eigenvalue_of_a_quadratic():
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))
    lam = np.array([5.0, 2.0, 1.0, 0.5, -0.3, 0.1])
    a = jnp.asarray(q @ np.diag(lam) @ q.T, jnp.float32)
    eig = top_hessian_eigenvalue(jax.random.key(0), lambda w: 0.5 * w @ a @ w, jnp.ones(6))
    np.testing.assert_allclose(float(eig.value), 5.0, rtol=1e-5)
    assert float(eig.residual) < 1e-4
    assert abs(float(jnp.dot(eig.vector, q[:, 0]))) > 1 - 1e-5


def test_power_iteration_on_finite_sum_and_on_an_mlp(quadratic):
    eig = top_hessian_eigenvalue(jax.random.key(0), quadratic.loss, quadratic.minimum)
    np.testing.assert_allclose(float(eig.value), float(jnp.max(quadratic.hessian)), rtol=1e-4)

    graphdef, params = split_model(MLP(3, (4,), 2, rngs=nnx.Rngs(0)))
    apply = functional_apply(graphdef)
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32), jnp.asarray(rng.integers(0, 2, 32))
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def loss(p):
        return jnp.mean(jax.vmap(sample_loss(apply), (None, 0))(p, (x, y)))

    # the dense Hessian, jitted: op by op it takes seconds even at 26 parameters
    hessian = jax.jit(jax.hessian(lambda f: loss(unravel(f))))
    dense = np.linalg.eigvalsh(np.asarray(hessian(flat)))
    top = dense[np.argmax(np.abs(dense))]
    eig = top_hessian_eigenvalue(jax.random.key(1), loss, params, num_iters=300)
    np.testing.assert_allclose(float(eig.value), top, rtol=1e-3)


def test_probes_vmap_over_seeds(quadratic):
    keys = jax.random.split(jax.random.key(0), 3)
    vals = jax.vmap(lambda k: top_hessian_eigenvalue(k, quadratic.loss, quadratic.minimum).value)(
        keys
    )
    np.testing.assert_allclose(vals, float(jnp.max(quadratic.hessian)), rtol=1e-4)


def test_bad_input(quadratic):
    w = quadratic.minimum
    with pytest.raises(ValueError, match="ts"):
        noise_along(quadratic.sample_loss, w, quadratic.data, w, [])
    with pytest.raises(ValueError, match="chunk_size"):
        per_sample_grads(quadratic.sample_loss, w, quadratic.data, chunk_size=0)
    with pytest.raises(ValueError, match="leading sample axis"):
        gradient_moments(quadratic.sample_loss, w, {"a": jnp.ones(3), "b": jnp.ones(4)})
    with pytest.raises(ValueError, match="num_iters"):
        top_hessian_eigenvalue(jax.random.key(0), quadratic.loss, w, num_iters=0)


def test_key_is_recognised_by_type():
    from sdn._deprecation import is_key

    assert is_key(jax.random.key(0)) and is_key(jax.random.PRNGKey(0)) and is_key(3)
    assert is_key(np.int64(3))
    assert not is_key(True) and not is_key(jnp.ones(2)) and not is_key(lambda w: w)
    assert not is_key(jnp.zeros(2, jnp.uint32)[None])


def test_top_hessian_eigenvalue_old_orders_warn_and_agree(quadratic):
    k, f, w = jax.random.key(4), quadratic.loss, quadratic.minimum
    new = top_hessian_eigenvalue(k, f, w, num_iters=5)
    match = r"top_hessian_eigenvalue\(key, loss_fn, params\)"
    with pytest.warns(DeprecationWarning, match=match):
        old = top_hessian_eigenvalue(f, w, k, num_iters=5)
    with pytest.warns(DeprecationWarning, match=match):
        old_kw = top_hessian_eigenvalue(f, w, key=k, num_iters=5)
    seeded = top_hessian_eigenvalue(4, f, w, num_iters=5)  # an int seed is a key
    for other in (old, old_kw, seeded):
        np.testing.assert_array_equal(other.value, new.value)
        np.testing.assert_array_equal(other.vector, new.vector)
    with pytest.raises(TypeError, match="PRNG key"):
        top_hessian_eigenvalue(f, w)
    with pytest.raises(TypeError, match="PRNG key"):
        top_hessian_eigenvalue(f, w, jnp.ones(3))
