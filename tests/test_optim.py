"""Tests of `sdn.optim`: the law of the added noise, its anchors, and every composition.

Monte Carlo tolerances: for `ζ_j ~ N(0, V_j)`, `ζ_j²/V_j ~ χ²₁` has variance 2, so the
mean of `N` squares estimates `V_j` with standard error `V_j sqrt(2/N)`; a sample
covariance `mean(ζ_i ζ_j)` of independent zero-mean Gaussians has standard error
`sqrt((V_i V_j + C_ij²)/N)`. The tests allow 5 standard errors per entry (a false alarm
has probability < 1e-6 per entry; the keys are fixed, so a pass is reproducible).
"""

from __future__ import annotations

import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import sdn
import sdn.optim
from sdn import noise, stats
from sdn.optim import (
    StateDependentNoiseState,
    add_power_law_noise,
    add_state_dependent_noise,
    assert_independent_replicas,
    from_batch_sizes,
    from_fluctuation,
    from_gradient_variance,
    from_moments,
    power_law_sgd,
    reseed,
    value_grad_and_fluctuation,
)

Z = 5.0  # standard errors allowed per Monte Carlo entry (see the module docstring)
N_MC = 20_000


def _params(dtype=jnp.float32):
    w = np.linspace(-2.0, 2.0, 16)
    return {"a": jnp.asarray(w[:8], dtype), "b": jnp.asarray(w[8:].reshape(2, 4), dtype)}


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def _sample(tx, params, n, **extra):
    """`n` consecutive updates of zero gradients; the noise ζ of each step, flattened."""
    zeros = jax.tree.map(jnp.zeros_like, params)

    def step(state, _):
        updates, state = tx.update(zeros, state, params, **extra)
        flat = jnp.concatenate([u.astype(jnp.float32).ravel() for u in jax.tree.leaves(updates)])
        return state, flat

    _, zetas = jax.jit(lambda s: jax.lax.scan(step, s, None, length=n))(tx.init(params))
    return np.asarray(zetas, np.float64)


def _assert_diagonal_gaussian(
    zetas: np.ndarray, variance: np.ndarray, *, two_point: bool = False
) -> None:
    """Mean 0, variance `variance`, uncorrelated coordinates and steps, within Z SEs.

    The SE of a mean of squares is `V sqrt(2/N)` for Gaussians (`Var ζ² = 2V²`) and
    0 for two-point noise (`ζ² = V` exactly): there the squares must equal `V`.
    """
    n = zetas.shape[0]
    second = np.mean(zetas**2, axis=0)
    if two_point:
        np.testing.assert_allclose(zetas**2, np.broadcast_to(variance, zetas.shape), rtol=2e-5)
    z_var = (second - variance) / (variance * np.sqrt(2.0 / n))
    assert np.max(np.abs(z_var)) < Z, (second, variance)
    z_mean = zetas.mean(axis=0) / np.sqrt(variance / n)
    assert np.max(np.abs(z_mean)) < Z
    # Diagonal: distinct coordinates (within a leaf and across leaves) uncorrelated.
    cross = zetas.T @ zetas / n
    se = np.sqrt(np.outer(variance, variance) / n)
    off = ~np.eye(len(variance), dtype=bool)
    assert np.max(np.abs(cross[off] / se[off])) < Z
    # Fresh draws every step: no lag-1 correlation.
    lag = np.mean(zetas[1:] * zetas[:-1], axis=0) / np.sqrt(variance**2 / n)
    assert np.max(np.abs(lag)) < Z


def _anchor():
    return {"a": jnp.full(8, 0.5), "b": jnp.full((2, 4), -0.25)}


V_MEASURED = np.linspace(0.5, 3.0, 16)
SH = {"a": 2.0, "b": jnp.full((1, 4), 0.5)}  # leaves broadcast to the params'
SH_FLAT = np.concatenate([np.full(8, 2.0), np.full(8, 0.5)])


def _tree16(flat):
    return {"a": jnp.asarray(flat[:8], jnp.float32), "b": jnp.asarray(flat[8:].reshape(2, 4))}


# name: (model, extra arguments, expected variance at x = w − w̄ (flat), increments)
MODELS = {
    "power_law": (
        lambda: noise.power_law(0.3, SH, sigma_gh=0.1),
        {},
        lambda x: 0.3 + 2 * 0.1 * x + SH_FLAT * x**2,
    ),
    "isotropic": (lambda: noise.isotropic(0.7), {}, lambda x: np.full_like(x, 0.7)),
    "diagonal_pytree": (
        lambda: noise.diagonal(_tree16(np.linspace(0.1, 1.6, 16))),
        {},
        lambda x: np.linspace(0.1, 1.6, 16),
    ),
    "gradient_variance": (
        lambda: noise.gradient_variance(0.3, SH),
        {"grad_variance": _tree16(V_MEASURED)},
        lambda x: V_MEASURED * (0.3 + SH_FLAT * x**2),
    ),
}


@pytest.mark.parametrize(
    "name, increments, dtype",
    [(name, "gaussian", jnp.float32) for name in MODELS]
    + [("power_law", "two_point", jnp.float32), ("isotropic", "two_point", jnp.float32)]
    + [("power_law", "gaussian", jnp.bfloat16)],
)
def test_injected_noise_has_the_models_variance(name, increments, dtype):
    """Cov ζ at x = w − w̄ equals model.variance(x) within Z standard errors, per coordinate."""
    make, extra, expected = MODELS[name]
    params = _params(dtype)
    tx = add_state_dependent_noise(
        jax.random.key(1), make(), anchor=_anchor(), increments=increments
    )
    zetas = _sample(tx, params, N_MC, **extra)
    x = _flat(params) - _flat(_anchor())
    target = expected(x)
    model_now = make().with_data(extra[make().extra_arg]) if extra else make()
    np.testing.assert_allclose(
        _flat(
            model_now.variance(
                jax.tree.map(lambda p, a: p.astype(jnp.float32) - a, params, _anchor())
            )
        ),
        target,
        rtol=1e-5,
    )
    _assert_diagonal_gaussian(zetas, target, two_point=increments == "two_point")
    updates, state = tx.update(
        jax.tree.map(jnp.zeros_like, params), tx.init(params), params, **extra
    )
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
    chex.assert_tree_all_finite(updates)
    if state.anchor != ():
        assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(state.anchor))


