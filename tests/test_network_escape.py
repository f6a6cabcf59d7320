"""The §6.5 escape pipeline on finite sums with exact answers (docs/theory.md §4, §6.5)."""

import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from sdn import landscapes
from sdn.experiments import network_escape as ne
from sdn.experiments.claims import Verdict

ETA, B, BARRIER = 0.02, 1, 0.04


def _basin(h):
    # σ_g held fixed across h by centres ∝ 1/h (docs/theory.md §4, sharp versus flat)
    prob = landscapes.finite_sum_quadratic(
        jax.random.key(0), n=32, curvature=h, curvature_spread=0.5, center_spread=1.0 / h
    )
    basin = ne.basin_from_finite_sum(prob)
    return prob, basin, ne.measure_basin(jax.random.key(1), basin, loss_rise=BARRIER)


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


@pytest.fixture(scope="module")
def sharp_high_barrier():
    # where the rival predictions are far apart: ηh = 0.21, so GD's 2/(2 − ηh) inflation
    # moves the prediction by 50–75%, and the power law's rise halves the Langevin time
    prob = landscapes.finite_sum_quadratic(
        jax.random.key(0), n=32, curvature=4.0, curvature_spread=0.5, center_spread=0.25
    )
    basin = ne.basin_from_finite_sum(prob)
    return basin, ne.measure_basin(jax.random.key(1), basin, loss_rise=0.2)


@pytest.mark.slow
@pytest.mark.parametrize("dynamics", ["power_law", "langevin"])
def test_escape_steps_match_quadrature(sharp_high_barrier, dynamics):
    b, noise = sharp_high_barrier
    barrier, eta = 0.2, 0.05
    pred = ne.predicted_escape_steps(noise, barrier=barrier, learning_rate=eta, batch_size=1)
    # the same quadrature without the inflation: σ² = η C/b with b' = b · 2/(2 − ηh)
    inflation = 2.0 / (2.0 - eta * noise.curvature)
    plain = ne.predicted_escape_steps(
        noise, barrier=barrier, learning_rate=eta, batch_size=inflation
    )
    own, rivals = {
        "power_law": (pred.power_law, {"langevin": pred.langevin, "no inflation": plain.power_law}),
        "langevin": (pred.langevin, {"power law": pred.power_law, "no inflation": plain.langevin}),
    }[dynamics]
    # 300 chains: exit times are near exponential (sd ≈ mean), so se ≈ own/sqrt(300) and
    # the nearest wrong answer (no inflation for the power law, 405 against 265 steps; the
    # power law for Langevin, 265 against 603) lies 9.2 and 9.7 of those errors away
    rise = ne.run_dynamics(
        jax.random.key(2), b, noise, dynamics, learning_rate=eta, batch_size=1,
        n_chains=300, n_steps=int(10 * own),
    ).rise  # fmt: skip
    stats = ne.escape_stats(rise, barrier)
    # censoring at 10 means is below the MC error even for the power law's heavier tail
    assert stats.escaped > 0.99
    assert abs(stats.mean - own) < 4 * stats.stderr, (stats, pred)
    for name, rival in rivals.items():
        assert abs(stats.mean - rival) > 4 * stats.stderr, (name, rival, stats, pred)


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
    "flat, sharp, se, censored, word, why",
    [
        (900.0, 100.0, 5.0, False, "supported", "the CI holds"),  # ratio 9: near 10
        (120.0, 100.0, 5.0, False, "not supported", "the CI holds"),  # near Langevin's 1.1
        (330.0, 100.0, 30.0, False, "inconclusive", "spans the midpoint"),
        (900.0, 100.0, 5.0, True, "inconclusive", "never escaped"),
        (900.0, 100.0, 400.0, False, "inconclusive", "at this size"),
    ],
)
def test_verdict_follows_the_interval(flat, sharp, se, censored, word, why):
    result = _result(flat, sharp, se, censored)
    verdict, reason = ne.escape_ratio_verdict(result)
    assert verdict is Verdict(word) and why in reason, (verdict, reason)
    claim, line = result.verdict()
    assert claim == ne.ESCAPE_RATIO_CLAIM and line == f"{word}: {reason}"


