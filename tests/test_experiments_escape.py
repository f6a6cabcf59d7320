"""The escape experiment (docs/theory.md §4, §6.3) at small sizes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdn import theory
from sdn.experiments.escape import EscapeConfig, log_time_slope, run_escape

Z = 4.0


@pytest.fixture(scope="module")
def result():
    return run_escape(EscapeConfig.tiny())


@pytest.mark.slow
def test_diffusions_match_their_exact_exit_times(result):
    # To the Monte Carlo error alone: each point within Z standard errors (15 points at
    # Z = 4: a false alarm has probability ~1e-3), and the points together, whose mean z
    # would expose a common bias of the time step or the bridge of ~Z/sqrt(15) ≈ 1 sem
    # (5% of τ at 300 paths). Measured z: −1.3 … 1.4, their sum over sqrt(15): −0.7.
    zs = []
    for r in result.rows:
        if r["dynamic"] == "sgd":
            assert math.isnan(r["exact_time"])
            continue
        assert r["exited"] == result.config.n_paths
        z = (r["mean_time"] - r["exact_time"]) / r["sem"]
        assert abs(z) < Z, r
        zs.append(z)
    assert len(zs) == 3 * (len(result.config.curvatures) + len(result.config.barriers))
    assert abs(np.sum(zs)) / math.sqrt(len(zs)) < Z, zs


@pytest.mark.slow
def test_sharp_minima_are_left_faster_under_sgd_and_pld_than_langevin(result):
    # Langevin with σ_g held fixed depends on h through its prefactor only (τ ∝ 1/h);
    # SGD and PLD, whose σ_H grows like h², leave sharp minima much faster.
    lan, lan_se = log_time_slope(result.select("sharpness", "langevin"), "curvature")
    assert abs(lan + 1) < Z * lan_se + 0.15  # τ ∝ 1/h up to the finite barrier
    for name in ("sgd", "pld"):
        slope, se = log_time_slope(result.select("sharpness", name), "curvature")
        assert slope < 0
        assert slope < lan - Z * math.hypot(se, lan_se), (name, slope, lan)


def test_log_time_is_linear_in_barrier_for_langevin_and_logarithmic_for_pld():
    # On the exact quadrature, over barriers beyond what simulation can reach.
    h, eta, b, sg, var_u = 1.0, 0.1, 1, 1.0, 1.0
    sh = h * h * var_u
    barriers = jnp.geomspace(0.5, 4.0, 8)  # log τ < 88: no float32 overflow
    t = theory.walled_basin_escape_times(h, barriers, eta, b, sg, var_u, n_grid=4097)
    # walled_basin_escape_times returns times; take logs (finite for these barriers).
    log_pld = np.log(np.asarray(t.power_law, np.float64))
    log_lan = np.log(np.asarray(t.langevin, np.float64))
    dl = np.asarray(barriers, np.float64)
    # Langevin: slope in ΔL tends to 2b/(η σ_g) = 20 (Kramers); successive slopes agree.
    lan_slopes = np.diff(log_lan) / np.diff(dl)
    assert np.all(np.abs(lan_slopes[2:] - 2 * b / (eta * sg)) < 0.1 * 2 * b / (eta * sg))
    # PLD: log τ is linear in ln(1 + 2κΔL/h) with slope b h/(η σ_H) (docs/theory.md §4) ...
    u = np.log1p(2 * (sh / sg) * dl / h)
    pld_slopes = np.diff(log_pld) / np.diff(u)
    assert np.all(np.abs(pld_slopes[2:] - b * h / (eta * sh)) < 0.1 * b * h / (eta * sh))
    # ... so its slope in ΔL itself collapses as the barrier grows.
    assert (np.diff(log_pld) / np.diff(dl))[-1] < 0.2 * lan_slopes[-1]


def test_config_tiny_has_every_dynamic(result):
    assert {r["dynamic"] for r in result.rows} == {"sgd", "pld", "langevin", "anisotropic"}
    assert "exact τ" in result.table()


def test_exact_times_are_vmapped_in_one_call():
    # 64 parameter sets of the exact MFPT in one jitted call (issue 3's sweep of exact values).
    hs = jnp.geomspace(0.25, 16, 64)
    out = jax.jit(
        jax.vmap(lambda h: theory.walled_basin_escape_times(h, 1.0, 0.1, 1, 1.0, 1.0).power_law)
    )(hs)
    assert out.shape == (64,) and bool(jnp.all(jnp.diff(jnp.log(out)) < 0))
