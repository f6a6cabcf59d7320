"""The noise-model interface shared by the engine and the optimizer (issue 10).

Monte Carlo checks allow `Z = 5` standard errors (a false alarm has probability below
1e-6 per check; every key is fixed, so a pass is reproducible). KS checks use a p-value
threshold of 1e-3 and are each paired with a case the same check must reject.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

import sdn
from sdn import noise, solvers
from sdn.noise import increments

Z = 5.0


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("solver", [solvers.milstein, solvers.heun])
def test_milstein_and_heun_are_finite_and_equal_euler_where_c_vanishes(solver):
    """`C(w) = (w − c)²` vanishes at `w = c`; `g g' = ½ ∂C/∂w = w − c` is finite there.

    Differentiating `g = sqrt(C) = |w − c|` instead gives NaN at `w = c` (0 · ∞).
    """
    c = 0.5
    sde = sdn.SDE(lambda w: -(w - c), noise.power_law(0.0, 1.0, center=c), 0.3)
    w = jnp.array([c, c, c])
    dw = jnp.array([0.3, -1.2, 0.0])
    em = solvers.euler_maruyama(sde, w, 0.0, 0.01, dw)
    got = solver(sde, w, 0.0, 0.01, dw)
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got, em)
    np.testing.assert_allclose(sde.g_dg(jnp.array([c, c + 1.0])), [0.0, 0.3], rtol=1e-6)
    # Through the driver, from the zero of C: finite paths.
    out = sdn.simulate(0, sde, jnp.array(c), dt=0.01, n_steps=20, n_paths=8, solver=solver)
    assert np.all(np.isfinite(out))


def test_alpha_stable_sgd_sde_step_is_sgds_jump():
    """`sgd_sde(·, alpha_stable(α, c), η, b)`: one step of length `η` is `η ξ`, with `ξ` the
    mean of `b` per-sample noises `c S_i` (KS against a direct SGD draw)."""
    alpha, c, eta, b, n = 1.5, 0.7, 0.1, 4, 4000
    sde = sdn.sgd_sde(lambda w: 0.0 * w, noise.alpha_stable(alpha, c), eta, b)
    step = np.asarray(sdn.simulate(jax.random.key(3), sde, 0.0, dt=eta, n_steps=1, n_paths=n))
    rng = np.random.default_rng(0)
    per_sample = c * sps.levy_stable.rvs(alpha, 0.0, size=(n, b), random_state=rng)
    sgd_jump = eta * per_sample.mean(axis=1)
    assert sps.ks_2samp(step, sgd_jump).pvalue > 1e-3
    # The check can fail: the Gaussian scaling sqrt(η/b) · η^(1/α) is another law.
    gaussian_scaling = np.sqrt(eta / b) * eta ** (1 / alpha) / (eta * b ** (1 / alpha - 1))
    assert sps.ks_2samp(step * gaussian_scaling, sgd_jump).pvalue < 1e-3


def test_std_squared_is_the_variance_and_the_increments_have_it():
    w = jnp.linspace(-1.0, 1.0, 5)
    models = [
        noise.isotropic(0.5),
        noise.diagonal(jnp.linspace(0.1, 1.0, 5)),
        noise.power_law(0.3, 2.0, sigma_gh=0.2),
        noise.alpha_stable(2.0, 0.4),
        noise.empirical(jnp.asarray(np.random.default_rng(0).normal(size=(7, 5))), 0.5, 2.0),
    ]
    for m in models:
        np.testing.assert_allclose(m.std(w) ** 2, m.variance(w), rtol=1e-6)
    # α = 2: increments of variance 2 c² dt (the Gaussian case of the stable family).
    m, dt, n = noise.alpha_stable(2.0, 0.4), 0.01, 20_000
    x = np.asarray(jax.vmap(lambda d: m.diffusion(w, d))(m.block(jax.random.key(0), w, dt, n)))
    var = np.asarray(m.variance(w)) * dt
    assert np.max(np.abs(x.var(axis=0) - var) / (var * np.sqrt(2 / n))) < Z
    assert np.all(np.isinf(noise.alpha_stable(1.5).variance(w)))


# ----------------------------------------------------------------------------- increments


def test_two_point_increments_are_signs_with_the_gaussian_covariance():
    dt, n = 0.04, 20_000
    w = jnp.array([0.0, 0.5, -1.0])
    m = noise.power_law(0.2, 1.0)
    dw = np.asarray(m.block(jax.random.key(1), w, dt, n, increments="two_point"))
    np.testing.assert_allclose(np.abs(dw), np.sqrt(dt), rtol=1e-6)
    assert np.max(np.abs(dw.mean(axis=0)) / np.sqrt(dt / n)) < Z
    cross = dw.T @ dw / n
    off = ~np.eye(3, dtype=bool)
    assert np.max(np.abs(cross[off]) / (dt / np.sqrt(n))) < Z
    # A pytree draw: one ± per parameter, scaled by sqrt(C(w)).
    tree = {"a": w, "b": jnp.ones((2, 2))}
    z = m.sample(jax.random.key(2), tree, increments="two_point")
    for leaf, var in zip(jax.tree.leaves(z), jax.tree.leaves(m.variance(tree))):
        np.testing.assert_allclose(np.square(leaf), var, rtol=1e-6)
    # Bits are spread over words: 40 draws from one key are not all equal.
    s = noise.rademacher(jax.random.key(0), (40,), jnp.float32)
    assert set(np.unique(s)) == {-1.0, 1.0}


def test_non_gaussian_models_refuse_two_point_increments():
    mb = noise.minibatch(lambda w, c: w - c, jnp.arange(5.0), 2)
    for m in (noise.alpha_stable(1.5), mb, noise.fluctuation(1.0).with_data(jnp.ones(2))):
        with pytest.raises(ValueError, match="two_point.*Gaussian"):
            m.sample(jax.random.key(0), jnp.zeros(2), increments="two_point")
    with pytest.raises(ValueError, match="increments.*'sobol'"):
        noise.isotropic(1.0).sample(jax.random.key(0), jnp.zeros(2), increments="sobol")


def test_measured_models_bind_their_statistic():
    x = {"a": jnp.array([0.0, 1.0]), "b": jnp.array([2.0])}
    v = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([4.0])}
    pl = noise.gradient_variance(0.5, 0.25).with_data(v)
    np.testing.assert_allclose(pl.variance(x)["a"], [0.5, 2.0 * (0.5 + 0.25)])
    np.testing.assert_allclose(pl.variance(x)["b"], [4.0 * (0.5 + 0.25 * 4.0)])
    f = noise.fluctuation(4.0, 1.0).with_data(v)
    z = f.sample(jax.random.key(0), x)
    np.testing.assert_allclose(z["a"], [2.0 * 0.5, np.sqrt(5.0) * 1.0], rtol=1e-6)
    var = f.variance(x)  # (α_g + α_H x²)(f/2)²
    np.testing.assert_allclose(var["a"], [4.0 * 0.25, 5.0 * 1.0], rtol=1e-6)
    np.testing.assert_allclose(var["b"], [8.0 * 4.0], rtol=1e-6)
    with pytest.raises(ValueError, match="with_data"):
        noise.fluctuation(1.0).sample(jax.random.key(0), x)
    with pytest.raises(ValueError, match="no law of its own"):
        sdn.simulate(0, sdn.SDE(lambda w: -w, f, 1.0), 0.0, dt=0.1, n_steps=2, n_paths=2)


# ----------------------------------------------------------------------------- solvers


def test_solvers_state_their_requirements_as_model_attributes():
    assert solvers.milstein.requires == ("is_gaussian", "diagonal")
    assert solvers.heun.requires == ("is_gaussian", "stratonovich_convertible")
    full = sdn.SDE(lambda w: -w, noise.full(jnp.eye(2)), 1.0)
    assert solvers.get("heun", full) is solvers.heun  # constant noise: no correction needed
    with pytest.raises(ValueError, match="milstein.*diagonal"):
        solvers.get("milstein", full)
    stable = sdn.SDE(lambda w: -w, noise.alpha_stable(1.5), 1.0)
    with pytest.raises(ValueError, match="heun.*gaussian"):
        solvers.get("heun", stable)

    def mine(sde, w, t, dt, dw):
        return w

    mine.requires = ("diagonal",)
    assert solvers.get(mine, sdn.SDE(lambda w: -w, noise.isotropic(1.0), 1.0)) is mine
    with pytest.raises(ValueError, match="mine.*diagonal"):
        solvers.get(mine, full)


# ----------------------------------------------------------------------------- empirical


@pytest.mark.parametrize("increments", ["gaussian", "two_point"])
def test_empirical_model_in_the_engine(increments):
    """`noise.empirical` draws `m` standard increments per step (one per factor) in
    `sdn.simulate`, normals or two-point signs: the one-step increments have covariance
    `scale · C dt` (Z = 5 per entry); solvers that need diagonal noise refuse it."""
    rng = np.random.default_rng(2)
    g = jnp.asarray(rng.normal(size=(6, 3)) @ np.array([[1.0, 0.9, 0.0], [0, 1, 0.5], [0, 0, 1]]))
    m = noise.empirical(g)
    assert m.rank == 6 and not m.diagonal and m.is_gaussian and m.constant
    sde = sdn.sgd_sde(lambda w: 0.0 * w, m, 0.5, 2)
    n, dt = 20_000, 0.5
    ends = np.asarray(sdn.simulate(jax.random.key(1), sde, jnp.zeros(3), dt=dt, n_steps=1,
                                   n_paths=n, increments=increments), np.float64)  # fmt: skip
    want = 0.25 * dt * np.asarray(m.covariance(jnp.zeros(3)), np.float64)
    emp = ends.T @ ends / n
    se = np.sqrt((np.outer(np.diag(want), np.diag(want)) + want**2) / n)
    assert np.max(np.abs(emp - want) / se) < Z
    assert abs(want[0, 1]) > 10 * se[0, 1]  # the structure is there to be matched
    if increments == "two_point":  # sums of m = 6 signs: few values, not a Gaussian
        assert len(np.unique(np.round(ends[:, 0], 5))) <= 2**6
        return
    assert solvers.get("heun", sde) is solvers.heun  # constant: no correction needed
    with pytest.raises(ValueError, match="milstein.*diagonal"):
        solvers.get("milstein", sde)
    state_dependent = noise.empirical(g, 1.0, 1.0)
    with pytest.raises(ValueError, match="heun.*stratonovich"):
        solvers.get("heun", sdn.SDE(lambda w: -w, state_dependent, 1.0))


def _cms_in_float64(words, alpha, bits):
    """Chambers–Mallows–Stuck in float64 of the `V`, `E` that two words per draw encode:
    the sign of `V` is the first word's top bit and `½ − |V|/π = (m + ½) 2^−(k+1)` its next
    `k` bits; `E = −log u`, `u = (m' + ½) 2^−k` of the second word's top `k` bits."""
    k = 23 if bits == 32 else 52
    w0, w1 = (np.asarray(x).astype(np.uint64) for x in words)
    sign = np.where((w0 >> np.uint64(bits - 1)) == 1, -1.0, 1.0)
    m = (w0 >> np.uint64(bits - 1 - k)) & np.uint64(2**k - 1)
    v = sign * np.pi * (0.5 - (m.astype(np.float64) + 0.5) * 2.0 ** -(k + 1))
    e = -np.log(((w1 >> np.uint64(bits - k)).astype(np.float64) + 0.5) * 2.0**-k)
    if alpha == 1.0:
        return np.tan(v)
    return (
        np.sin(alpha * v)
        / np.cos(v) ** (1 / alpha)
        * (np.cos(v - alpha * v) / e) ** ((1 - alpha) / alpha)
    )