def test_rescaled_minimum_is_the_same_function_with_another_sharpness():
    from flax import nnx

    from sdn.train import MLP, functional_apply, split_model

    graphdef, params = split_model(MLP(5, (6,), 3, rngs=nnx.Rngs(0)))
    apply = functional_apply(graphdef)
    x = jax.random.normal(jax.random.key(3), (40, 5))
    y = jax.random.randint(jax.random.key(4), (40,), 0, 3)
    lam, s = 0.05, 2.0
    flat = ne.basin_from_network(apply, params, x, y, weight_decay=lam)
    w = ne.gradient_descent(flat.loss, flat.w_star, 0.5, 100)
    _, unravel = jax.flatten_util.ravel_pytree(params)
    p_sharp, decay = ne.rescale_layers(unravel(w), s, lam)
    sharp = ne.basin_from_network(apply, p_sharp, x, y, weight_decay=decay)
    np.testing.assert_allclose(apply(p_sharp, x), apply(unravel(w), x), rtol=1e-5, atol=1e-5)
    assert np.isclose(float(sharp.loss(sharp.w_star)), float(flat.loss(w)), rtol=1e-6)
    # a minimum maps onto a minimum: the gradients are the flat ones rescaled by 1/s or s
    g_flat = float(np.linalg.norm(jax.grad(flat.loss)(w)))
    g_sharp = float(np.linalg.norm(jax.grad(sharp.loss)(sharp.w_star)))
    assert g_sharp <= s * g_flat + 1e-7
    # along layer 2's kernel the curvature grows by s² exactly
    k = ("layers", 1, "kernel")
    e = jax.tree.map(jnp.zeros_like, unravel(w))
    e["layers"][1]["kernel"] = e["layers"][1]["kernel"].at[0, 0].set(1.0)
    u = jax.flatten_util.ravel_pytree(e)[0]

    def curv(b, at):
        return float(jax.jvp(jax.grad(b.loss), (at,), (u,))[1] @ u)

    assert np.isclose(curv(sharp, sharp.w_star), s**2 * curv(flat, w), rtol=1e-4), k
    with pytest.raises(ValueError, match="scale"):
        ne.rescale_layers(params, 0.0, lam)


