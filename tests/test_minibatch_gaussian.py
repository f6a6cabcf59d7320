"""`noise.minibatch_gaussian`: a normal with the minibatch's covariance at every state, and
the swap of §6.7 built on it (SGD's noise law against a Gaussian of the same covariance)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdn
from sdn import noise

N_DRAWS = 20_000


def _finite_sum(n=5, d=2, seed=0):
    """Per-sample gradients `A_i w − c_i`: the covariance changes with `w`."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d, d))
    a = jnp.asarray(a + np.swapaxes(a, 1, 2) + 3 * np.eye(d), jnp.float32)
    c = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)

    def sample_grad(w, datum):
        ai, ci = datum
        return ai @ w - ci

    return sample_grad, (a, c)


def _cov_errors(x, target):
    """|Ĉ − target| in standard errors of Ĉ (a Gaussian's `Var(x_j x_k) = C_jj C_kk + C_jk²`)."""
    x = np.asarray(x, np.float64)
    est = np.cov(x.T, bias=True)
    c = np.asarray(target, np.float64)
    se = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c**2) / x.shape[0])
    return np.max(np.abs(est - c) / se)


def test_draws_have_the_minibatch_covariance_at_the_current_state():
    """Without replacement (b = 2 of n = 5, so the factor (n−b)/(n−1) = 3/4 counts) at a
    state far from the minimum. The nearest wrong answers each lie far outside 4 standard
    errors: the covariance at the minimum (state independence), the uncentred second moment
    of the per-sample gradients, and the factor (n−b)/(n−1) dropped."""
    sample_grad, data = _finite_sum()
    model = noise.minibatch_gaussian(sample_grad, data, 2, replace=False)
    twin = noise.minibatch(sample_grad, data, 2, replace=False)
    w = jnp.array([1.0, -0.5])
    keys = jax.random.split(jax.random.key(0), N_DRAWS)
    x = jax.vmap(model.sample, (0, None))(keys, w)
    c = twin.covariance(w)
    assert _cov_errors(x, c) < 4.0
    a, cc = data
    w_star = jnp.linalg.solve(a.mean(0), cc.mean(0))
    g = jax.vmap(sample_grad, (None, 0))(w, data)
    wrong = {
        "at the minimum": twin.covariance(w_star),
        "uncentred": (g.T @ g) / 5 * 0.75,
        "factor dropped": c / 0.75,
    }
    for name, bad in wrong.items():
        assert _cov_errors(x, bad) > 8.0, name


def test_its_law_is_normal_where_the_minibatch_is_two_point():
    """b = 1 of two samples ±1: SGD's noise is a random sign (kurtosis 1), this one a normal
    (kurtosis 3; its estimate's standard error is about sqrt(24/N) = 0.035)."""
    c = jnp.array([-1.0, 1.0])
    model = noise.minibatch_gaussian(lambda w, ci: w - ci, c, batch_size=1)
    keys = jax.random.split(jax.random.key(1), N_DRAWS)
    x = np.asarray(jax.vmap(model.sample, (0, None))(keys, jnp.array(0.0)), np.float64)
    kurt = np.mean(x**4) / np.mean(x**2) ** 2
    assert abs(kurt - 3.0) < 4 * math.sqrt(24 / N_DRAWS), kurt
    with pytest.raises(ValueError, match="one increment per sample"):
        model.diffusion(jnp.array(0.0), jnp.zeros(3))


@pytest.mark.parametrize("increments", ["gaussian", "two_point"])
def test_one_sgd_step_of_the_engine_is_sgd_with_gaussian_noise(increments):
    """One `sgd` step from `w`: mean `w − η ∇L(w)`, covariance `η² C(w)/b` (with either law
    of the per-sample increments); a missing `1/b` would be 3 times too large."""
    sample_grad, data = _finite_sum()
    b, eta = 3, 0.1
    model = noise.minibatch_gaussian(sample_grad, data, b)

    def grad(w):
        return jax.vmap(sample_grad, (None, 0))(w, data).mean(0)

    w = jnp.array([1.0, -0.5])
    x = sdn.simulate(
        2, sdn.sgd_sde(grad, model, eta, b), w, dt=eta, n_steps=1, n_paths=N_DRAWS,
        solver="sgd", increments=increments,
    )  # fmt: skip
    x = np.asarray(x, np.float64)
    c = eta**2 * np.asarray(model.covariance(w)) / b
    mean = np.asarray(w - eta * grad(w))
    se = np.sqrt(np.diag(c) / N_DRAWS)
    assert np.all(np.abs(x.mean(0) - mean) < 4 * se)
    assert _cov_errors(x, c) < 4.0
    assert _cov_errors(x, c * b) > 8.0


