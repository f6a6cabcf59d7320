"""The weak mode of the engine: `increments="two_point"` (issue 13).

Two-point increments `±sqrt(dt)` keep Euler–Maruyama's weak order 1, so every check here
is against an exact law or expectation, never a path. Tolerances are `Z = 4` Monte Carlo
standard errors (about 6e-5 false failures per check, fixed seeds) plus, where the
discretization has a known `O(dt)` bias, that bias's size as stated next to the check.
"""

from __future__ import annotations

import math
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from children import npz_on_one_and_four_devices
from scipy import stats

import sdn
from sdn import domains, first_exit_time_per_path, noise, theory

Z = 4.0
WEAK = dict(increments="two_point")


def pld_sde(h=1.0, eta=0.1, b=1, sigma_g=1.0, sigma_h=2.0):
    return sdn.sgd_sde(lambda w: h * w, noise.power_law(sigma_g, sigma_h), eta, b)


# ----------------------------------------------------------------------------- increments


def test_two_point_increments_are_fair_independent_signs():
    bm = sdn.SDE(lambda w: 0.0 * w, noise.isotropic(1.0), 1.0)
    dt, n = 0.04, 20_000
    x = np.asarray(sdn.simulate(0, bm, jnp.zeros(3), dt=dt, n_steps=1, n_paths=n, **WEAK))
    np.testing.assert_allclose(np.abs(x), math.sqrt(dt), rtol=1e-6)
    up = x > 0
    # Each sign is a fair coin (binomial SE sqrt(n/4)); coordinates are independent.
    assert np.all(np.abs(up.sum(axis=0) - n / 2) < Z * math.sqrt(n / 4))
    agree = (up[:, 0] == up[:, 1]).sum()
    assert abs(agree - n / 2) < Z * math.sqrt(n / 4)
    # Consecutive steps of one path come from different bits: after 256 + 44 steps (one
    # full block and a ragged one) the sum has variance n_steps · dt.
    y = np.asarray(sdn.simulate(1, bm, 0.0, dt=dt, n_steps=300, n_paths=n, **WEAK), np.float64)
    assert abs(y.var() - 12.0) < Z * 12.0 * math.sqrt(2 / n)


def test_full_covariance_draws_one_sign_per_column():
    cov = jnp.array([[2.0, 0.8], [0.8, 1.0]])
    sde = sdn.SDE(lambda w: 0.0 * w, noise.full(cov), 1.0)
    n, dt = 40_000, 0.5
    x = np.asarray(sdn.simulate(2, sde, jnp.zeros(2), dt=dt, n_steps=1, n_paths=n, **WEAK))
    # x = sqrt(Σ) s sqrt(dt), s = (±1, ±1): four points, covariance Σ dt.
    assert len(np.unique(np.round(x, 5), axis=0)) == 4
    c = np.asarray(cov) * dt
    emp = np.cov(x.T)
    # SE of a sample covariance entry: sqrt((E[x_i² x_j²] − c_ij²) / n), from the draws.
    se = np.sqrt((np.einsum("ni,nj->ij", x**2, x**2) / n - c**2) / n)
    assert np.all(np.abs(emp - c) < Z * se + 1e-6)


# ----------------------------------------------------------------------------- determinism


