"""Noise that follows the state: `optim.add_refitted_noise`, `optim.refit_noise` and
`train(refit=...)`, and §6.4's methods that refit their noise model while training."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sdn import noise, optim
from sdn.train import MLP, teacher_student, train


def test_draws_follow_the_refitted_model():
    """Zero noise from the placeholder; after a refit, draws of the new variances (4000
    draws: the variance's standard error is sqrt(2/4000) = 2.2% of it, so the old model
    and a model with its variances swapped are far outside 5 errors)."""
    tx = optim.add_refitted_noise(0, noise.diagonal(jnp.zeros(2)))
    state = tx.init(jnp.zeros(2))
    assert bool(jnp.all(tx.update(jnp.zeros(2), state)[0] == 0.0))
    state = optim.refit_noise(state, noise.diagonal(jnp.array([1.0, 4.0])))

    def draws(state, _):
        z, state = tx.update(jnp.zeros(2), state)
        return state, z

    _, z = jax.lax.scan(draws, state, None, length=4000)
    var = np.var(np.asarray(z, np.float64), axis=0)
    se = np.array([1.0, 4.0]) * math.sqrt(2 / 4000)
    assert np.all(np.abs(var - [1.0, 4.0]) < 5 * se), var
    assert np.all(np.abs(var - [4.0, 1.0]) > 5 * se)


def test_bad_models_and_states_name_the_problem():
    with pytest.raises(ValueError, match="constant noise model"):
        optim.add_refitted_noise(0, noise.power_law(1.0, 1.0))
    with pytest.raises(ValueError, match="constant noise model"):
        optim.add_refitted_noise(0, noise.gradient_variance(1.0))
    with pytest.raises(TypeError, match="model"):
        optim.add_refitted_noise(0, 3.0)
    tx = optim.add_refitted_noise(0, noise.diagonal(jnp.zeros(2)))
    state = tx.init(jnp.zeros(2))
    with pytest.raises(ValueError, match="structure and shapes"):
        optim.refit_noise(state, noise.diagonal(jnp.zeros(3)))
    with pytest.raises(ValueError, match="no add_refitted_noise state"):
        optim.refit_noise(optax.sgd(0.1).init(jnp.zeros(2)), noise.diagonal(jnp.zeros(2)))


def _tiny():
    data = teacher_student(128, 64, dim=6, n_classes=3, seed=0)
    return data, (lambda r: MLP(6, (8,), 3, rngs=r))


def _placeholder(params):
    return noise.diagonal(jax.tree.map(jnp.zeros_like, params))


def test_train_refits_before_every_chunk_the_first_included():
    """With a refit that installs zero noise the run is plain SGD, bit for bit; one that
    installs noise changes the run even when there is a single chunk (so the refit came
    before it), and every seed draws its own (replicas stay independent)."""
    data, model_fn = _tiny()
    kw = dict(steps=20, batch_size=16, seeds=2, eval_every=20, progress=False)

    def tx(key):
        return optax.chain(optim.add_refitted_noise(key, _placeholder), optax.sgd(0.1))

    def refit_with(variance):
        def refit(key, params, opt_state):
            del key
            var = jax.tree.map(lambda p: jnp.full_like(p, variance), params)
            return optim.refit_noise(opt_state, noise.diagonal(var))

        return refit

    plain = train(model_fn, data, optax.sgd(0.1), **kw)
    zero = train(model_fn, data, tx, refit=refit_with(0.0), **kw)
    noisy = train(model_fn, data, tx, refit=refit_with(1.0), **kw)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(zero.params)):
        np.testing.assert_array_equal(a, b)
    moved = [np.max(np.abs(a - b)) for a, b in zip(jax.tree.leaves(plain.params),
                                                   jax.tree.leaves(noisy.params))]  # fmt: skip
    assert max(moved) > 1e-2, moved
    with pytest.raises(TypeError, match="refit"):
        train(model_fn, data, tx, refit=3, **kw)


def test_the_refit_methods_measure_the_covariance_at_the_current_params():
    """§6.4's `empirical_refit`: `r S` of the per-sample gradients of the drawn examples at
    the params it is given, computed here independently with `vmap(grad)`; a model fitted
    at other params (the initial ones, as `empirical_fitted` holds its fit fixed) differs."""
    from flax import nnx

    from sdn.experiments.large_batch import LargeBatchConfig
    from sdn.experiments.large_batch.experiment import _refit_function, method_setup
    from sdn.train import cross_entropy, functional_apply, split_model

    data, model_fn = _tiny()
    cfg = LargeBatchConfig(small_batch=8, large_batch=64, fit_samples=16)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    graphdef, p0 = split_model(model_fn(nnx.Rngs(0)))
    p1 = jax.tree.map(lambda a: a + 0.3 * jnp.sign(a + 0.01), p0)
    setup = method_setup("empirical_refit", cfg)
    tx = setup["tx"](jax.random.key(0))
    refit = _refit_function(cfg, model_fn, x, y, setup["refit_model"])
    key = jax.random.key(5)
    state = refit(key, p1, tx.init(p1))
    model = state[0].model
    idx = jax.random.choice(key, x.shape[0], (16,), replace=False)
    apply = functional_apply(graphdef)

    def loss(p, xi, yi):
        return cross_entropy(apply(p, xi[None]), yi[None])

    def grads_at(p):
        return jax.vmap(jax.grad(loss), (None, 0, 0))(p, x[idx], y[idx])

    r = 1 / 8 - 1 / 64
    want = jax.tree.map(lambda g: r * jnp.var(g, axis=0, ddof=1), grads_at(p1))
    got = model.variance(p1)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-9)
    stale = jax.tree.map(lambda g: r * jnp.var(g, axis=0, ddof=1), grads_at(p0))
    diff = [np.max(np.abs(a - b)) / np.max(b) for a, b in zip(jax.tree.leaves(got),
                                                              jax.tree.leaves(stale))]  # fmt: skip
    assert max(diff) > 0.1, diff
