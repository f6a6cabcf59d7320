"""The Lévy-flight rival of sdn.theory against the engine: exact drift-free exit times
(Getoor 1961) and the small-noise escape law with a drift (Imkeller & Pavlyukevich 2006)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import gammaln

import sdn
from sdn import SDE, domains, noise
from sdn.theory import (
    stable_escape_time_asymptotic,
    stable_exit_time,
    stable_levy_density,
    stable_levy_tail,
)


def _mean_exit(sde, x0, dt, max_time, n_paths, key=0):
    r = sdn.first_exit_time(
        key,
        sde,
        jnp.float32(x0),
        domains.interval(-1.0, 1.0),
        dt=dt,
        n_steps=int(max_time / dt),
        n_paths=n_paths,
    )
    s = r.summary()
    assert s["inside"] == 0 and s["diverged"] == 0
    return s["mean_time"], s["sem"]


def test_stable_exit_time_closed_forms():
    # α = 2: c L is Brownian motion of variance 2c² per unit time, T = (r² − x²)/(2c²).
    x, r, c = np.array([-0.3, 0.0, 0.6]), 1.5, 0.7
    assert np.allclose(stable_exit_time(x, r, 2.0, c), (r * r - x * x) / (2 * c * c), rtol=1e-6)
    # Scaling: τ(x, r, c) = (r/c)^α τ(x/r, 1, 1).
    a = 1.3
    got = stable_exit_time(0.4 * r, r, a, c)
    assert float(got) == pytest.approx((r / c) ** a * float(stable_exit_time(0.4, 1.0, a, 1.0)))


def test_levy_measure_reproduces_the_characteristic_exponent():
    # |u|^α = ∫ (1 − cos uy) ν(dy), the Lévy–Khintchine formula of E e^{iuL} = e^{−|u|^α}.
    from scipy import integrate

    for a in (0.7, 1.2, 1.5, 1.9):
        c_a = float(stable_levy_density(1.0, a))  # ν(dy) = C_α |y|^{−1−α} dy
        near = integrate.quad(lambda y, a=a: (1 - np.cos(y)) * y ** (-1 - a), 0, 1)[0]
        far_cos = integrate.quad(lambda y, a=a: y ** (-1 - a), 1, np.inf, weight="cos", wvar=1)[0]
        val = 2 * c_a * (near + 1 / a - far_cos)
        assert val == pytest.approx(1.0, rel=1e-5)
        tail = integrate.quad(lambda y, a=a: 2 * float(stable_levy_density(y, a)), 2.0, np.inf)[0]
        assert float(stable_levy_tail(2.0, a)) == pytest.approx(tail, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x0=0.0, half_width=1.0, alpha=2.5, c=1.0), "alpha"),
        (dict(x0=1.5, half_width=1.0, alpha=1.5, c=1.0), "x0"),
        (dict(x0=0.0, half_width=1.0, alpha=1.5, c=-1.0), "c"),
    ],
)
def test_stable_exit_time_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stable_exit_time(**kwargs)


def test_stable_escape_asymptotic_rejects_bad_input():
    with pytest.raises(ValueError, match="minimum"):
        stable_escape_time_asymptotic(-1.0, 1.0, 2.0, 1.5, 0.1)
    with pytest.raises(ValueError, match="alpha"):
        stable_escape_time_asymptotic(-1.0, 1.0, 0.0, 2.0, 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("alpha, c, x0", [(1.5, 0.8, 0.3), (1.2, 0.5, -0.4)])
def test_stable_exit_time_matches_the_engine(alpha, c, x0):
    # Monitored exits (α-stable jumps overshoot the wall; no bridge correction applies).
    # The discretisation bias is estimated by the change from dt to dt/2 (same key, so the
    # two estimates are correlated and their difference measures the bias more than the
    # noise); the tolerance is 3 standard errors plus that change.
    sde = SDE(lambda w: 0.0 * w, noise.alpha_stable(alpha, c), 1.0)
    exact = float(stable_exit_time(x0, 1.0, alpha, c))
    m1, _ = _mean_exit(sde, x0, 1e-3, 40.0, 16_000)
    m2, se2 = _mean_exit(sde, x0, 5e-4, 40.0, 16_000)
    tol = 3 * se2 + abs(m1 - m2)
    assert abs(m2 - exact) < tol, (m2, se2, m1, exact)
    # The nearest wrong answers: Γ(α) for Γ(1+α) (a factor α), and the exponent α for α/2.
    wrong_gamma = exact * alpha
    wrong_exponent = math.exp(
        alpha * math.log(1 - x0 * x0) - alpha * math.log(c) - float(gammaln(1 + alpha))
    )
    for wrong in (wrong_gamma, wrong_exponent):
        assert abs(m2 - wrong) > tol, (wrong, m2, tol)


@pytest.mark.slow
def test_stable_escape_asymptotic_is_approached_as_noise_vanishes():
    # dX = −X dt + ε dL on (−1, 1), α = 1.5. Measured (n = 2000, dt = 0.01): the ratio of
    # the engine's mean to the law is 0.65 at ε = 0.4, 0.85 at 0.2, 0.91 at 0.1, from
    # below (small jumps help the large one out), the deficit shrinking like ε^{α/2}.
    # ε = 0.4 against 0.1, not 0.2 against 0.1: the deficits at 0.2 and 0.1 differ by
    # about 2 of their standard errors at this n, a comparison that fails half the time.
    alpha, n = 1.5, 2000
    ratios, errs = [], []
    for eps in (0.4, 0.1):
        law = float(stable_escape_time_asymptotic(-1.0, 1.0, 0.0, alpha, eps))
        sde = SDE(lambda w: -w, noise.alpha_stable(alpha, eps), 1.0)
        m, se = _mean_exit(sde, 0.0, 1e-2, 12 * law, n)
        ratios.append(m / law)
        errs.append(se / law)
        # Rivals: the drift-free time from the minimum (a factor απ/(2 sin(πα/2)) = 3.33
        # shorter) and the jumps through one edge only (twice as long): both rejected.
        for wrong in (float(stable_exit_time(0.0, 1.0, alpha, eps)), 2 * law):
            assert abs(m - wrong) > 5 * se + 0.2 * law, (eps, m, wrong)
    gap = [1 - r for r in ratios]
    se_gap = math.hypot(*errs)
    assert gap[1] < gap[0] - 2 * se_gap, (ratios, errs)  # the law is approached
    assert abs(gap[1]) < 0.15 + 3 * errs[1], (ratios, errs)  # within 15% at ε = 0.1