def test_two_point_results_do_not_depend_on_chunks_or_lanes():
    sde, dom = pld_sde(), domains.interval(-0.5, 0.5)
    a = sdn.simulate(10, sde, 0.0, dt=0.01, n_steps=75, n_paths=1000, **WEAK)
    b = sdn.simulate(10, sde, 0.0, dt=0.01, n_steps=75, n_paths=1000, chunk_size=300, **WEAK)
    np.testing.assert_array_equal(a, b)
    gauss = sdn.simulate(10, sde, 0.0, dt=0.01, n_steps=75, n_paths=1000)
    assert not np.allclose(a, gauss)  # the mode is not ignored
    kw = dict(dt=0.01, n_steps=5000, **WEAK)
    e1 = sdn.first_exit_time(11, sde, 0.0, dom, n_paths=700, **kw)
    e2 = sdn.first_exit_time(11, sde, 0.0, dom, n_paths=700, chunk_size=256, **kw)
    # Path j of first_exit_time(key) is first_exit_time_per_path with key fold_in(key, j).
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(11), i))(jnp.arange(700))
    per_dom = jax.tree.map(lambda x: jnp.full((700,), x), dom)
    row = sdn.sgd_sde(jax.tree_util.Partial(lambda h, w: h * w, 1.0), sde.noise, 0.1, 1)
    per_sde = jax.tree.map(lambda x: jnp.full((700,), x), row)
    e3 = first_exit_time_per_path(keys, per_sde, jnp.zeros(700), per_dom, **kw)
    refill = sdn.EngineConfig(refill_above=32, smallest_bucket=16)
    e4 = sdn.first_exit_time(11, sde, 0.0, dom, n_paths=700, config=refill, **kw)  # refilled
    for x, y, z, u in zip(e1, e2, e3, e4):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
        np.testing.assert_array_equal(x, u)
    assert int(np.sum(np.asarray(e1.status) == sdn.EXITED)) > 600