def test_the_power_law_twin_of_sgd_on_the_walled_basin_is_its_covariance():
    """§6.7's `gaussian_sgd` is the power-law model of the measured moments stepped like SGD;
    that is Gaussian noise of the minibatch's own covariance only because the per-sample
    gradients are affine: its variance must equal the minibatch's at every state (and not
    the covariance at the minimum, `σ_g`)."""
    from sdn.experiments.escape import _sample_grad, walled_basin

    k_u, k_c = jax.random.split(jax.random.key(3))
    u = jax.random.gamma(k_u, 1.0, (200, 1))
    c0 = jax.random.normal(k_c, (200, 1))
    prob = walled_basin(u, c0, 2.0, 1.0)
    sg, sgh, sh = (float(np.asarray(m)[0]) for m in prob.gradient_noise_moments())
    twin = noise.power_law(sg, sh, prob.minimum, sgh)
    sgd = noise.minibatch(_sample_grad, prob.data, 1)
    for x in (-0.8, -0.3, 0.0, 0.4, 1.1):
        w = prob.minimum + x
        want = float(np.asarray(sgd.variance(w)).ravel()[0])
        got = float(np.asarray(twin.variance(w)).ravel()[0])
        assert got == pytest.approx(want, rel=1e-4), (x, got, want)
        if abs(x) > 0.2:
            assert abs(want - sg) > 0.05 * sg


def _rows(dynamic, times, sems):
    pts = [(h, dl) for h in (1.0, 2.0) for dl in (0.1, 0.2)]
    return [
        dict(dynamic=dynamic, curvature=h, barrier=dl, mean_time=t, sem=s)
        for (h, dl), t, s in zip(pts, times, sems, strict=True)
    ]


def test_swap_ratios_recover_a_known_ratio_and_widen_with_scatter():
    from sdn.experiments import escape_laws as el

    base = np.array([10.0, 40.0, 5.0, 20.0])
    cfg = el.EscapeLawsConfig.tiny()
    rows = _rows("gaussian_sgd", base, 0.01 * base) + _rows("sgd", 0.5 * base, 0.005 * base)
    res = el.EscapeLawsResult(cfg, rows)
    sw = el.swap_ratios(res)
    assert set(sw) == {"noise law"}  # pld did not run: no time-step swap
    s = sw["noise law"]
    assert s["ratio"] == pytest.approx(0.5, rel=1e-9)
    assert s["se"] == pytest.approx(math.hypot(0.01, 0.01) / 2, rel=1e-6)
    assert s["chi2_per_dof"] == pytest.approx(0.0, abs=1e-12)
    assert el.swap_verdict(s)[0] == el.SUPPORTED
    # ratios 0.5 and 2 in turn: the mean is 1, the scatter far beyond the errors
    times = base * np.array([0.5, 2.0, 0.5, 2.0])
    scattered = _rows("sgd", times, 0.01 * times)
    s2 = el.swap_ratios(el.EscapeLawsResult(cfg, _rows("gaussian_sgd", base, 0.01 * base)
                                            + scattered))["noise law"]  # fmt: skip
    assert s2["ratio"] == pytest.approx(1.0, abs=1e-6)
    assert s2["chi2_per_dof"] > 100 and s2["se"] > 10 * s["se"]
    assert (s2["low"], s2["high"]) == pytest.approx((0.5, 2.0))
    assert el.swap_verdict(s2)[0] == el.INCONCLUSIVE
    # equal times with small errors: the part does not matter
    same = el.EscapeLawsResult(cfg, _rows("gaussian_sgd", base, 0.01 * base)
                               + _rows("sgd", base, 0.01 * base))  # fmt: skip
    assert el.swap_verdict(el.swap_ratios(same)["noise law"])[0] == el.NOT_SUPPORTED


def test_the_network_gaussian_dynamic_has_sgds_covariance():
    """§6.5's `gaussian` dynamic on a tiny basin: the covariance of SGD's minibatch."""
    from sdn.experiments.network_escape.basin import Basin
    from sdn.experiments.network_escape.dynamics import noise_model

    sample_grad, data = _finite_sum(n=6, d=3)
    basin = Basin(jnp.zeros(3), None, sample_grad, None, data)
    model = noise_model("gaussian", None, basin, batch_size=2, alpha=1.5)
    sgd = noise_model("sgd", None, basin, batch_size=2, alpha=1.5)
    w = jnp.array([0.3, -1.0, 0.5])
    assert isinstance(model, noise.MinibatchGaussian)
    np.testing.assert_allclose(model.covariance(w), sgd.covariance(w), rtol=1e-6)