def test_full_covariance_noise_and_its_two_point_draw():
    """A full `Σ` on flat params: Cov ζ = Σ, Gaussian or one sign per column of `Σ^½`."""
    d = 4
    a = np.random.default_rng(3).normal(size=(d, d))
    cov = a @ a.T / d + 0.2 * np.eye(d)
    w = jnp.zeros(d)
    for increments in ("gaussian", "two_point"):
        tx = add_state_dependent_noise(2, noise.full(jnp.asarray(cov)), increments=increments)
        z = _sample(tx, w, N_MC)
        emp = z.T @ z / N_MC
        se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / N_MC)
        assert np.max(np.abs(emp - cov) / se) < Z, (increments, emp, cov)
        if increments == "two_point":
            # ζ = Σ^½ s with s ∈ {±1}^d: at most 2^d distinct values.
            assert len({tuple(np.round(r, 4)) for r in z[:2000]}) <= 2**d


def _factors16(m=12, seed=4):
    """`m` gradient samples of 16 correlated coordinates, as a pytree like `_params()`."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(m, 16)) @ (np.eye(16) + 0.5 * rng.normal(size=(16, 16)))
    return {"a": jnp.asarray(g[:, :8], jnp.float32), "b": jnp.asarray(g[:, 8:].reshape(m, 2, 4))}


# name: the empirical model (full covariance from factors like the params)
EMPIRICAL = {
    "empirical": lambda: noise.empirical(_factors16()),
    "empirical_state_dependent": lambda: noise.empirical(_factors16(), 0.3, SH),
}


@pytest.mark.parametrize(
    "name, increments",
    [(name, inc) for name in EMPIRICAL for inc in ("gaussian", "two_point")],
)
def test_injected_noise_has_the_empirical_models_covariance(name, increments):
    """Cov ζ (all 16 × 16 entries, across leaves) equals ``model.covariance(w − w̄)``
    within Z standard errors `sqrt((C_ii C_jj + C_ij²)/N)`. That SE is the Gaussian one;
    two-point draws (a sign per factor) have smaller fourth moments, so it is an upper
    bound there."""
    model = EMPIRICAL[name]()
    params = _params()
    tx = add_state_dependent_noise(
        jax.random.key(2), model, anchor=_anchor(), increments=increments
    )
    assert (tx.init(params).anchor == ()) == model.constant
    zetas = _sample(tx, params, N_MC)
    x = jax.tree.map(jnp.subtract, params, _anchor())
    cov = np.asarray(model.covariance(x), np.float64)
    np.testing.assert_allclose(np.diag(cov), _flat(model.variance(x)), rtol=1e-5)
    flat = model.ravel()  # the same model on the flat vector, for sdn.simulate
    np.testing.assert_allclose(flat.covariance(jnp.asarray(_flat(x), jnp.float32)), cov, rtol=1e-5)
    emp = zetas.T @ zetas / N_MC
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / N_MC)
    assert np.max(np.abs(emp - cov) / se) < Z, name
    # The check can fail: the diagonal alone (the same variances, no correlation).
    assert np.max(np.abs(emp - np.diag(np.diag(cov))) / se) > Z
    if name == "empirical_state_dependent":  # ... and so does the model at x = 0
        at_zero = np.asarray(model.covariance(jax.tree.map(jnp.zeros_like, x)))
        assert np.max(np.abs(emp - at_zero) / se) > Z


def test_covariance_test_can_fail():
    """The check above rejects noise that lacks the state-dependent term."""
    params = _params()
    tx = add_power_law_noise(
        0, alpha_g=0.3, alpha_h=0.0, anchor=jax.tree.map(jnp.zeros_like, params)
    )
    zetas = _sample(tx, params, N_MC)
    with pytest.raises(AssertionError):
        _assert_diagonal_gaussian(zetas, 0.3 + 0.5 * _flat(params) ** 2)


def _abs_x_probe(anchor, **kwargs):
    """A transform whose update is exactly `|w − w̄|` (fluctuation 2, `α_H = 1`)."""
    return add_state_dependent_noise(0, noise.fluctuation(0.0, 1.0), anchor=anchor, **kwargs)


def _anchor_trajectory(tx, ws):
    state = tx.init(ws[0])
    used, stored = [], []
    for w in ws:
        z, state = tx.update(jnp.zeros_like(w), state, w, grad_fluctuation=2 * jnp.ones_like(w))
        used.append(np.asarray(z))
        stored.append(state.anchor)
    return np.array(used), stored


@pytest.mark.parametrize("beta", [0.9, 0.3])  # w − w̄ read from the new anchor / the old one
def test_ema_anchor_follows_definition(beta):
    ws = jnp.asarray(np.random.default_rng(0).normal(size=(12, 5)), jnp.float32)
    used, stored = _anchor_trajectory(_abs_x_probe(sdn.optim.ema_anchor(beta)), ws)
    a = np.asarray(ws[0], np.float64)  # w̄_0 = params at init
    for k, w in enumerate(np.asarray(ws, np.float64)):
        np.testing.assert_allclose(used[k], np.abs(w - a), rtol=1e-5, atol=1e-6)
        a = beta * a + (1 - beta) * w
        np.testing.assert_allclose(stored[k], a, rtol=1e-5, atol=1e-6)


def test_init_and_periodic_anchors():
    ws = jnp.asarray(np.random.default_rng(1).normal(size=(10, 3)), jnp.float32)
    used, _ = _anchor_trajectory(_abs_x_probe("init"), ws)
    np.testing.assert_allclose(used, np.abs(ws - ws[0]), rtol=1e-6)
    used, _ = _anchor_trajectory(_abs_x_probe(sdn.optim.periodic_anchor(every=4)), ws)
    copies = ws[(np.arange(10) // 4) * 4]
    np.testing.assert_allclose(used, np.abs(ws - copies), rtol=1e-6)
    assert np.all(used[[0, 4, 8]] == 0)


def _run(tx, steps=3, params=None, **extra):
    """A few eager steps on sine gradients (eager: no compile per transform)."""
    params = _params() if params is None else params
    state = tx.init(params)
    out = []
    for k in range(steps):
        grads = jax.tree.map(lambda p, k=k: jnp.sin(p * (k + 1)), params)
        updates, state = tx.update(grads, state, params, **extra)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return params, out


@pytest.mark.parametrize("zero", [0.0, jnp.asarray(0.0)])
def test_zero_scales_give_the_wrapped_optimizer_exactly(zero):
    sgd = optax.sgd(0.1, momentum=0.9)
    expected, _ = _run(sgd)
    got, _ = _run(optax.chain(add_power_law_noise(3, alpha_g=zero, alpha_h=zero), sgd))
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
        np.testing.assert_array_equal(e, g)
    got, _ = _run(power_law_sgd(3, 0.1, alpha_g=zero, alpha_h=zero, momentum=0.9))
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
        np.testing.assert_array_equal(e, g)


def test_deterministic_for_a_key_and_any_key_impl():
    def final(key):
        return _flat(_run(power_law_sgd(key, 0.1, alpha_g=0.1, alpha_h=1.0))[0])

    a = final(jax.random.key(7))
    np.testing.assert_array_equal(a, final(jax.random.key(7)))
    np.testing.assert_array_equal(a, final(7))  # an int seed is jax.random.key(seed)
    np.testing.assert_array_equal(a, final(jax.random.PRNGKey(7)))  # raw uint32 key
    assert not np.array_equal(a, final(jax.random.key(8)))
    rbg = final(jax.random.key(7, impl="rbg"))
    np.testing.assert_array_equal(rbg, final(jax.random.key(7, impl="rbg")))
    assert not np.array_equal(rbg, a)


def test_vmap_over_seeds():
    params = _params()
    grads = jax.tree.map(jnp.ones_like, params)

    def two_steps(key):
        tx = power_law_sgd(key, 0.1, alpha_g=0.1, alpha_h=1.0)
        state = tx.init(params)
        p = params
        for _ in range(2):
            u, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, u)
        return p

    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.jit(jax.vmap(two_steps))(keys)
    for i in range(3):
        one = two_steps(keys[i])
        for b, o in zip(jax.tree.leaves(batched), jax.tree.leaves(one)):
            np.testing.assert_allclose(b[i], o, rtol=1e-6, atol=1e-7)
    flat = np.asarray(batched["a"])
    assert not np.allclose(flat[0], flat[1])


def test_inject_hyperparams_changes_the_noise():
    params = _params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    anchor = jax.tree.map(jnp.zeros_like, params)
    tx = optax.inject_hyperparams(add_power_law_noise, static_args=("key", "anchor"))(
        jax.random.key(0), alpha_g=1.0, alpha_h=0.0, anchor=anchor
    )
    state = tx.init(params)
    update = jax.jit(tx.update)
    u1, _ = update(zeros, state, params)
    state.hyperparams["alpha_g"] = jnp.asarray(4.0)
    u4, _ = update(zeros, state, params)
    np.testing.assert_allclose(_flat(u4), 2 * _flat(u1), rtol=1e-6)  # same draw, std × 2
    state.hyperparams["alpha_g"] = jnp.asarray(0.0)
    u0, _ = update(zeros, state, params)
    assert np.all(_flat(u0) == 0)
    state.hyperparams["alpha_h"] = jnp.asarray(1.0)  # now |ζ| = |w − 0| |z|
    uh, _ = update(zeros, state, params)
    np.testing.assert_allclose(np.abs(_flat(uh)), np.abs(_flat(params) * _flat(u1)), rtol=1e-5)
    # The learning rate and the scales of power_law_sgd are all injectable.
    tx = optax.inject_hyperparams(power_law_sgd, static_args=("key",))(
        learning_rate=0.1, key=0, alpha_g=0.5, alpha_h=0.5
    )
    state = tx.init(params)
    _, state = jax.jit(tx.update)(zeros, state, params)
    assert set(state.hyperparams) >= {"learning_rate", "alpha_g", "alpha_h"}


def test_multi_transform_leaves_biases_alone():
    params = {"w": jnp.ones((3, 2)), "bias": jnp.ones(2)}
    labels = {"w": "noisy", "bias": "plain"}
    grads = jax.tree.map(jnp.ones_like, params)
    noisy = add_power_law_noise(0, alpha_g=1.0, alpha_h=1.0)
    tx = optax.multi_transform({"noisy": noisy, "plain": optax.identity()}, labels)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_array_equal(updates["bias"], grads["bias"])
    assert not np.allclose(updates["w"], grads["w"])
    # Extra arguments are masked like the updates only on request; else a clear error.
    fluct = {"w": jnp.full((3, 2), 2.0), "bias": jnp.full(2, 2.0)}
    by_f = add_state_dependent_noise(0, noise.fluctuation(9.0))
    tx = optax.multi_transform(
        {"noisy": by_f, "plain": optax.identity()}, labels, mask_compatible_extra_args=True
    )
    updates, _ = tx.update(grads, tx.init(params), params, grad_fluctuation=fluct)
    np.testing.assert_allclose(updates["w"], 1 + 3.0 * 2.0 / 2)
    np.testing.assert_array_equal(updates["bias"], 1.0)
    tx = optax.multi_transform({"noisy": by_f, "plain": optax.identity()}, labels)
    with pytest.raises(ValueError, match="mask_compatible_extra_args"):
        tx.update(grads, tx.init(params), params, grad_fluctuation=fluct)


def test_multi_steps_applies_noise_to_the_accumulated_gradient():
    params = _params()
    g1 = jax.tree.map(jnp.ones_like, params)
    g2 = jax.tree.map(lambda p: 3 * jnp.ones_like(p), params)
    inner = power_law_sgd(5, 0.1, alpha_g=0.1, alpha_h=1.0)
    tx = optax.MultiSteps(inner, every_k_schedule=2)
    state = tx.init(params)
    update = jax.jit(tx.update)
    u, state = update(g1, state, params)
    assert np.all(_flat(u) == 0)
    u, state = update(g2, state, params)
    mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
    expected, inner_state = inner.update(mean, inner.init(params), params)
    np.testing.assert_allclose(_flat(u), _flat(expected), rtol=1e-6)
    assert int(state.inner_opt_state[0].count) == 1


def test_flax_nnx_optimizer_passes_params_and_extra_args():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    tx = optax.chain(add_state_dependent_noise(0, noise.fluctuation(4.0)), optax.sgd(0.5))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    before = jax.tree.map(np.array, nnx.state(model, nnx.Param))  # a copy, not a view
    grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
    fluct = jax.tree.map(jnp.ones_like, grads)

    @nnx.jit
    def step(model, optimizer, grads, fluct):
        optimizer.update(model, grads, grad_fluctuation=fluct)

    step(model, optimizer, grads, fluct)
    after = nnx.state(model, nnx.Param)
    for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_allclose(a, b - 0.5 * (1 + 2.0 * 1 / 2), rtol=1e-6)  # k=2, f/2=1/2
    # The EMA anchor needs params: nnx.Optimizer gives them.
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, power_law_sgd(0, 0.1, alpha_g=0.1, alpha_h=1.0), wrt=nnx.Param)
    loss = lambda m, x: jnp.sum(m(x) ** 2)  # noqa: E731
    grads = nnx.grad(loss)(model, jnp.ones((4, 3)))
    nnx.jit(lambda m, o, g: o.update(m, g))(model, optimizer, grads)
    assert int(optimizer.opt_state[0].count[...]) == 1


def test_plain_loop_trains_a_quadratic():
    """A user's loop on `|w|²/2`: it converges, and the noise is there. With `η = 0.1` and
    `Var ζ ≥ α_g`, each coordinate's variance after 100 steps is at least
    `η² α_g Σ_{k<100} (1−η)^{2k}`; the sample variance over 1024 independent coordinates
    (SE `V sqrt(2/n)`) must reach it within Z SEs. Without the noise every coordinate is
    `3 · 0.9¹⁰⁰` and the variance 0."""
    eta, alpha_g, n = 0.1, 1e-4, 1024
    w = jnp.full(n, 3.0)
    tx = power_law_sgd(0, eta, alpha_g=alpha_g, alpha_h=1e-2)
    state = tx.init(w)
    update = jax.jit(tx.update)
    for _ in range(100):
        g = w  # grad of |w|²/2
        u, state = update(g, state, w)
        w = optax.apply_updates(w, u)
    assert float(jnp.mean(w**2)) < 0.3**2
    floor = eta**2 * alpha_g * sum((1 - eta) ** (2 * k) for k in range(100))
    assert np.var(np.asarray(w)) > floor * (1 - Z * np.sqrt(2 / n)), np.var(np.asarray(w))


def test_schedules_through_inject_hyperparams():
    w = jnp.ones(2)
    make = optax.inject_hyperparams(add_power_law_noise, static_args=("key", "anchor"))
    tx = make(0, alpha_g=lambda count: 4.0 * count, alpha_h=0.0, anchor="init")
    ref = make(0, alpha_g=1.0, alpha_h=0.0, anchor="init")
    state, ref_state = tx.init(w), ref.init(w)
    for k in range(3):
        z, state = tx.update(jnp.zeros(2), state, w)
        z1, ref_state = ref.update(jnp.zeros(2), ref_state, w)
        np.testing.assert_allclose(z, np.sqrt(4.0 * k) * z1, rtol=1e-5, atol=1e-7)


def test_grad_fluctuation_from_batch_halves_gives_small_batch_covariance():
    """Halves of a batch of B samples with per-sample covariance C: ζ has Cov C r."""
    small, large = 8, 64
    r = 1 / small - 1 / large
    c = np.array([[2.0, 0.8], [0.8, 1.0]])
    n = N_MC
    chol = np.linalg.cholesky(c)
    samples = np.random.default_rng(0).normal(size=(n, large, 2)) @ chol.T
    fluct = samples[:, : large // 2].mean(1) - samples[:, large // 2 :].mean(1)
    tx = from_fluctuation(small, large)
    g = jnp.zeros(2)
    state = tx.init(g)
    zetas = jax.vmap(lambda f: tx.update(g, state, grad_fluctuation=f)[0])(jnp.asarray(fluct))
    zetas = np.asarray(zetas, np.float64)
    target = r * c
    emp = zetas.T @ zetas / n
    se = np.sqrt((np.outer(np.diag(target), np.diag(target)) + target**2) / n)
    assert np.max(np.abs(emp - target) / se) < Z, (emp, target)
    # The same check rejects the large batch's own noise level (k = 1).
    assert np.max(np.abs(zetas.T @ zetas / n / 7 - target) / se) > Z


def test_fluctuation_from_a_smaller_batch_than_the_step_is_rescaled():
    """Halves of B = 16 samples feeding a step of batch 64: `fluctuation_batch_size=16`
    keeps Cov ζ = C r; leaving it at the default (64) would give four times that."""
    small, large, big = 8, 64, 16
    r = 1 / small - 1 / large
    c = np.array([[2.0, 0.8], [0.8, 1.0]])
    n = N_MC
    samples = np.random.default_rng(1).normal(size=(n, big, 2)) @ np.linalg.cholesky(c).T
    fluct = jnp.asarray(samples[:, : big // 2].mean(1) - samples[:, big // 2 :].mean(1))
    target = r * c
    se = np.sqrt((np.outer(np.diag(target), np.diag(target)) + target**2) / n)
    g = jnp.zeros(2)

    def covariance(tx):
        state = tx.init(g)
        z = jax.vmap(lambda f: tx.update(g, state, grad_fluctuation=f)[0])(fluct)
        z = np.asarray(z, np.float64)
        return z.T @ z / n

    right = from_fluctuation(small, large, fluctuation_batch_size=big)
    assert np.max(np.abs(covariance(right) - target) / se) < Z
    wrong = from_fluctuation(small, large)
    assert np.max(np.abs(covariance(wrong) - target) / se) > Z
    with pytest.raises(ValueError, match="fluctuation_batch_size"):
        from_fluctuation(small, large, fluctuation_batch_size=1)


def test_grad_variance_and_model_sources_scale_the_same_draw():
    """With one key (and params), each model multiplies the same standard normal draw z."""
    w = jnp.array([0.0, 1.0, -2.0])
    anchor = jnp.zeros(3)
    plain = add_power_law_noise(4, alpha_g=1.0, alpha_h=0.0)
    z, _ = plain.update(jnp.zeros(3), plain.init(w))
    z = np.asarray(z)
    small, large = 16, 256
    r = 1 / small - 1 / large
    v = jnp.array([1.0, 2.0, 0.5])
    tx = from_gradient_variance(4, small, large, kappa=3.0, anchor=anchor)
    zeta, _ = tx.update(jnp.zeros(3), tx.init(w), w, grad_variance=v)
    np.testing.assert_allclose(zeta, np.sqrt(r * v * (1 + 3.0 * w**2)) * z, rtol=1e-5)
    tx = from_moments(4, small, large, sigma_g=2.0, sigma_h=0.5)
    zeta, _ = tx.update(jnp.zeros(3), tx.init(w), w)  # anchor ema: x = 0 at step 0
    np.testing.assert_allclose(zeta, np.sqrt(r * 2.0) * z, rtol=1e-5)
    # Negative variance estimates count as 0, never NaN.
    tx = add_state_dependent_noise(4, noise.gradient_variance(1.0))
    zeta, _ = tx.update(jnp.zeros(3), tx.init(w), grad_variance=-v)
    assert np.all(np.asarray(zeta) == 0)


def test_non_finite_gradients_pass_through():
    g = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 1.0, 0.0])
    w = jnp.array([0.0, 1e30, -1.0, 3.0, 1e15])
    tx = add_power_law_noise(0, alpha_g=1.0, alpha_h=1.0, anchor=jnp.zeros(5))
    u, _ = jax.jit(tx.update)(g, tx.init(w), w)
    u = np.asarray(u)
    assert np.isnan(u[0]) and u[1] == np.inf and u[2] == -np.inf
    assert np.all(np.isfinite(u[3:]))


def test_bad_inputs_are_named():
    params = _params()
    g = jax.tree.map(jnp.zeros_like, params)
    cases = [
        (dict(alpha_g=-1.0, alpha_h=0.0), "sigma_g"),
        (dict(alpha_g=1.0, alpha_h={"a": 1.0, "b": -jnp.ones((2, 4))}), "sigma_h"),
        (dict(alpha_g=1.0, alpha_h=0.0, anchor="mean"), "anchor.*'mean'"),
        (dict(alpha_g=1.0, alpha_h=1.0, anchor="mean"), "anchor.*'mean'"),
        (dict(alpha_g=1.0, alpha_h=1.0, anchor={"a": jnp.full(8, jnp.nan)}), "anchor"),
        (dict(alpha_g=1.0, alpha_h=1.0, increments="sobol"), "increments.*'sobol'"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            add_power_law_noise(0, **kwargs)
    with pytest.raises(ValueError, match="ema_anchor: decay"):
        sdn.optim.ema_anchor(1.5)
    with pytest.raises(ValueError, match="periodic_anchor: every"):
        sdn.optim.periodic_anchor(every=0)
    init_cases = [
        (dict(alpha_g={"a": 1.0}, alpha_h=0.0), "sigma_g.*structure"),
        (dict(alpha_g=1.0, alpha_h={"a": 1.0, "b": jnp.ones(3)}), "sigma_h.*shape"),
        (dict(alpha_g=1.0, alpha_h=1.0, anchor={"a": jnp.zeros(8)}), "anchor.*structure"),
        (dict(alpha_g=1.0, alpha_h=1.0, anchor={"a": jnp.zeros(8), "b": jnp.zeros(8)}), "anchor"),
    ]
    for kwargs, match in init_cases:
        with pytest.raises(ValueError, match=match):
            add_power_law_noise(0, **kwargs).init(params)
    tx = add_power_law_noise(0, alpha_g=1.0, alpha_h=1.0)
    with pytest.raises(ValueError, match="params"):
        tx.update(g, tx.init(params))
    tx = add_power_law_noise(0, alpha_g=1.0, alpha_h=0.0)
    tx.update(g, tx.init(params))  # state-independent: params not needed
    tx = add_state_dependent_noise(0, noise.gradient_variance(1.0))
    with pytest.raises(ValueError, match="grad_variance"):
        tx.update(g, tx.init(params), params)
    with pytest.raises(ValueError, match="grad_variance.*structure"):
        tx.update(g, tx.init(params), params, grad_variance={"a": jnp.ones(8)})
    with pytest.raises(TypeError, match="key"):
        add_power_law_noise("seed", alpha_g=1.0, alpha_h=0.0)
    with pytest.raises(TypeError, match="model"):
        add_state_dependent_noise(0, 1e-4)
    for model in (noise.alpha_stable(1.5), noise.fluctuation(1.0)):
        with pytest.raises(ValueError, match="two_point.*Gaussian"):
            add_state_dependent_noise(0, model, increments="two_point")
    with pytest.raises(ValueError, match="large"):
        from_gradient_variance(0, 64, 8)
    with pytest.raises(ValueError, match="kappa"):
        from_fluctuation(8, 64, kappa=-1.0)
    with pytest.raises(ValueError, match="source.*'adam'"):
        from_batch_sizes(8, 64, 0, source="adam")


def test_state_is_a_small_named_tuple():
    params = _params()
    state = add_power_law_noise(0, alpha_g=1.0, alpha_h=1.0).init(params)
    assert isinstance(state, StateDependentNoiseState)
    assert state.count.dtype == jnp.int32 and state.count.shape == ()
    assert jnp.issubdtype(state.rng_key.dtype, jax.dtypes.prng_key)
    for model in (noise.isotropic(1.0), noise.power_law(1.0, 0.0), noise.alpha_stable(1.5)):
        assert add_state_dependent_noise(0, model).init(params).anchor == ()


@pytest.mark.parametrize(
    "module", ["anchors", "fluctuation", "replicas", "sources", "svag", "transform"]
)
def test_docstring_examples_run(module):
    import importlib

    mod = importlib.import_module(f"sdn.optim.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_donating_the_state_keeps_the_callers_key_and_params():
    params = _params()
    key = jax.random.key(0)
    tx = add_power_law_noise(key, alpha_g=1.0, alpha_h=1.0, anchor="init")
    update = jax.jit(tx.update, donate_argnums=(1,))
    update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    jax.random.normal(key)  # neither was deleted by the donation
    assert np.isfinite(_flat(params)).all()


# ----------------------------------------------------------------------------- new models


def _stable_reference(alpha, n, seed):
    """`n` exact standard symmetric α-stable draws (Chambers, Mallows & Stuck, 1976)."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(-np.pi / 2, np.pi / 2, n)
    w = rng.exponential(size=n)
    return (
        np.sin(alpha * u)
        / np.cos(u) ** (1 / alpha)
        * (np.cos((1 - alpha) * u) / w) ** ((1 - alpha) / alpha)
    )