def test_two_point_under_jit_and_vmap_matches_the_eager_driver():
    def run(h):
        sde = sdn.sgd_sde(lambda w: h * w, noise.power_law(1.0, 2.0), 0.1, 1)
        x = sdn.simulate(12, sde, 0.5, dt=0.01, n_steps=70, n_paths=64, **WEAK)
        r = sdn.first_exit_time(
            13, sde, 0.0, domains.interval(-0.5, 0.5), dt=0.01, n_steps=3000, n_paths=32,
            **WEAK,
        )  # fmt: skip
        return x, r.time

    hs = jnp.array([0.5, 2.0])
    traced = jax.jit(jax.vmap(run))(hs)
    eager = [run(h) for h in [0.5, 2.0]]
    np.testing.assert_allclose(traced[0], jnp.stack([e[0] for e in eager]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(traced[1], jnp.stack([e[1] for e in eager]), rtol=1e-6)


def test_two_point_same_results_on_one_and_four_devices(tmp_path):
    script = textwrap.dedent(
        """
        import sys, numpy as np, jax, sdn
        from sdn import noise, domains
        assert len(jax.devices()) == int(sys.argv[2])
        sde = sdn.sgd_sde(lambda w: w, noise.power_law(1.0, 2.0), 0.1, 1)
        x = sdn.simulate(3, sde, 0.0, dt=0.01, n_steps=70, n_paths=1001, chunk_size=512,
                         increments="two_point")
        e = sdn.first_exit_time(3, sde, 0.0, domains.interval(-0.5, 0.5), dt=0.01,
                                n_steps=4000, n_paths=301, increments="two_point")
        np.savez(sys.argv[1], x=x, t=e.time, s=e.status)
        """
    )
    results = npz_on_one_and_four_devices(script, tmp_path)
    for name in ("x", "t", "s"):
        np.testing.assert_array_equal(results[0][name], results[1][name])


def test_first_exits_without_per_step_bookkeeping_change_no_number():
    # Two-point blocks far from the walls run without the per-step exit test; the others
    # are replayed exactly. Every case must give exactly the numbers of the exact test
    # alone: exits with and without the shifted walls, paths stopped at n_steps,
    # diverging paths (NaN and inf fail every comparison), a box in 2-D and a domain
    # known only by its indicator.
    pld, wall = pld_sde(), domains.interval(-0.5, 0.5)
    blowup = sdn.SDE(lambda w: 40.0 * w**3, noise.isotropic(0.5), 1.0)
    flat = sdn.SDE(lambda w: -w, noise.isotropic(0.3), 1.0)
    cases = [
        (pld, 0.0, wall, True),
        (blowup, 0.3, domains.interval(-jnp.inf, jnp.inf), False),
        (flat, jnp.zeros(2), domains.box(jnp.array([-0.3, -1.0]), jnp.array([1.0, 0.2])), False),
        (flat, jnp.zeros(2), domains.from_function(lambda w: jnp.sum(w**2) < 0.3), True),
    ]  # fmt: skip
    kw = dict(dt=0.01, n_steps=600, n_paths=300)
    seen = np.zeros(3, int)
    for sde, w0, dom, corrected in cases:
        runs = []
        for quiet in (True, False):
            config = sdn.EngineConfig(quiet_blocks=quiet)
            runs.append(
                sdn.first_exit_time(
                    4, sde, w0, dom, boundary_correction=corrected, config=config, **WEAK, **kw
                )
            )
        for x, y in zip(*runs):
            np.testing.assert_array_equal(x, y)
        seen += np.bincount(np.asarray(runs[0].status), minlength=3)
    assert np.all(seen > 0), seen  # exited, inside at n_steps, diverged: all reached


# ----------------------------------------------------------------------------- not silently


def test_weak_mode_is_refused_where_it_does_not_apply():
    sde = pld_sde()
    ok = dict(dt=0.01, n_steps=10, n_paths=4)
    with pytest.raises(ValueError, match="increments"):
        sdn.simulate(0, sde, 0.0, increments="rademacher", **ok)
    # Milstein's order is pathwise; with dW² = dt its correction would silently vanish.
    with pytest.raises(ValueError, match="milstein"):
        sdn.simulate(0, sde, 0.0, solver="milstein", **WEAK, **ok)
    with pytest.raises(ValueError, match="milstein"):
        sdn.first_exit_time(
            0, sde, 0.0, domains.interval(-1, 1), dt=0.01, n_steps=10, n_paths=2,
            solver="milstein", **WEAK,
        )  # fmt: skip
    stable = sdn.SDE(lambda w: -w, noise.alpha_stable(1.5), 1.0)
    with pytest.raises(ValueError, match="AlphaStable"):
        sdn.simulate(0, stable, 0.0, **WEAK, **ok)
    mb = noise.minibatch(lambda w, c: w - c, jnp.arange(5.0), 2)
    real_sgd = sdn.sgd_sde(lambda w: w - 2.0, mb, 0.1, 2)
    with pytest.raises(ValueError, match="Minibatch"):
        sdn.simulate(0, real_sgd, 0.0, solver="sgd", **{**ok, "dt": 0.1}, **WEAK)
    keys = jax.random.split(jax.random.key(0), 2)
    rows = jax.tree.map(lambda x: jnp.full((2,), x), (pld_sde().noise, domains.interval(-1, 1)))
    per_sde = sdn.SDE(jax.tree_util.Partial(lambda h, w: -h * w, jnp.ones(2)), rows[0], jnp.ones(2))
    with pytest.raises(ValueError, match="milstein"):
        first_exit_time_per_path(
            keys, per_sde, jnp.zeros(2), rows[1], dt=0.01, n_steps=10, solver="milstein", **WEAK
        )
    # The sgd solver on a Gaussian model is Euler–Maruyama, so it takes either increments.
    em = sdn.simulate(0, sde, 0.0, **WEAK, **ok)
    np.testing.assert_allclose(sdn.simulate(0, sde, 0.0, solver="sgd", **WEAK, **ok), em)


def test_default_increments_stay_brownian_and_pathwise():
    # The default draws the noise model's Brownian increments: one path rebuilt from its
    # key stream by hand, and Euler–Maruyama's strong error on GBM against the exact
    # solution driven by those same increments, which the weak mode could not match.
    mu, sig, n_steps, dt = 0.5, 0.8, 100, 0.01
    sde = sdn.SDE(lambda w: mu * w, noise.power_law(0.0, sig**2), 1.0)
    key = jax.random.key(4)
    n = 256
    x = np.asarray(sdn.simulate(key, sde, 1.0, dt=dt, n_steps=n_steps, n_paths=n), np.float64)
    blocks = math.ceil(n_steps / sdn.EngineConfig().block_steps)

    def path_noise(i):
        pk = jax.random.fold_in(key, i)
        dws = [sde.noise.block(jax.random.fold_in(pk, b), 1.0, dt, 50) for b in range(blocks)]
        return jnp.concatenate(dws)[:n_steps]

    dw = np.asarray(jax.vmap(path_noise)(jnp.arange(n)), np.float64)
    exact = np.exp((mu - sig**2 / 2) * n_steps * dt + sig * dw.sum(axis=1))
    err = np.abs(x - exact)
    # EM's strong error at dt = 0.01 is O(sqrt(dt)) small; the weak mode's paths share
    # nothing with these Brownian paths, so their error is O(1).
    weak = np.asarray(sdn.simulate(key, sde, 1.0, dt=dt, n_steps=n_steps, n_paths=n, **WEAK))
    weak_err = np.abs(weak - exact)
    assert err.mean() < 0.1 * weak_err.mean(), (err.mean(), weak_err.mean())
    assert err.mean() < 0.05 * exact.mean()


# ----------------------------------------------------------------------------- exact answers


def test_two_point_ornstein_uhlenbeck_mean_and_variance():
    theta, s, x0, dt, n = 1.5, 0.8, 2.0, 0.01, 100
    sde = sdn.SDE(lambda w: -theta * w, noise.isotropic(s), 1.0)
    x = np.asarray(sdn.simulate(7, sde, x0, dt=dt, n_steps=n, n_paths=40_000, **WEAK), np.float64)
    t = n * dt
    mean, var = x0 * math.exp(-theta * t), s / (2 * theta) * (1 - math.exp(-2 * theta * t))
    # On a linear SDE, Euler–Maruyama's mean and variance depend on the increments' first
    # two moments only, so two-point steps have the Gaussian scheme's moments exactly;
    # their O(dt) distance from the continuous ones is the allowed bias.
    a = 1 - theta * dt
    em_mean, em_var = x0 * a**n, s * dt * (1 - a ** (2 * n)) / (1 - a**2)
    m4 = np.mean((x - x.mean()) ** 4)
    se_mean, se_var = math.sqrt(var / x.size), math.sqrt((m4 - x.var() ** 2) / x.size)
    assert abs(x.mean() - mean) < Z * se_mean + abs(em_mean - mean)
    assert abs(x.var() - var) < Z * se_var + abs(em_var - var)


@pytest.mark.slow
@pytest.mark.parametrize("sigma_h", [5.0, 8.0])
def test_two_point_power_law_stationary_law_is_student_t(sigma_h):
    eta, b, h, sigma_g = 0.1, 1, 1.0, 1.0
    nu = 1 + 2 * b * h / (eta * sigma_h)
    scale = math.sqrt(sigma_g / (sigma_h * nu))
    sde = pld_sde(h, eta, b, sigma_g, sigma_h)
    x = np.asarray(sdn.simulate(8, sde, 0.0, dt=0.005, n_steps=2000, n_paths=10_000, **WEAK))
    student = stats.kstest(x, stats.t(nu, scale=scale).cdf)
    assert student.pvalue > 1e-3, (nu, student)
    gauss_sd = scale * math.sqrt(nu / (nu - 2))
    gauss = stats.kstest(x, stats.norm(scale=gauss_sd).cdf)
    assert gauss.pvalue < 1e-6, gauss


def _mfpt(mu, sigma2, x0, lo, hi):
    with jax.enable_x64(True):
        args = (jnp.float64(x0), jnp.float64(lo), jnp.float64(hi))
        return float(theory.mean_first_passage_time(mu, sigma2, *args, n_grid=4097))


# (drift curvature h, σ_g, σ_H, isotropic?, lo, hi, x0); η = 0.1, b = 1 as in test_engine.
BASINS = {
    "power_law": (1.0, 2.0, 4.0, False, -1.0, 1.0, 0.0),  # T ≈ 15
    "constant_noise": (1.0, 4.0, 0.0, True, -1.0, 1.0, 0.0),  # T ≈ 7
    "asymmetric_interval": (1.0, 1.0, 2.0, False, -0.6, 1.0, 0.2),  # T ≈ 23
}


@pytest.mark.slow
@pytest.mark.parametrize("basin", sorted(BASINS))
def test_two_point_exit_times_match_quadrature(basin):
    """Two-point exits, walls moved in by `TWO_POINT_SHIFT · sqrt(v dt)`, against the
    quadrature `T`. The shift removes the walk's O(sqrt(dt)) overshoot; what it leaves is
    taken to be first order in dt, so the error of a run at dt/2 is the change from the
    run at dt: `e(dt/2) ≈ T̂(dt) − T̂(dt/2)`, measured here, is the allowance. The check
    `|T̂(dt/2) − T| − |T̂(dt) − T̂(dt/2)| < Z σ` (Z = 4) has `σ = sqrt(s₁² + 4 s₂²)`, the
    largest standard error of that combination of the two independent runs' means.

    Nearest wrong answers: a shift of 0.25 or 0.8 leaves an O(sqrt(dt)) error (+8 to
    +12% and −12 to −20% at these steps); the change from dt to dt/2 is then only 29% of
    it. Measured with each shift planted, the statistic is 4.0-5.5 σ (0.25) and 11-14 σ
    (0.8) in the three basins, so both fail; with 0.5 it is 1.1-2.8 σ. At these steps the
    correct walk's error is not quite first order yet (the measured change covers all but
    about 2% of T in the constant-noise basin): more paths would scale both sides alike,
    and about twice as many would make the correct walk fail there."""
    h, sg, sh, iso, lo, hi, x0 = BASINS[basin]
    eta, dt, n = 0.1, 0.04, 64_000
    exact = _mfpt(lambda x: -h * x, lambda x: eta * (sg + sh * x * x), x0, lo, hi)
    model = noise.isotropic(sg) if iso else noise.power_law(sg, sh)
    sde = sdn.sgd_sde(lambda w: h * w, model, eta, 1)
    dom = domains.interval(lo, hi)
    runs = [
        sdn.first_exit_time(key, sde, x0, dom, dt=step, n_steps=10**6, n_paths=n, **WEAK)
        for key, step in ((16, dt), (17, dt / 2))
    ]
    (t1, s1), (t2, s2) = ((r.summary()["mean_time"], r.summary()["sem"]) for r in runs)
    assert all(r.summary()["exited"] == n for r in runs)
    allowance = abs(t1 - t2)
    sigma = math.sqrt(s1**2 + 4 * s2**2)
    assert abs(t2 - exact) - allowance < Z * sigma, (t1, t2, exact, allowance, sigma)


@pytest.mark.parametrize("increments", ["gaussian", "two_point"])
def test_accelerator_settings_change_no_number(increments):
    # Accelerators unroll each block and use other chunk sizes; on the CPU the same
    # settings must give the same numbers, so results do not depend on the device (the
    # lanes' sizes are checked by the determinism tests above).
    # short blocks on both sides keep the unrolled programs small enough to compile quickly
    short = sdn.EngineConfig(block_steps=5, two_point_words=1, two_point_exit_words=1)
    sde, dom = pld_sde(), domains.interval(-0.5, 0.5)
    kw = dict(increments=increments, dt=0.01)
    x = sdn.simulate(5, sde, 0.0, n_steps=70, n_paths=300, config=short, **kw)
    e = sdn.first_exit_time(5, sde, 0.0, dom, n_steps=3000, n_paths=300, config=short, **kw)
    accelerator = short.replace(unroll=True, chunk_size=128)
    np.testing.assert_allclose(
        sdn.simulate(5, sde, 0.0, n_steps=70, n_paths=300, config=accelerator, **kw),
        x,
        rtol=1e-6,
        atol=1e-7,
    )
    u = sdn.first_exit_time(5, sde, 0.0, dom, n_steps=3000, n_paths=300, config=accelerator, **kw)
    np.testing.assert_array_equal(u.steps, e.steps)
    np.testing.assert_array_equal(u.status, e.status)
