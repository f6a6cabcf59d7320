"""Per-sample gradient statistics from the backprop signals against ``vmap(grad)``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sdn.train import CNN, MLP
from sdn.train.gradstats import (
    batch_gradient_statistics,
    cross_entropy_losses,
    gradient_statistics,
)

RTOL = 1e-4  # float32 statistics against float64 moments of float32 per-sample gradients


def _reference(model, x, y, v):
    """Mean, population variance, norms and v·g_i from ``vmap(grad)`` (moments in float64)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def sample_loss(p, xi, yi):
        return cross_entropy_losses(nnx.merge(graphdef, p, rest)(xi[None]), yi[None])[0]

    # jitted: op by op, vmap(grad) of a small CNN takes seconds
    g = jax.jit(jax.vmap(jax.grad(sample_loss), (None, 0, 0)))(nnx.to_pure_dict(params), x, y)
    g = jax.tree.map(lambda a: np.asarray(a, np.float64), g)
    flat = np.concatenate([a.reshape(a.shape[0], -1) for a in jax.tree.leaves(g)], 1)
    vflat = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(v)])
    return (
        jax.tree.map(lambda a: a.mean(0), g),
        jax.tree.map(lambda a: a.var(0), g),
        np.sqrt((flat**2).sum(1)),
        flat @ vflat,
    )


def _check(model, x, y):
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(7), len(jax.tree.leaves(params)))
    v = jax.tree.unflatten(
        jax.tree.structure(params),
        [jax.random.normal(k, a.shape) for k, a in zip(keys, jax.tree.leaves(params))],
    )
    stats = gradient_statistics(model, x, y, direction=v)
    mean, var, norms, d = _reference(model, x, y, v)
    got_mean, got_var = nnx.to_pure_dict(stats.mean), nnx.to_pure_dict(stats.variance)
    assert jax.tree.structure(got_var) == jax.tree.structure(var)
    for a, b in zip(jax.tree.leaves(got_mean), jax.tree.leaves(mean)):
        # Mean: relative to the leaf's largest per-sample scale (entries can cancel to ~0).
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * np.abs(b).max())
    for a, b in zip(jax.tree.leaves(got_var), jax.tree.leaves(var)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7 * b.max())
    np.testing.assert_allclose(stats.sample_norms, norms, rtol=RTOL)
    np.testing.assert_allclose(stats.directional, d, rtol=RTOL, atol=RTOL * np.abs(d).max())
    np.testing.assert_allclose(stats.directional_variance, d.var(), rtol=RTOL)
    return stats


def _batch(shape, n=48, classes=5, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, *shape))
    return x, jnp.arange(n) % classes


@pytest.mark.parametrize("bias", [True, False])
def test_mlp_matches_vmap_grad(bias):
    model = MLP(12, (16, 8), 5, rngs=nnx.Rngs(0))
    if not bias:
        model = _no_bias_mlp()
    stats = _check(model, *_batch((12,)))
    assert set(stats.paths.values()) == {"linear"}