@pytest.mark.parametrize("alpha", [0.7, 1.0, 1.3, 1.5, 1.9, 2.0])
def test_stable_draws_are_the_chambers_mallows_stuck_formula(alpha):
    """The float32 draw is `sin(αV)/cos(V)^(1/α) · (cos(V − αV)/E)^((1−α)/α)` (`tan V` at
    α = 1) of its own `V`, `E`, evaluated here in float64, to 2·10⁻⁶ relative: the
    polynomial sines and the one-power evaluation change rounding, not the law."""
    key, n = jax.random.key(6), 20_000
    s = np.asarray(noise._symmetric_stable(key, alpha, (n,), jnp.float32), np.float64)
    want = _cms_in_float64(increments._word_pairs(key, (n,)), alpha, 32)
    np.testing.assert_allclose(s, want, rtol=2e-6, atol=0)
    assert np.isfinite(s).all()
    with jax.enable_x64(True):  # float64 draws: the library sines, to float64 rounding
        s64 = np.asarray(noise._symmetric_stable(key, alpha, (n,), jnp.float64))
        words = jax.random.bits(key, (2, n), jnp.uint64)
    np.testing.assert_allclose(s64, _cms_in_float64(words, alpha, 64), rtol=1e-11, atol=0)


# ------------------------------------------------------------------ 1.0 renames (deprecated)


