"""Fitted noise models (power law, empirical) recover known moments within their errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sizes import tiny_large_batch

import sdn
from sdn import landscapes, noise
from sdn.train import MLP, noise_along, sample_loss, split_model
from sdn.train.loop import functional_apply
from sdn.train.probes import (
    NoiseProfile,
    fit_empirical,
    fit_network_empirical,
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


@pytest.fixture(scope="module")
def coupled():
    """A finite-sum quadratic whose centres follow the curvatures, `c_i = a (h_i − h̄) + e_i`,
    so the gradient at `w*` correlates with the curvature: `σ_gH = Cov(g_i(w*), h_i)` is
    far from 0 (opposite signs in the coordinates), unlike independent centres."""
    rng = np.random.default_rng(5)
    n, dim = 4000, 3
    curv = 1.5 * rng.gamma(2.0, 0.5, size=(n, dim))  # mean 1.5: σ_H ≈ 1.1
    centers = np.array([0.6, -0.6, 0.6]) * (curv - 1.5) + 0.3 * rng.normal(size=(n, dim))
    return landscapes.FiniteSumQuadratic(
        {"curvature": jnp.asarray(curv, jnp.float32), "center": jnp.asarray(centers, jnp.float32)}
    )


def test_per_coordinate_fit_recovers_known_moments(coupled):
    """`C_jj(w* + x) = σ_g + 2σ_gH x_j + σ_H x_j²` holds exactly on the quadratic; the
    fit from sampled batches must land within Z = 5 of its standard errors (9 checks: a
    false alarm has probability below 1e-5). The true σ_gH is at least 12 standard errors
    from 0, so a fit that leaves it out (Z ≥ 12), flips its sign (Z ≥ 24) or drops the 2
    of `2σ_gH x` (σ_gH and its error doubled: Z ≥ 6) fails."""
    w_star = coupled.minimum
    known = [np.asarray(a, np.float64) for a in coupled.gradient_noise_moments()]
    d = jnp.array([2.0, -2.0, 2.0])
    fit = fit_power_law(
        jax.random.key(2),
        coupled.sample_loss,
        w_star,
        coupled.data,
        d,
        batch_size=4000,
        groups=16,
        chunk_size=500,
    )
    estimates = (fit.sigma_g, fit.sigma_gh, fit.sigma_h)
    for est, se, true in zip(estimates, fit.stderr, known):
        assert np.all(se > 0)
        z = (np.asarray(est) - true) / np.asarray(se)
        assert np.abs(z).max() < 5, (est, true, se)
    # The fixture can catch those bugs: |σ_gH| ≥ 12 SE, signs (−, +, −), and the fit agrees.
    assert np.all(np.abs(known[1]) >= 12 * np.asarray(fit.stderr[1])), (known[1], fit.stderr[1])
    np.testing.assert_array_equal(np.sign(known[1]), [-1.0, 1.0, -1.0])
    np.testing.assert_array_equal(np.sign(fit.sigma_gh), np.sign(known[1]))
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
    kw = dict(ts=(-1.0, 0.0, 0.5, 1.0), batch_size=64, groups=4)
    net = fit_network_power_law(jax.random.key(4), model, x, y, d, **kw)
    ell = sample_loss(functional_apply(graphdef))
    ref = fit_power_law(jax.random.key(4), ell, params, (x, y), d, **kw)
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
        fit_power_law(k, quadratic.sample_loss, w, quadratic.data, d, groups=1)
    with pytest.raises(ValueError, match="non-zero"):
        fit_power_law(k, quadratic.sample_loss, w, quadratic.data, d.at[1].set(0.0))
    with pytest.raises(ValueError, match="ts"):
        fit_power_law(k, quadratic.sample_loss, w, quadratic.data, d, ts=(0.0, 1.0))


def _injected_noise(setup, params, points, n, lr):
    """`(len(points), n, P)` draws of the noise ζ that a §6.4 method's transform adds to a
    zero gradient at each of `points`, each draw from a fresh state initialised at
    `params` (the anchor), so `x = point − params`; the transform ends in ``sgd``: its
    update is `−lr (g + ζ)`. One compilation for all points."""
    zero = jax.tree.map(jnp.zeros_like, params)

    def one(key):
        out = []
        for k, at in zip(jax.random.split(key, len(points)), points):
            tx = setup["tx"](k) if callable(setup["tx"]) else setup["tx"]
            u, _ = tx.update(zero, tx.init(params), at)
            out.append(jax.flatten_util.ravel_pytree(u)[0] / -lr)
        return jnp.stack(out)

    keys = jax.random.split(jax.random.key(7), n)
    zeta = jax.jit(lambda ks: jax.lax.scan(lambda c, k: (c, one(k)), None, ks)[1])(keys)
    return np.asarray(zeta, np.float64).transpose(1, 0, 2)


def _flat64(tree):
    return np.asarray(jax.flatten_util.ravel_pytree(tree)[0], np.float64)


@pytest.mark.slow
def test_large_batch_methods_calibrated_from_the_fits(monkeypatch):
    """§6.4's fitted methods at tiny sizes, checked on the transforms the run trained with:
    ``power_law_fitted`` injects `Var ζ_j = r (σ_g,j + σ_H,j x_j²)` (fitted σ clipped at
    0) and ``empirical_fitted`` `Cov ζ = r S`, r = 1/b_s − 1/b_l, from one large-batch
    minimum; and the summary reports the noise that was injected."""
    import sys

    from sdn.experiments.large_batch import run_large_batch

    # The module whose method_setup the run calls: the spy records each fit and setup.
    large_batch = sys.modules[run_large_batch.__module__]

    # Two steps and one seed: the test reads the transforms, not what they train to.
    cfg = tiny_large_batch(
        fit_samples=24,
        steps=2,
        eval_every=2,
        seeds=1,
        methods=("power_law_fitted", "empirical_fitted"),
    )
    used = {}

    def spy(name, cfg, fit=None):
        used[name] = (fit, real(name, cfg, fit))
        return used[name][1]

    real = large_batch.method_setup
    monkeypatch.setattr(large_batch, "method_setup", spy)
    res = run_large_batch(cfg)
    by = {s["method"]: s for s in res.summary}
    r, lr = 1 / cfg.small_batch - 1 / cfg.large_batch, cfg.learning_rate
    n = 2000  # draws: n·Var̂/Var ~ χ²_n, relative error sqrt(2/n) = 3.2%

    # power_law_fitted, at the anchor (x = 0) and at x_j = sqrt(σ_g,j/σ_H,j): a transform
    # without noise, with σ_g and σ_H swapped, or with r = 1/b_s (+33%) fails. Z = 5 per
    # coordinate (~800 of them, two points: a false alarm below 1e-3), pooled Z = 5.
    fit, setup = used["power_law_fitted"]
    sg, sh = (np.maximum(_flat64(v), 0.0) for v in (fit.sigma_g, fit.sigma_h))
    live = (sg > 0) & (sh > 0)
    assert live.mean() > 0.5 and np.std(np.log(sg[live] / sh[live])) > 0.5  # σ_g ≠ σ_H
    w_star = fit.center
    x = np.where(live, np.sqrt(sg / np.where(live, sh, 1.0)), 0.0)
    unravel = jax.flatten_util.ravel_pytree(w_star)[1]
    at = jax.tree.map(jnp.add, w_star, unravel(jnp.asarray(x, jnp.float32)))
    zetas = _injected_noise(setup, w_star, [w_star, at], n, lr)
    for zeta, want in zip(zetas, (r * sg, r * (sg + sh * x**2))):
        on = want > 0
        assert np.all(zeta[:, ~on] == 0)  # clipped estimates: no noise
        ratio = np.mean(zeta[:, on] ** 2, 0) / want[on]
        assert np.abs(ratio - 1).max() < 5 * np.sqrt(2 / n), (ratio.min(), ratio.max())
        assert abs(ratio.mean() - 1) < 5 * np.sqrt(2 / (n * on.sum())), ratio.mean()
    assert by["power_law_fitted"]["alpha_g_mean"] == pytest.approx(r * sg.mean(), rel=1e-5)
    assert np.isfinite(by["power_law_fitted"]["test_acc_mean"])
    assert by["power_law_fitted"]["diverged"] == 0

    # empirical_fitted: Var(vᵀζ) = r λ along S's top eigenvector and along a direction of
    # the factors' span that is not an eigenvector; none out of it (S has rank m − 1 = 23
    # of ~800). A transform without r, or with r², fails; the summary's top eigenvalue,
    # mean variance and share are those of the noise measured (Z = 5 each).
    fit, setup = used["empirical_fitted"]
    emp = by["empirical_fitted"]
    f = np.asarray(fit.model.ravel().factors, np.float64)  # (m, P)
    m = f.shape[0]
    # S = FᵀF/m shares its non-zero eigenvalues with the m × m FFᵀ/m: v = Fᵀu/sqrt(mλ).
    eig, u = np.linalg.eigh(f @ f.T / m)
    vec = f.T @ u / np.sqrt(m * np.maximum(eig, 1e-300))
    zeta = _injected_noise(setup, fit.center, [fit.center], n, lr)[0]
    mixed = vec[:, -1] + vec[:, -2] + vec[:, 1]
    for v in (vec[:, -1], mixed / np.linalg.norm(mixed)):
        want = r * np.mean((f @ v) ** 2)  # r vᵀSv
        got = np.mean((zeta @ v) ** 2)
        assert abs(got / want - 1) < 5 * np.sqrt(2 / n), (got, want)
    top = np.mean((zeta @ vec[:, -1]) ** 2)
    assert abs(emp["noise_top_eig"] / top - 1) < 5 * np.sqrt(2 / n), (emp["noise_top_eig"], top)
    out = np.random.default_rng(0).normal(size=f.shape[1])
    q = np.linalg.qr(f.T)[0]  # the factors' span
    out -= q @ (q.T @ out)
    assert np.mean((zeta @ out) ** 2) < 1e-6 * r * eig[-1] * (out @ out)
    # The mean variance over coordinates: its error from the n draws, pooled over P.
    total = np.sum(zeta**2, 1) / f.shape[1]
    se = total.std(ddof=1) / np.sqrt(n)
    assert abs(emp["noise_var_mean"] - total.mean()) < 5 * se, (emp["noise_var_mean"], total.mean())
    assert emp["noise_top_eig_share"] == pytest.approx(eig[-1] / eig.sum(), rel=1e-4)
    assert emp["fit_rank"] == m == cfg.fit_samples and emp["diverged"] == 0


# ----------------------------------------------------------------------------- empirical


def _correlated_quadratic(n=4000, dim=4):
    """A finite-sum quadratic whose per-sample gradients are correlated across coordinates
    (centres `c_i = A z_i`), so `C(w)` has a full structure that a diagonal model lacks."""
    rng = np.random.default_rng(7)
    mix = np.eye(dim) + 0.8 * np.ones((dim, dim)) / dim + 0.3 * rng.normal(size=(dim, dim))
    centers = rng.normal(size=(n, dim)) @ mix.T
    curv = 1.5 * rng.gamma(4.0, 0.25, size=(n, dim))  # mean 1.5, spread: σ_H > 0
    return landscapes.FiniteSumQuadratic(
        {"curvature": jnp.asarray(curv, jnp.float32), "center": jnp.asarray(centers, jnp.float32)}
    )


def _exact_covariance(prob, w):
    """The population covariance of the `n` per-sample gradients at `w` (exact, float64)."""
    g = np.asarray(jax.vmap(prob.sample_grad, (None, 0))(w, prob.data), np.float64)
    dev = g - g.mean(0)
    return dev.T @ dev / g.shape[0]


@pytest.fixture(scope="module")
def correlated():
    prob = _correlated_quadratic()
    w = prob.minimum + jnp.array([0.6, -0.4, 0.2, 0.0])  # off the minimum: C depends on w
    return prob, w, _exact_covariance(prob, w)


def _axis_directions(dim):
    ones = np.ones(dim) / np.sqrt(dim)
    alt = np.array([(-1.0) ** j for j in range(dim)]) / np.sqrt(dim)
    return [jnp.asarray(ones, jnp.float32), jnp.asarray(alt, jnp.float32)]


def test_empirical_fit_matches_the_exact_covariance_within_its_errors(correlated):
    """`vᵀĈv` along 8 random and 2 structured directions, and each `C_jj`, lie within
    Z = 4 of their reported standard errors of the exact `vᵀCv` (14 checks: a false
    alarm has probability below 1e-3; the keys are fixed)."""
    prob, w, exact = correlated
    dirs = _axis_directions(4) + [
        jnp.asarray(v) for v in np.random.default_rng(1).normal(size=(8, 4)) / 2
    ]
    fit = fit_empirical(
        jax.random.key(3), prob.sample_loss, w, prob.data, batch_size=1024, directions=dirs
    )
    assert isinstance(fit.model, noise.Empirical) and fit.model.rank == 1024
    V = np.stack([np.asarray(v, np.float64) for v in dirs])
    true = np.einsum("kd,de,ke->k", V, exact, V)
    z = (fit.directional - true) / fit.directional_stderr
    assert np.abs(z).max() < 4, (fit.directional, true, z)
    z_diag = (np.asarray(fit.sigma_g) - np.diag(exact)) / np.asarray(fit.stderr[0])
    assert np.abs(z_diag).max() < 4, z_diag
    assert np.all(fit.directional_stderr < 0.15 * true)  # informative: a few percent
    # The reported numbers are the model's own: vᵀ model.covariance(w) v.
    model_cov = np.asarray(fit.model.covariance(w), np.float64)
    np.testing.assert_allclose(
        np.einsum("kd,de,ke->k", V, model_cov, V), fit.directional, rtol=1e-4
    )
    np.testing.assert_allclose(np.diag(model_cov), fit.sigma_g, rtol=1e-4)
    # The check can fail: the diagonal of C alone misses the structure along (1, …, 1).
    diag_only = np.einsum("kd,d,kd->k", V, np.diag(exact), V)
    assert abs(diag_only[0] - true[0]) > 4 * fit.directional_stderr[0]


@pytest.mark.slow
def test_empirical_fit_errors_are_calibrated(correlated):
    """Over 40 independent fits of 128 samples, `Z = (vᵀĈv − vᵀCv)/SE` along (1, …, 1)
    has mean square 1 (its SE over 40 fits is about sqrt(2/40) = 0.22; allowed 4 of
    them), so the reported errors are neither too small nor too large."""
    prob, w, exact = correlated
    v = _axis_directions(4)[0]
    true = float(np.asarray(v) @ exact @ np.asarray(v))
    zs = []
    for seed in range(40):
        fit = fit_empirical(
            jax.random.key(100 + seed), prob.sample_loss, w, prob.data, batch_size=128,
            directions=[v], chunk_size=128,
        )  # fmt: skip
        zs.append((fit.directional[0] - true) / fit.directional_stderr[0])
    zs = np.array(zs)
    assert abs(np.mean(zs**2) - 1) < 4 * np.sqrt(2 / len(zs)), zs
    # It would fail with the errors halved: mean square 4.
    assert abs(np.mean((2 * zs) ** 2) - 1) > 4 * np.sqrt(2 / len(zs))


def test_transform_with_the_fitted_model_injects_its_covariance(correlated):
    """`add_state_dependent_noise(key, fit.model.scaled(r))`: the injected noise has
    covariance `r Ĉ`, entry by entry within Z = 5 Monte Carlo standard errors."""
    from sdn.optim import add_state_dependent_noise

    prob, w, _ = correlated
    fit = fit_empirical(jax.random.key(4), prob.sample_loss, w, prob.data, batch_size=64)
    r = 1 / 32 - 1 / 1024
    tx = add_state_dependent_noise(jax.random.key(5), fit.model.scaled(r))
    assert tx.init(w).anchor == ()  # α_H = 0: constant noise, no anchor
    n = 20_000

    def step(state, _):
        z, state = tx.update(jnp.zeros_like(w), state, w)
        return state, z

    _, zetas = jax.jit(lambda s: jax.lax.scan(step, s, None, length=n))(tx.init(w))
    zetas = np.asarray(zetas, np.float64)
    want = r * np.asarray(fit.model.covariance(w), np.float64)
    emp = zetas.T @ zetas / n
    se = np.sqrt((np.outer(np.diag(want), np.diag(want)) + want**2) / n)
    assert np.max(np.abs(emp - want) / se) < 5, (emp, want)


def test_network_empirical_fit_equals_the_per_sample_path():
    model = MLP(5, (6,), 3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (96, 5))
    y = jnp.arange(96) % 3
    graphdef, params = split_model(model)
    kw = dict(batch_size=32, n_directions=3)
    net = fit_network_empirical(jax.random.key(4), model, x, y, **kw)
    ref = fit_empirical(
        jax.random.key(4), sample_loss(functional_apply(graphdef)), params, (x, y), **kw
    )
    for a, b in zip(jax.tree.leaves(net.model.factors), jax.tree.leaves(ref.model.factors)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.directional, ref.directional, rtol=1e-4)
    np.testing.assert_allclose(net.directional_stderr, ref.directional_stderr, rtol=1e-4)
    assert jax.tree.structure(net.sigma_g) == jax.tree.structure(params)
    # Simulated on the flat parameter vector (sdn.simulate takes array states).
    flat, _ = jax.flatten_util.ravel_pytree(params)
    sde = sdn.sgd_sde(lambda w: 0.0 * w, net.model.ravel(), 0.1, 4)
    ends = sdn.simulate(jax.random.key(0), sde, flat, dt=0.1, n_steps=2, n_paths=3)
    assert ends.shape == (3, flat.size) and np.all(np.isfinite(ends))


def test_empirical_fit_bad_arguments(quadratic):
    w, k = quadratic.minimum, jnp.ones(3)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="batch_size"):
        fit_empirical(key, quadratic.sample_loss, w, quadratic.data, batch_size=1)
    with pytest.raises(ValueError, match="direction"):
        fit_empirical(key, quadratic.sample_loss, w, quadratic.data, directions=[k[:2]])


def test_empirical_fitted_method_injects_r_times_the_fitted_covariance():
    """§6.4's ``empirical_fitted`` transform on a pytree of params: along the top
    eigenvector of `S` (spanning both leaves) the injected noise has variance `r λ_max`
    within Z = 5 Monte Carlo errors, where a diagonal noise of the same variances would
    not; orthogonal to the factors it has none."""
    from sdn.experiments.large_batch import LargeBatchConfig, method_setup
    from sdn.train import NoiseFit

    cfg = LargeBatchConfig.quick()
    r, lr = 1 / cfg.small_batch - 1 / cfg.large_batch, cfg.learning_rate
    params = {"a": jnp.zeros(5), "b": jnp.zeros((2, 4))}
    m, p = 6, 13  # S has rank m − 1 < p: directions with no noise
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(m, 1)) * np.ones(p) + 0.3 * rng.normal(size=(m, p))  # correlated
    grads = {"a": jnp.asarray(flat[:, :5]), "b": jnp.asarray(flat[:, 5:]).reshape(m, 2, 4)}
    model = noise.empirical(grads, center=params)
    fit = NoiseFit(model, None, None, None, (None, None, None), params)
    setup = method_setup("empirical_fitted", cfg, fit)
    assert setup["batch_size"] == cfg.large_batch
    tx = setup["tx"](jax.random.key(3))
    zero = jax.tree.map(jnp.zeros_like, params)

    def step(state, _):
        u, state = tx.update(zero, state, params)
        return state, jax.flatten_util.ravel_pytree(u)[0] / -lr  # sgd: −lr (g + ζ)

    n = 20_000
    _, zetas = jax.jit(lambda s: jax.lax.scan(step, s, None, length=n))(tx.init(params))
    zetas = np.asarray(zetas, np.float64)
    f = np.concatenate(
        [np.asarray(g, np.float64).reshape(m, -1) for g in jax.tree.leaves(model.factors)], 1
    )
    s_hat = f.T @ f / m
    eig, vec = np.linalg.eigh(s_hat)
    v = vec[:, -1]
    want = r * eig[-1]
    got = np.mean((zetas @ v) ** 2)
    se = want * np.sqrt(2 / n)
    assert abs(got - want) < 5 * se, (got, want)
    assert abs(r * v @ np.diag(np.diag(s_hat)) @ v - want) > 20 * se  # the structure shows
    u = rng.normal(size=p)
    u -= vec[:, -(m - 1) :] @ (vec[:, -(m - 1) :].T @ u)  # out of the factors' span
    assert np.linalg.norm(u) > 0.1 and np.mean((zetas @ u) ** 2) < 1e-8 * want
    with pytest.raises(ValueError, match="empirical_fitted"):
        method_setup("empirical_fitted", cfg, fit._replace(model=noise.power_law(1.0, 0.0)))


def test_empirical_covariance_is_the_unbiased_sample_covariance():
    """`noise.empirical(g)` has covariance `cov(g, ddof=1)`: at m = 5 the factor m/(m−1)
    is 1.25, so a biased (ddof=0) or uncentred estimate fails."""
    g = np.random.default_rng(4).normal(size=(5, 3)) + np.array([1.0, -2.0, 0.5])
    got = np.asarray(noise.empirical(jnp.asarray(g, jnp.float32)).covariance(jnp.zeros(3)))
    np.testing.assert_allclose(got, np.cov(g.T, ddof=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("law, kurtosis", [("normal", 3.0), ("uniform", 1.8)])
def test_sample_variance_stderr_matches_the_exact_formula(law, kurtosis):
    """The standard error of `s²` is `Var s² = (μ₄ − σ⁴ (m−3)/(m−1))/m`: for a normal
    `2σ⁴/(m−1)`, for a uniform about `0.8 σ⁴/m`. The plug-in estimate over 50 independent
    sets of m = 2000 must average to the exact value within 4 of its own standard errors
    (this checks the `μ₄ − σ⁴` structure; the factor (m−3)/(m−1) is 0.999 here, below
    what the test resolves)."""
    from sdn.train.fits import _variance_and_stderr

    rng = np.random.default_rng(7)
    m, sets = 2000, 50
    draw = rng.normal if law == "normal" else (lambda size: rng.uniform(-1, 1, size=size))
    a = draw(size=(m, sets))
    sigma2 = 1.0 if law == "normal" else 1.0 / 3.0
    exact = (kurtosis - (m - 3) / (m - 1)) * sigma2**2 / m
    _, se = _variance_and_stderr(a)
    ratio = se**2 / exact
    assert abs(ratio.mean() - 1.0) < 4 * ratio.std(ddof=1) / np.sqrt(sets), ratio.mean()


def test_fits_old_key_keyword_warns_and_agrees(quadratic):
    """``fit_*(..., key=k)`` (before 1.0) still runs, warns naming the new order, and gives
    the result of ``fit_*(k, ...)``."""
    from sdn.train import fit_empirical, fit_network_empirical, fit_power_law

    w, d, k = quadratic.minimum, jnp.array([1.0, -1.0, 0.5]), jax.random.key(6)
    args = (quadratic.sample_loss, w, quadratic.data)
    kw = dict(ts=(-1.0, 0.0, 1.0), batch_size=64, groups=4, chunk_size=64)
    new = fit_power_law(k, *args, d, **kw)
    with pytest.warns(DeprecationWarning, match=r"fit_power_law\(key, sample_loss"):
        old = fit_power_law(*args, d, key=k, **kw)
    np.testing.assert_array_equal(old.sigma_h, new.sigma_h)
    new = fit_empirical(k, *args, batch_size=16, n_directions=1)
    with pytest.warns(DeprecationWarning, match=r"fit_empirical\(key, sample_loss"):
        old = fit_empirical(*args, key=k, batch_size=16, n_directions=1)
    np.testing.assert_array_equal(old.directional, new.directional)
    model = MLP(3, (4,), 2, rngs=nnx.Rngs(0))
    x, y = jnp.ones((8, 3)), jnp.arange(8) % 2
    new = fit_network_empirical(k, model, x, y, batch_size=4, n_directions=0)
    with pytest.warns(DeprecationWarning, match=r"fit_network_empirical\(key, model"):
        old = fit_network_empirical(model, x, y, key=k, batch_size=4, n_directions=0)
    for a, b in zip(jax.tree.leaves(old.sigma_g), jax.tree.leaves(new.sigma_g)):
        np.testing.assert_array_equal(a, b)
    d = jax.tree.map(lambda a: jnp.full(a.shape, 0.3), split_model(model)[1])
    kw = dict(ts=(-1.0, 0.0, 1.0), batch_size=8, groups=2)
    new = fit_network_power_law(k, model, x, y, d, **kw)
    with pytest.warns(DeprecationWarning, match=r"fit_network_power_law\(key, model"):
        old = fit_network_power_law(model, x, y, d, key=k, **kw)
    for a, b in zip(jax.tree.leaves(old.sigma_h), jax.tree.leaves(new.sigma_h)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="PRNG key"):
        fit_empirical(*args)