@pytest.mark.parametrize(
    "field, value",
    [("barrier", -0.1), ("n_chains", 0), ("sharp_scale", 0.0), ("dynamics", ("sgd", "x"))],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        ne.NetworkEscapeConfig(**{field: value})


@pytest.mark.slow
def test_power_law_and_anisotropic_dynamics_follow_their_own_predictions(sharp_high_barrier):
    # a barrier where the two predictions differ (265 against 603 steps), with the escape
    # time read along v as the network experiment reads it
    basin, noise = sharp_high_barrier
    pred = ne.predicted_escape_steps(noise, barrier=0.2, learning_rate=0.05, batch_size=1)
    assert pred.langevin > 2 * pred.power_law
    for dyn, own, rival in (
        ("power_law", pred.power_law, pred.langevin),
        ("anisotropic", pred.langevin, pred.power_law),
    ):
        chains = ne.run_dynamics(
            jax.random.key(7), basin, noise, dyn, learning_rate=0.05, batch_size=1,
            n_chains=200, n_steps=int(10 * own),
        )  # fmt: skip
        stats = ne.escape_stats(np.abs(chains.along), pred.wall)
        # the power law's exit times have a heavier tail than an exponential's
        assert stats.escaped >= 0.99
        assert abs(stats.mean - own) < 4 * stats.stderr, (dyn, stats, pred)
        assert abs(stats.mean - rival) > 4 * stats.stderr, (dyn, stats, pred)


def test_old_argument_orders_warn_and_agree():
    _, basin, noise = _basin(1.0)
    with pytest.warns(DeprecationWarning, match=r"measure_basin\(key, basin"):
        old = ne.measure_basin(basin, jax.random.key(1), loss_rise=BARRIER)
    assert float(old.curvature) == float(noise.curvature)
    run = dict(learning_rate=0.1, batch_size=1, n_chains=4, n_steps=5)
    new = ne.run_dynamics(jax.random.key(3), basin, noise, "langevin", **run)
    with pytest.warns(DeprecationWarning, match=r"run_dynamics\(key, basin"):
        old = ne.run_dynamics(basin, noise, "langevin", jax.random.key(3), **run)
    np.testing.assert_array_equal(old.rise, new.rise)


def test_swap_claims_judge_each_part_at_the_flat_minimum():
    """§6.5's swaps of SGD's noise: ratios of mean steps, judged by their 95% interval at
    the flat minimum; censored escapes make it inconclusive; a missing dynamic, no claim."""
    from sdn.experiments.network_escape.section import swap_claims

    def rows(steps, censored=()):
        return [
            dict(minimum=m, dynamics=d, mean_steps=t, stderr=0.02 * t, censored=(m, d) in censored)
            for (m, d), t in steps.items()
        ]

    steps = {
        ("flat", "sgd"): 20.0, ("flat", "gaussian"): 40.0, ("flat", "power_law"): 41.0,
        ("sharp", "sgd"): 4.0, ("sharp", "gaussian"): 4.1, ("sharp", "power_law"): 4.0,
    }  # fmt: skip
    cfg = ne.NetworkEscapeConfig()
    law, state = swap_claims(ne.NetworkEscapeResult(cfg, {}, rows(steps)))
    assert law.verdict is Verdict.SUPPORTED and "flat 0.5 (" in law.measured, law
    assert state.verdict is Verdict.NOT_SUPPORTED, state  # 40/41 within 1/1.1–1.1
    censored = rows(steps, censored={("sharp", "gaussian")})
    law, state = swap_claims(ne.NetworkEscapeResult(cfg, {}, censored))
    assert law.verdict is Verdict.INCONCLUSIVE and "censored" in law.reason
    without = {k: v for k, v in steps.items() if k[1] != "gaussian"}
    assert swap_claims(ne.NetworkEscapeResult(cfg, {}, rows(without))) == []


def test_network_laws_rank_power_law_times_and_leave_out_censored_points():
    """The ranking step of the network's law grid on exact quadrature of the power-law
    dynamic (4 curvatures × 4 barriers): recognised as the power law with k near 1;
    censored points are left out and counted; a grid of one curvature gets no ranking."""
    from sdn import theory
    from sdn.experiments.network_escape.laws import rank_rows

    eta, b, sg, sh = 0.1, 1, 1.0, 1.0
    rows = []
    for h in (0.5, 1.0, 2.0, 4.0):
        for dl in (0.25, 0.5, 1.0, 2.0):
            xb = math.sqrt(2 * dl / h)
            t = float(theory.mean_first_passage_time(
                lambda x, h=h: -h * x, lambda x: eta / b * (sg + sh * x**2), 0.0, -xb, xb,
                n_grid=4097, rtol=1e-4,
            ))  # fmt: skip
            rows.append(dict(dynamic="pld", curvature=h, barrier=dl, sigma_g=sg, sigma_h=sh,
                             mean_time=t, sem=0.01 * t, censored=False))  # fmt: skip
    rows.append(dict(rows[0], censored=True, mean_time=1.0))
    rankings, censored = rank_rows(rows, ("pld",), lr=eta, batch_size=b, alpha=1.5)
    assert censored == {"pld": 1}
    fit = rankings["pld"].fits["power_law"]
    assert rankings["pld"].best.value == "power_law" and abs(fit.k - 1) < 0.1, fit
    one_h = [r for r in rows if r["curvature"] == 1.0]
    assert rank_rows(one_h, ("pld",), lr=eta, batch_size=b, alpha=1.5)[0] == {}


def test_network_laws_script_writes_its_files(tmp_path, monkeypatch):
    """scripts/network_laws.py on a fabricated result (the run itself is the experiment's):
    the CSVs of rows and fits, the figure, and the table printed."""
    import runpy
    import sys
    from pathlib import Path

    from sdn.experiments.network_escape.laws import NetworkLawsConfig, NetworkLawsResult, rank_rows

    rows = [
        dict(dynamic="sgd", scale=s, curvature=h, sigma_g=0.1 * h, sigma_h=10.0, barrier=dl,
             mean_time=20.0 * dl / h * 100, sem=1.0, escaped=1.0, censored=False)
        for s, h in ((1.0, 0.6), (2.0, 1.2), (3.0, 2.4)) for dl in (0.005, 0.01, 0.02)
    ]  # fmt: skip
    rankings, censored = rank_rows(rows, ("sgd",), lr=0.3, batch_size=4, alpha=1.5)
    fake = NetworkLawsResult(NetworkLawsConfig(), rows, rankings, censored)
    script = runpy.run_path(str(Path(__file__).resolve().parent.parent / "scripts/network_laws.py"))
    script["main"].__globals__["run_network_laws"] = lambda cfg, progress: fake
    monkeypatch.setattr(sys, "argv", ["network_laws.py", "--out", str(tmp_path)])
    script["main"]()
    for f in ("network_laws.csv", "network_laws_fits.csv", "network_laws.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    assert (tmp_path / "network_laws.csv").read_text().count("\n") == len(rows) + 1
