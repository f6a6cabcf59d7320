"""Fitted power-law noise models recover known moments within their reported errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sdn import landscapes, noise
from sdn.train import MLP, noise_along, sample_loss, split_model
from sdn.train.loop import functional_apply
from sdn.train.probes import (
    NoiseProfile,
    fit_network_power_law,
    fit_noise_along,
    fit_power_law,
    network_noise_along,
)


@pytest.fixture(scope="module")
def quadratic():
    return landscapes.finite_sum_quadratic(
        jax.random.key(5), n=4000, dim=3, curvature=1.5, curvature_spread=0.5
    )


def test_per_coordinate_fit_recovers_known_moments(quadratic):
    """`C_jj(w* + x) = σ_g + 2σ_gH x_j + σ_H x_j²` holds exactly on the quadratic; the
    fit from sampled batches must land within its standard errors (|Z| < 5, 9 checks)."""
    w_star = quadratic.minimum
    known = [np.asarray(a, np.float64) for a in quadratic.gradient_noise_moments()]
    d = jnp.array([1.5, -2.0, 1.0])
    fit = fit_power_law(
        quadratic.sample_loss,
        w_star,
        quadratic.data,
        d,
        key=jax.random.key(2),
        batch_size=4000,
        groups=16,
        chunk_size=500,
    )
    estimates = (fit.sigma_g, fit.sigma_gh, fit.sigma_h)
    for est, se, true in zip(estimates, fit.stderr, known):
        assert np.all(se > 0)
        z = (np.asarray(est) - true) / np.asarray(se)
        assert np.abs(z).max() < 5, (est, true, se)
    # The errors are a few percent here, so the estimate is informative.
    assert np.all(np.asarray(fit.stderr[2]) < 0.2 * known[2])
    assert isinstance(fit.model, noise.PowerLaw)
    x = w_star + 0.7 * d
    want = known[0] + 2 * known[1] * 0.7 * d + known[2] * (0.7 * d) ** 2
    got = np.asarray(fit.model.variance(x))
    se = fit.stderr
    tol = 5 * np.sqrt(se[0] ** 2 + (1.4 * d * se[1]) ** 2 + ((0.7 * d) ** 2 * se[2]) ** 2)
    assert np.all(np.abs(got - want) < tol)


def test_network_fit_equals_the_per_sample_path():
    """With the same batches, the NNX fit (backprop signals) and the generic fit
    (per-sample gradients) agree, and the model acts on the flat parameter vector."""
    model = MLP(5, (6,), 3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (96, 5))
    y = jnp.arange(96) % 3
    graphdef, params = split_model(model)
    d = jax.tree.map(lambda a: jnp.full(a.shape, 0.3), params)
    kw = dict(key=jax.random.key(4), ts=(-1.0, 0.0, 0.5, 1.0), batch_size=64, groups=4)
    net = fit_network_power_law(model, x, y, d, **kw)
    ell = sample_loss(functional_apply(graphdef))
    ref = fit_power_law(ell, params, (x, y), d, **kw)
    for a, b in zip(jax.tree.leaves(net[1:5]), jax.tree.leaves(ref[1:5])):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-6 * np.abs(b).max())
    flat, _ = jax.flatten_util.ravel_pytree(params)
    assert net.model.variance(flat).shape == flat.shape


def test_network_noise_along_matches_noise_along():
    model = MLP(5, (6,), 3, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(1), (40, 5))
    y = jnp.arange(40) % 3
    graphdef, params = split_model(model)
    v = jax.tree.map(lambda a: jnp.ones(a.shape) / 10, params)
    ts = np.array([-1.0, 0.0, 2.0])
    net = network_noise_along(model, x, y, v, ts, per_coordinate=True)
    ref = noise_along(
        sample_loss(functional_apply(graphdef)), params, (x, y), v, ts, per_coordinate=True
    )
    np.testing.assert_allclose(net.directional, ref.directional, rtol=1e-4)
    np.testing.assert_allclose(net.trace, ref.trace, rtol=1e-4)
    np.testing.assert_allclose(net.loss, ref.loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(net.per_coordinate), jax.tree.leaves(ref.per_coordinate)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7 * np.abs(b).max())


def test_fit_along_a_direction_returns_the_quadratic():
    t = np.linspace(-2, 2, 11)
    prof = NoiseProfile(t, 0.4 - 0.2 * t + 1.5 * t**2, t * np.nan, None, t * 0)
    fit = fit_noise_along(prof)
    np.testing.assert_allclose((fit.sigma_g, fit.sigma_gh, fit.sigma_h), (0.4, -0.1, 1.5))
    np.testing.assert_allclose(
        fit.model.variance(jnp.asarray(t, jnp.float32)), prof.directional, rtol=1e-5
    )


def test_bad_arguments(quadratic):
    w, d = quadratic.minimum, jnp.ones(3)
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="groups"):
        fit_power_law(quadratic.sample_loss, w, quadratic.data, d, key=k, groups=1)
    with pytest.raises(ValueError, match="non-zero"):
        fit_power_law(quadratic.sample_loss, w, quadratic.data, d.at[1].set(0.0), key=k)
    with pytest.raises(ValueError, match="ts"):
        fit_power_law(quadratic.sample_loss, w, quadratic.data, d, key=k, ts=(0.0, 1.0))


@pytest.mark.slow
def test_large_batch_power_law_calibrated_from_the_fit():
    """§6.4's ``power_law_fitted`` method: α = fitted σ × (1/b_s − 1/b_l), tiny sizes."""
    import dataclasses

    from sdn.experiments.large_batch import LargeBatchConfig, run_large_batch

    cfg = dataclasses.replace(
        LargeBatchConfig.quick(),
        hidden=(16,),
        n_train=200,
        n_test=100,
        steps=20,
        seeds=2,
        eval_every=10,
        power_iters=3,
        large_batch=64,
        methods=("large_batch", "power_law_fitted"),
    )
    res = run_large_batch(cfg)
    by = {s["method"]: s for s in res.summary}
    fitted = by["power_law_fitted"]
    r = 1 / cfg.small_batch - 1 / cfg.large_batch
    assert 0 < fitted["alpha_g_mean"] < r * 10.0  # a per-sample variance, times r
    assert np.isfinite(fitted["test_acc_mean"]) and fitted["diverged"] == 0