def test_alpha_stable_injection_has_tail_index_alpha():
    """Hill's index of the injected noise equals that of an exact α-stable sample of the
    same size at the same depth `k`, within Z combined standard errors.

    Hill's estimate of a stable law is biased at any finite depth (1.54 for α = 1.5 at
    k/n = 1%), so it is compared with the estimate on the exact law, which has the same
    bias, not with α. The check rejects the nearest rivals: α = 1.7 (1.82 at this depth,
    ~8 SEs away) and Gaussian noise."""
    alpha, n, k = 1.5, 400_000, 4000
    tx = add_state_dependent_noise(3, noise.alpha_stable(alpha, 0.01))
    est = stats.hill_estimator(_sample(tx, jnp.zeros(64), n // 64).ravel(), k=k)

    def distance(reference):
        return abs(est.index - reference.index) / np.hypot(est.stderr, reference.stderr)

    assert distance(stats.hill_estimator(_stable_reference(alpha, n, 0), k=k)) < Z, est
    assert distance(stats.hill_estimator(_stable_reference(1.7, n, 0), k=k)) > Z, est
    g = _sample(add_state_dependent_noise(3, noise.isotropic(1e-4)), jnp.zeros(64), n // 64)
    assert abs(stats.hill_estimator(g.ravel(), k=k).index - est.index) > Z * est.stderr


@pytest.mark.parametrize("model", ["power_law", "alpha_stable", "empirical"])
def test_simulate_and_the_transform_draw_the_same_increment_law(model):
    """One model object: one step of `sdn.simulate` (dt = 1, scale 1, no drift) from `w`
    and the transform's `ζ` at params `w` with anchor 0 are samples of one law (KS)."""
    from scipy import stats as sps

    m = {
        "power_law": lambda: noise.power_law(0.2, 1.5),
        "alpha_stable": lambda: noise.alpha_stable(1.7, 0.3),
        "empirical": lambda: noise.empirical(jnp.linspace(-1.0, 1.0, 9), 0.2, 1.5),
    }[model]()
    w = jnp.array(0.8)
    n = 4000
    sde = sdn.SDE(lambda x: 0.0 * x, m, 1.0)
    ends = sdn.simulate(jax.random.key(11), sde, w, dt=1.0, n_steps=1, n_paths=n)
    engine = np.asarray(ends, np.float64) - 0.8
    zeta = _sample(add_state_dependent_noise(5, m, anchor=jnp.zeros(())), w, n).ravel()
    assert sps.ks_2samp(engine, zeta).pvalue > 1e-3
    # The test can fail: a model of another variance is told apart.
    other = _sample(add_state_dependent_noise(5, noise.isotropic(0.2)), w, n).ravel()
    if model != "alpha_stable":
        assert sps.ks_2samp(engine, other).pvalue < 1e-3


def test_replicas_draw_independent_noise_and_a_shared_key_is_caught():
    """`jax.vmap(tx.init)` over two replicas: the correlation of their noise is 0 within
    its Monte Carlo error (SE of a sample correlation of independent variables: 1/sqrt(N))."""
    tx = add_power_law_noise(0, alpha_g=1.0, alpha_h=0.0)
    params = jnp.stack([jnp.linspace(-1, 1, 64), jnp.linspace(-1, 1, 64) + 0.01])
    states = jax.vmap(tx.init)(params)
    assert_independent_replicas(states)

    def step(state, _):
        u, state = jax.vmap(tx.update)(jnp.zeros_like(params), state, params)
        return state, u

    _, u = jax.lax.scan(step, states, None, length=200)
    a, b = np.asarray(u[:, 0]).ravel(), np.asarray(u[:, 1]).ravel()
    corr = np.corrcoef(a, b)[0, 1]
    assert abs(corr) < Z / np.sqrt(a.size), corr
    # Equal params under one key: one stream, caught; reseeding per replica mends it.
    same = jax.vmap(tx.init)(jnp.stack([params[0], params[0]]))
    with pytest.raises(ValueError, match="share the noise key"):
        assert_independent_replicas(same)
    mended = jax.vmap(reseed)(jax.random.split(jax.random.key(1), 2), same)
    assert_independent_replicas(mended)
    u, _ = jax.vmap(tx.update)(jnp.zeros((2, 64)), same, jnp.stack([params[0], params[0]]))
    np.testing.assert_array_equal(u[0], u[1])  # what the check guards against


@pytest.mark.parametrize("per_example", [False, True])
def test_value_grad_and_fluctuation_in_one_pass(per_example):
    """Loss and gradient equal the batch's; the fluctuation is g(first half) − g(second)."""
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.normal(size=(8, 3))), jnp.asarray(rng.normal(size=8))
    w = {"k": jnp.asarray(rng.normal(size=3)), "b": jnp.asarray(0.3)}

    def batch_loss(p, x, y):
        return jnp.mean((x @ p["k"] + p["b"] - y) ** 2)

    def example_loss(p, xi, yi):
        return (xi @ p["k"] + p["b"] - yi) ** 2

    fn = value_grad_and_fluctuation(
        example_loss if per_example else batch_loss, per_example=per_example
    )
    loss, grad, fluct = jax.jit(fn)(w, x, y)
    np.testing.assert_allclose(loss, batch_loss(w, x, y), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(jax.grad(batch_loss)(w, x, y))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    want = jax.tree.map(
        jnp.subtract, jax.grad(batch_loss)(w, x[:4], y[:4]), jax.grad(batch_loss)(w, x[4:], y[4:])
    )
    for a, b in zip(jax.tree.leaves(fluct), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        fn(w, x[:7], y[:7])


# ----------------------------------------------------------------------------- 1.0 spellings


def _updates(tx, w, steps=3, **extra):
    return _flat(_run(tx, steps=steps, params=w, **extra)[1][-1])


def test_power_law_sgd_in_the_old_order_warns_and_equals_the_new():
    """Old order (learning_rate, key) is told by type; two ints read as (key, lr)."""
    w = _params()
    new = _updates(power_law_sgd(jax.random.key(3), 0.1, alpha_g=0.1, alpha_h=1.0), w)
    with pytest.warns(DeprecationWarning, match=r"power_law_sgd\(key, learning_rate"):
        old = power_law_sgd(0.1, jax.random.key(3), alpha_g=0.1, alpha_h=1.0)
    np.testing.assert_array_equal(_updates(old, w), new)
    with pytest.warns(DeprecationWarning, match=r"power_law_sgd\(key, learning_rate"):
        old_int = power_law_sgd(0.1, 3, alpha_g=0.1, alpha_h=1.0)
    np.testing.assert_array_equal(_updates(old_int, w), new)
    # Two ints are ambiguous: the documented rule reads them in the new order, silently.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ints = power_law_sgd(3, 1, alpha_g=0.1, alpha_h=1.0)
    ref = power_law_sgd(key=3, learning_rate=1, alpha_g=0.1, alpha_h=1.0)
    np.testing.assert_array_equal(_updates(ints, w), _updates(ref, w))


def test_reseed_in_the_old_order_warns_and_equals_the_new():
    tx = add_power_law_noise(0, alpha_g=1.0, alpha_h=0.0)
    state = tx.init(jnp.zeros(3))
    new = reseed(jax.random.key(5), state)
    with pytest.warns(DeprecationWarning, match=r"reseed\(key, opt_state\)"):
        old = reseed(state, jax.random.key(5))
    np.testing.assert_array_equal(
        jax.random.key_data(old.rng_key), jax.random.key_data(new.rng_key)
    )


@pytest.mark.parametrize(
    "old, new, match",
    [
        (
            lambda: from_batch_sizes(8, 64, 2, source="grad_variance", kappa=3.0),
            lambda: from_gradient_variance(2, 8, 64, kappa=3.0),
            "from_gradient_variance",
        ),
        (
            lambda: from_batch_sizes(
                8, 64, 2, source="grad_fluctuation", fluctuation_batch_size=16
            ),
            lambda: from_fluctuation(8, 64, fluctuation_batch_size=16),
            "from_fluctuation",
        ),
        (
            lambda: from_batch_sizes(8, 64, 2, source="gaussian", sigma_g=2.0, sigma_h=0.5),
            lambda: from_moments(2, 8, 64, sigma_g=2.0, sigma_h=0.5),
            "from_moments",
        ),
    ],
)
def test_from_batch_sizes_warns_naming_the_constructor_of_its_source(old, new, match):
    w = jnp.array([0.0, 1.0, -2.0])
    extra = dict(grad_variance=jnp.ones(3), grad_fluctuation=jnp.array([1.0, 2.0, -1.0]))
    with pytest.warns(DeprecationWarning, match=match):
        tx_old = old()
    np.testing.assert_array_equal(_updates(tx_old, w, **extra), _updates(new(), w, **extra))


def test_anchor_side_knobs_warn_fold_into_the_tracker_or_raise():
    ws = jnp.asarray(np.random.default_rng(2).normal(size=(6, 3)), jnp.float32)
    with pytest.warns(DeprecationWarning, match=r"ema_anchor\(0.5\)"):
        old = _abs_x_probe("ema", ema_decay=0.5)
    new = _abs_x_probe(sdn.optim.ema_anchor(0.5))
    np.testing.assert_array_equal(_anchor_trajectory(old, ws)[0], _anchor_trajectory(new, ws)[0])
    with pytest.warns(DeprecationWarning, match=r"periodic_anchor\(4\)"):
        old = power_law_sgd(0, 0.1, alpha_g=0.1, alpha_h=1.0, anchor="periodic", anchor_every=4)
    new = power_law_sgd(0, 0.1, alpha_g=0.1, alpha_h=1.0, anchor=sdn.optim.periodic_anchor(4))
    np.testing.assert_array_equal(_updates(old, _params(), 6), _updates(new, _params(), 6))
    with pytest.warns(DeprecationWarning, match="ema_anchor"):
        sdn.optim.anchor_tracker("ema", 0.9)
    # Formerly ignored in silence: a knob with an anchor it does not apply to.
    for kwargs in (dict(anchor="init", ema_decay=0.9), dict(anchor_every=10)):
        with pytest.raises(ValueError, match="applies only to anchor"):
            add_power_law_noise(0, alpha_g=1.0, alpha_h=1.0, **kwargs)
    with (
        pytest.raises(ValueError, match="applies only to anchor"),
        pytest.warns(DeprecationWarning),
    ):
        from_batch_sizes(8, 64, 0, anchor="periodic", ema_decay=0.9)


def test_the_state_type_is_importable_as_before():
    from sdn.optim.replicas import StateDependentNoiseState as from_replicas
    from sdn.optim.transform import StateDependentNoiseState as beside_transform

    assert from_replicas is beside_transform is StateDependentNoiseState


# ----------------------------------------------------------------------------- SVAG


def _svag_stationary_variance(ell, eta, h, n_chains, steps, key=0, planted=None):
    """Iterates of ``chain(svag(ℓ), sgd(η))`` on `L = h w²/2`, half-batch gradients
    `h w + ε`, `ε ~ N(0, 1)` independent per half: the final `w` of each of `n_chains`."""
    tx = optax.chain(sdn.optim.svag(ell) if planted is None else planted, optax.sgd(eta))

    def chain(k):
        def step(carry, k):
            w, state = carry
            e = jax.random.normal(k, (2,))
            g_a, g_b = h * w + e[0], h * w + e[1]
            u, state = tx.update((g_a + g_b) / 2, state, w, grad_fluctuation=g_a - g_b)
            return (w + u, state), None

        w0 = jnp.zeros(())
        (w, _), _ = jax.lax.scan(step, (w0, tx.init(w0)), jax.random.split(k, steps))
        return w

    return np.asarray(jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(key), n_chains)))


@pytest.mark.parametrize("ell", [1.0, 8.0])
def test_svag_has_the_exact_stationary_variance(ell):
    """At ηh = 1, σ² = 1: Var w = ησ²/(h(2 − ηh/ℓ)) (docs/theory.md §5, SVAG) within Z SEs of
    the sample variance of independent chains; the nearest wrong answers (the SDE's
    ησ²/(2h); SGD's at ℓ = 8 and the variance without the 1/ℓ; ℓ = 8's at ℓ = 1) are each
    rejected (more than Z SEs away)."""
    eta, h, n = 1.0, 1.0, 100_000
    w = _svag_stationary_variance(ell, eta, h, n, steps=int(30 * ell))  # (1−1/ℓ)^(60ℓ) ≈ 0
    var = np.var(w, ddof=1)
    se = np.sqrt((np.mean((w - w.mean()) ** 4) - var**2) / n)  # SE of a sample variance
    exact = eta / (h * (2 - eta * h / ell))
    assert abs(var - exact) < Z * se, (var, exact, se)
    wrong = {"sde": eta / (2 * h)}
    if ell == 1.0:  # (at ℓ = 1 the missing 1/ℓ changes nothing)
        wrong["ell=8"] = eta / (h * (2 - eta * h / 8))
    else:
        wrong["sgd"] = eta / (h * (2 - eta * h))
        wrong["no 1/ell"] = ell * eta / (h * (2 - eta * h))
    for name, v in wrong.items():
        assert abs(var - v) > Z * se, (name, var, v, se)


def test_svag_equals_its_two_weight_form_and_checks_ell():
    g_a, g_b = jnp.array([3.0, -1.0]), jnp.array([1.0, 2.0])
    for ell in (1.0, 2.0, 7.5):
        s = np.sqrt(2 * ell - 1)
        want = ((1 + s) / 2 * g_a + (1 - s) / 2 * g_b) / ell
        tx = sdn.optim.svag(ell)
        got, _ = tx.update((g_a + g_b) / 2, tx.init(g_a), grad_fluctuation=g_a - g_b)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(  # ℓ = 1 is SGD on the first half
        sdn.optim.svag(1).update((g_a + g_b) / 2, None, grad_fluctuation=g_a - g_b)[0], g_a
    )
    for bad in (0.5, -1.0, float("nan")):
        with pytest.raises(ValueError, match="ell must be"):
            sdn.optim.svag(bad)
    with pytest.raises(ValueError, match="grad_fluctuation"):
        sdn.optim.svag(2.0).update(g_a, None)
