"""The §6.5 escape pipeline on finite sums with exact answers (docs/theory.md §4, §6.5)."""

import jax
import numpy as np
import pytest

from sdn import landscapes
from sdn.experiments import network_escape as ne

ETA, B, BARRIER = 0.02, 1, 0.04


def _basin(h):
    # σ_g held fixed across h by centres ∝ 1/h (docs/theory.md §4, sharp versus flat)
    prob = landscapes.finite_sum_quadratic(
        jax.random.key(0), n=32, curvature=h, curvature_spread=0.5, center_spread=1.0 / h
    )
    basin = ne.basin_from_finite_sum(prob)
    return prob, basin, ne.measure_basin(basin, jax.random.key(1), loss_rise=BARRIER)


@pytest.fixture(scope="module", params=[1.0, 4.0], ids=["flat", "sharp"])
def basin(request):
    return _basin(request.param)


def test_measured_noise_is_the_finite_sum_moments(basin):
    prob, _, noise = basin
    m = prob.gradient_noise_moments()
    assert np.isclose(noise.curvature, float(prob.hessian[0]), rtol=1e-3)
    assert np.isclose(noise.sigma_g, float(m.sigma_g[0]), rtol=1e-3)
    # the sign of σ_gH follows the sign of the eigenvector
    assert np.isclose(abs(noise.sigma_gh), abs(float(m.sigma_gh[0])), rtol=1e-2)
    assert np.isclose(noise.sigma_h, float(m.sigma_h[0]), rtol=1e-2)
    assert np.isclose(float(noise.coord_sigma_g[0]), float(m.sigma_g[0]), rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("dynamics", ["power_law", "langevin"])
def test_escape_steps_match_quadrature(basin, dynamics):
    _, b, noise = basin
    pred = ne.predicted_escape_steps(noise, barrier=BARRIER, learning_rate=ETA, batch_size=B)
    expected = pred.power_law if dynamics == "power_law" else pred.langevin
    rise = ne.run_dynamics(
        b,
        noise,
        dynamics,
        jax.random.key(2),
        learning_rate=ETA,
        batch_size=B,
        n_chains=400,
        n_steps=int(7 * expected),
    ).rise
    stats = ne.escape_stats(rise, BARRIER)
    # censoring at 7 means (P ≈ e^-7 for a near-exponential exit time) is below the MC error
    assert stats.escaped > 0.99
    assert abs(stats.mean - expected) < 4 * stats.stderr, (stats, pred)


def _result(sgd_flat, sgd_sharp, se=1.0, censored=False):
    minima = {
        "flat": dict(pred_power_law=1000.0, pred_langevin=110.0),
        "sharp": dict(pred_power_law=100.0, pred_langevin=100.0),
    }
    rows = [
        dict(minimum="flat", dynamics="sgd", mean_steps=sgd_flat, stderr=se, censored=censored),
        dict(minimum="sharp", dynamics="sgd", mean_steps=sgd_sharp, stderr=se, censored=False),
    ]
    return ne.NetworkEscapeResult(ne.NetworkEscapeConfig(), minima, rows)


@pytest.mark.parametrize(
    "flat, sharp, se, censored, word",
    [
        (900.0, 100.0, 5.0, False, "supported"),  # ratio 9: near the power law's 10
        (120.0, 100.0, 5.0, False, "not supported"),  # ratio 1.2: near Langevin's 1.1
        (330.0, 100.0, 60.0, False, "inconclusive"),  # the CI spans the midpoint
        (900.0, 100.0, 5.0, True, "inconclusive"),  # censored chains
        (900.0, 100.0, 400.0, False, "inconclusive at this size"),
    ],
)
def test_verdict_follows_the_interval(flat, sharp, se, censored, word):
    _, verdict = _result(flat, sharp, se, censored).verdict()
    assert verdict.startswith(word), verdict