def _no_bias_mlp():
    class NoBias(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(12, 16, use_bias=False, rngs=rngs)
            self.b = nnx.Linear(16, 5, use_bias=False, rngs=rngs)

        def __call__(self, x):
            return self.b(jnp.tanh(self.a(x)))

    return NoBias(nnx.Rngs(1))


@pytest.mark.parametrize("shape", [(12,), (8, 8)], ids=["1d", "2d"])
def test_project_cnn_matches_vmap_grad(shape):
    model = CNN(shape, 5, channels=(4, 6), hidden=8, rngs=nnx.Rngs(0))
    stats = _check(model, *_batch(shape, n=32))
    expected = {"convs/0": "conv", "convs/1": "conv", "dense": "linear", "head": "linear"}
    assert stats.paths == expected


class _ConvNet(nnx.Module):
    """Strides, dilations, padding kinds, feature groups, biases on and off."""

    def __init__(self, ndim, rngs):
        k = (3,) * ndim
        self.c1 = nnx.Conv(2, 4, k, strides=2, padding="VALID", use_bias=False, rngs=rngs)
        self.c2 = nnx.Conv(4, 6, k, kernel_dilation=2, feature_group_count=2, rngs=rngs)
        self.c3 = nnx.Conv(6, 3, (2,) * ndim, padding=1, input_dilation=2, rngs=rngs)
        self.head = nnx.Linear(3, 5, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.c1(x))
        x = jax.nn.gelu(self.c2(x))
        x = jnp.tanh(self.c3(x))
        return self.head(x.mean(axis=tuple(range(1, x.ndim - 1))))


@pytest.mark.parametrize("ndim", [1, 2])
def test_conv_options_match_vmap_grad(ndim):
    model = _ConvNet(ndim, nnx.Rngs(2))
    stats = _check(model, *_batch((9,) * ndim + (2,), n=24))
    assert stats.paths["c1"] == stats.paths["c2"] == stats.paths["c3"] == "conv"


class _Mixed(nnx.Module):
    """A LayerNorm (no backprop-signal path), a circular conv, a shared dense layer applied
    twice, a dense layer on a sequence, and a parameter used outside any layer."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(2, 4, (3,), padding="CIRCULAR", rngs=rngs)
        self.seq = nnx.Linear(4, 4, rngs=rngs)
        self.norm = nnx.LayerNorm(4, rngs=rngs)
        self.shared = nnx.Linear(4, 4, rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)
        self.temperature = nnx.Param(jnp.array(1.3))

    def __call__(self, x):
        h = jnp.tanh(self.seq(jax.nn.relu(self.conv(x))))  # (n, t, 4)
        h = self.norm(h.mean(1))
        h = self.shared(jnp.tanh(self.shared(h)))
        return self.head(h) * self.temperature


def test_unsupported_layers_fall_back_and_match():
    model = _Mixed(nnx.Rngs(3))
    stats = _check(model, *_batch((7, 2), n=20, classes=3))
    assert stats.paths == {
        "conv": "per_sample",
        "seq": "linear_per_sample",
        "norm": "per_sample",
        "shared": "linear_per_sample",
        "head": "linear",
        "(other parameters)": "per_sample_model",
    }


def test_chunked_moments_match(monkeypatch):
    """Per-sample gradients formed a few samples at a time give the same moments."""
    from sdn.train import gradstats

    model = CNN((8, 8), 5, channels=(4, 6), hidden=8, rngs=nnx.Rngs(0))
    x, y = _batch((8, 8), n=29)
    whole = gradient_statistics(model, x, y)
    monkeypatch.setattr(gradstats, "_CHUNK_ELEMENTS", 2000)  # conv 2: 222 floats, 9 samples
    gradstats._JITTED.clear()
    parts = gradient_statistics(model, x, y)
    gradstats._JITTED.clear()
    for a, b in zip(jax.tree.leaves(parts.variance), jax.tree.leaves(whole.variance)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(parts.sample_norms, whole.sample_norms, rtol=1e-6)


def test_functional_form_is_jittable_on_pure_dicts():
    model = MLP(6, (5,), 3, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    pure = nnx.to_pure_dict(params)
    x, y = _batch((6,), n=10, classes=3)
    stats = jax.jit(lambda p: batch_gradient_statistics(graphdef, p, x, y))(pure)
    assert jax.tree.structure(stats.variance) == jax.tree.structure(pure)
    ref = gradient_statistics(model, x, y)
    for a, b in zip(jax.tree.leaves(stats.variance), jax.tree.leaves(ref.variance)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_custom_loss_and_errors():
    model = MLP(4, (), 2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (8, 4))
    y = jax.random.normal(jax.random.key(1), (8, 2))

    def squared(out, target):
        return 0.5 * jnp.sum((out - target) ** 2, axis=-1)

    stats = gradient_statistics(model, x, y, loss=squared)
    # A linear model with squared error: g_i = x_iᵀ r_i, r_i = W x_i + b − y_i.
    w, b = model.layers[0].kernel[...], model.layers[0].bias[...]
    r = np.asarray(x @ w + b - y, np.float64)
    g = np.einsum("nk,no->nko", np.asarray(x, np.float64), r)
    np.testing.assert_allclose(stats.variance["layers"][0]["kernel"], g.var(0), rtol=RTOL)
    with pytest.raises(ValueError, match="one loss per sample"):
        gradient_statistics(model, x, y, loss=lambda o, t: squared(o, t).mean())
    with pytest.raises(ValueError, match="leading sample axis"):
        gradient_statistics(model, x, y[:3])
    with pytest.raises(TypeError, match="nnx.Module"):
        gradient_statistics(lambda x: x, x, y)
    with pytest.raises(ValueError, match="direction="):
        _ = stats.directional_variance


@pytest.mark.slow
def test_grad_variance_source_restores_small_batch_noise():
    """Large-batch steps plus the ``grad_variance`` noise fed by the per-sample variance of
    each batch have the gradient noise of the small batch: `Var(ĝ + ζ) = C_jj/b_small`
    per coordinate (docs/theory.md §5), within the Monte Carlo error of `K` steps."""

    from sdn import optim
    from sdn.train import split_model, teacher_student
    from sdn.train.loop import functional_apply, make_train_step

    data = teacher_student(256, 16, dim=6, n_classes=3, hidden=8, seed=2)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    graphdef, params = split_model(MLP(6, (8,), 3, rngs=nnx.Rngs(0)))
    small, large, k_steps = 4, 64, 4000
    c_full = batch_gradient_statistics(graphdef, params, x, y).variance  # population C_jj

    def tx(key):
        return optim.from_gradient_variance(key, small, large)

    step = make_train_step(functional_apply(graphdef), tx(0), large, extra_args=("grad_variance",))

    def one(key):
        k_noise, k_batch = jax.random.split(key)
        new, _, _ = step(params, tx(k_noise).init(params), k_batch, x, y)
        return jax.tree.map(jnp.subtract, new, params)  # the update ĝ + ζ

    u = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(11), k_steps))
    got = np.concatenate(
        [np.asarray(a, np.float64).reshape(k_steps, -1) for a in jax.tree.leaves(u)], 1
    )
    want = (
        np.concatenate([np.ravel(np.asarray(c, np.float64)) for c in jax.tree.leaves(c_full)])
        / small
    )
    live = want > 1e-10
    dev2 = (got - got.mean(0))[:, live] ** 2 / want[live]  # (K, P): mean 1 per coordinate
    per_coordinate = dev2.mean(0)
    se = dev2.std(0, ddof=1) / np.sqrt(k_steps)
    z = (per_coordinate - 1) / se
    assert np.abs(z).max() < 5, (np.abs(z).max(), per_coordinate[:4])
    # Pooled over the coordinates: the mean ratio. The steps are independent, so its error
    # is that of each step's mean over coordinates (which are correlated: one batch moves
    # them all). Z = 5; r = 1/b_small instead of 1/b_small − 1/b_large adds 1/16 (+6%),
    # which it rejects (checked below).
    per_step = dev2.mean(1)
    pooled, pooled_se = per_step.mean(), per_step.std(ddof=1) / np.sqrt(k_steps)
    assert abs(pooled - 1) < 5 * pooled_se, (pooled, pooled_se)
    assert (small / large) / pooled_se > 5 + 5, pooled_se  # power: the +1/16 is ≥ 10 SE away


def _logistic(n_data=512, dim=5, seed=0):
    """A logistic regression on a finite set, its point `w` and exact per-sample gradients."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_data, dim)).astype(np.float32)
    y = np.where(rng.random(n_data) < 0.5, -1.0, 1.0).astype(np.float32)
    model = nnx.Linear(dim, 1, rngs=nnx.Rngs(seed))
    w = np.asarray(model.kernel.value, np.float64)[:, 0]
    b = float(model.bias.value[0])
    z = x.astype(np.float64) @ w + b
    s = -y / (1 + np.exp(y * z))  # ∂ℓ_i/∂z_i of ℓ_i = log(1 + exp(−y_i z_i))
    g = np.concatenate([s[:, None] * x, s[:, None]], 1)  # (n, dim + 1): kernel, bias
    return model, x, y, g


def _logistic_loss(out, yb):
    return jax.nn.softplus(-yb * out[:, 0])


def test_noise_scale_is_unbiased_for_trace_and_gradient_norm():
    """Over many batches of `n` drawn with replacement from a finite set, the one-batch
    estimates `n V/(n−1)` and `‖ḡ‖² − V/(n−1)` average to the exact `tr C` and `‖∇L‖²`
    of the full data (within 4 Monte Carlo standard errors), while the naive `‖ḡ‖²`,
    biased up by `tr C/n`, is rejected by the same tolerance."""
    model, x, y, g = _logistic()
    trace_c = float(np.sum(g.var(0)))  # with replacement: C is the population covariance
    norm_sq = float(np.sum(g.mean(0) ** 2))
    n, batches = 8, 2000
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    idx = jax.random.randint(jax.random.key(3), (batches, n), 0, x.shape[0])
    x, y = jnp.asarray(x), jnp.asarray(y)

    def one(i):
        s = batch_gradient_statistics(graphdef, params, x[i], y[i], rest=rest, loss=_logistic_loss)
        mean_sq = sum(jnp.vdot(a, a) for a in jax.tree.leaves(s.mean))
        return s.noise_scale, mean_sq

    ns, naive = jax.jit(jax.vmap(one))(idx)
    tr, gn, naive = (np.asarray(a, np.float64) for a in (ns.trace, ns.grad_norm_sq, naive))
    np.testing.assert_allclose(np.asarray(ns.simple), tr / gn, rtol=1e-5)

    def z(a, want):
        return (a.mean() - want) / (a.std(ddof=1) / np.sqrt(a.size))

    assert abs(z(tr, trace_c)) < 4, (tr.mean(), trace_c)
    assert abs(z(gn, norm_sq)) < 4, (gn.mean(), norm_sq)
    assert abs(z(naive, norm_sq)) > 4, (naive.mean(), norm_sq, trace_c / n)
    # The biased variance V itself (no n/(n−1)) is rejected too.
    assert abs(z(tr * (n - 1) / n, trace_c)) > 4


def test_noise_scale_of_one_sample_is_nan():
    model, x, y, _ = _logistic(n_data=4)
    ns = gradient_statistics(model, x[:1], y[:1], loss=_logistic_loss).noise_scale
    assert np.isnan(float(ns.trace)) and np.isnan(float(ns.simple))