def test_deprecated_increments_method_warns_and_equals_block():
    key, w = jax.random.key(4), jnp.array([0.5, -1.0])
    for m in (noise.power_law(1.0, 0.5), noise.alpha_stable(1.5, 0.3)):
        new = m.block(key, w, 0.01, 5)
        with pytest.warns(DeprecationWarning, match=r"block\(\.\.\.\)"):
            old = m.increments(key, w, 0.01, 5)
        np.testing.assert_array_equal(old, new)
    tp = noise.isotropic(2.0)
    with pytest.warns(DeprecationWarning, match=r"Isotropic\.block"):
        old = tp.increments(key, w, 0.01, 5, increments="two_point")
    np.testing.assert_array_equal(old, tp.block(key, w, 0.01, 5, increments="two_point"))


def test_deprecated_gaussian_flag_warns_and_equals_is_gaussian():
    for m in (noise.isotropic(1.0), noise.alpha_stable(1.5), noise.fluctuation(1.0)):
        with pytest.warns(DeprecationWarning, match=r"\.is_gaussian"):
            assert m.gaussian is m.is_gaussian
    assert noise.isotropic(1.0).is_gaussian and not noise.alpha_stable(1.5).is_gaussian


def test_a_model_written_before_1_0_keeps_its_flag_and_its_increments():
    """A user's subclass that sets `gaussian` and overrides `increments` is read as
    `is_gaussian` and `block` (with a warning when the class is defined)."""
    with pytest.warns(DeprecationWarning) as record:

        class Mine(noise.NoiseModel):
            gaussian = False

            def variance(self, w):
                return jnp.ones_like(w)

            def increments(self, key, w, dt, n, increments="gaussian"):
                return jnp.full((n, *jnp.shape(w)), 7.0)

    messages = " ".join(str(r.message) for r in record)
    assert "use Mine.is_gaussian" in messages and "use Mine.block(...)" in messages
    m = Mine()
    assert not m.is_gaussian
    np.testing.assert_array_equal(m.block(jax.random.key(0), jnp.zeros(2), 1.0, 3), 7.0)


def test_deprecated_alpha_stable_scale_warns_and_equals_c():
    with pytest.warns(DeprecationWarning, match=r"alpha_stable\(c=\.\.\.\)"):
        old = noise.alpha_stable(1.5, scale=0.3)
    new = noise.alpha_stable(1.5, c=0.3)
    assert float(old.c) == float(new.c) == pytest.approx(0.3)
    key, w = jax.random.key(2), jnp.zeros(3)
    np.testing.assert_array_equal(old.sample(key, w, 0.1), new.sample(key, w, 0.1))
    with pytest.warns(DeprecationWarning, match=r"AlphaStable\.c"):
        assert old.scale is old.c
    with pytest.raises(TypeError, match="both scale="):
        noise.alpha_stable(1.5, scale=0.3, c=0.3)
