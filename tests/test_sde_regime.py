"""Li et al.'s SDE-regime test (docs/theory.md §5): the extrapolation in 1/ℓ and its
interval, SGD at ℓ = 1, equal SDE time, the noise scale, bad configurations, the section."""

from __future__ import annotations

import csv
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sdn.experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Verdict
from sdn.experiments.sde_regime import (
    SdeRegimeConfig,
    agreement_verdict,
    check_config,
    compare_with_limit,
    noise_scale_rows,
    run_ell,
    sde_regime_section,
    seed_keys,
    transition_verdict,
)
from sdn.train import MLP, batch_loss, functional_apply, gradient_statistics, load_mnist1d


def tiny(**changes) -> SdeRegimeConfig:
    sizes = dict(
        hidden=(8,),
        n_train=200,
        n_test=100,
        batch_size=8,
        sde_steps=6,
        learning_rates=(0.1, 0.4),
        ells=(1, 2, 4),
        seeds=2,
    )
    return dataclasses.replace(SdeRegimeConfig.quick(), **{**sizes, **changes})


def test_the_limit_and_its_interval_are_calibrated():
    """2000 synthetic experiments of 5 seeds: m(ℓ) = a + o_s + c/ℓ + noise at ℓ ≥ 2 and
    a + o_s + c + δ at ℓ = 1, o_s a large per-seed offset (the shared initialization).
    The mean limit is within 4 of its standard errors of a, and rejects the mean at ℓ = 8
    (a + c/8, what no extrapolation gives); the 95% interval of m(1) − m_∞ = c + δ covers
    in 95% of experiments within 4 binomial standard errors, which rejects a normal
    quantile's interval (1.96 se: about 88% with 4 degrees of freedom) and an unpaired one
    (the offsets make it cover nearly always)."""
    rng = np.random.default_rng(0)
    ells = np.array([1, 2, 4, 8])
    a, c, delta, n_exp, seeds = 0.7, -0.4, 0.1, 2000, 5
    offsets = rng.normal(0, 1.0, (n_exp, seeds, 1))
    values = a + offsets + c / ells + rng.normal(0, 0.1, (n_exp, seeds, ells.size))
    values[:, :, 0] += delta
    res = [compare_with_limit(ells, v) for v in values]
    limits = np.array([r.limit - o.mean() for r, o in zip(res, offsets)])
    se = limits.std() / math.sqrt(n_exp)
    assert abs(limits.mean() - a) < 4 * se
    assert abs(a + c / 8 - a) > 10 * se  # the un-extrapolated mean is rejected
    covered = np.mean([r.lower <= c + delta <= r.upper for r in res])
    binom = math.sqrt(0.95 * 0.05 / n_exp)
    assert abs(covered - 0.95) < 4 * binom, covered
    normal = np.mean([abs(r.diff - c - delta) <= 1.96 * r.diff_se for r in res])
    assert abs(normal - 0.95) > 4 * binom, normal


def test_compare_with_limit_checks_its_input():
    with pytest.raises(ValueError, match="values"):
        compare_with_limit((1, 2, 4), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="ells"):
        compare_with_limit((2, 4, 8), np.zeros((3, 3)))
    assert math.isnan(compare_with_limit((1, 2, 4), np.full((3, 3), np.nan)).diff)


@pytest.mark.parametrize(
    "lower, upper, verdict",
    [(-0.5, 0.5, SUPPORTED), (0.1, 0.5, NOT_SUPPORTED), (-3.0, -0.1, NOT_SUPPORTED),
     (-0.5, 1.5, INCONCLUSIVE), (-1.2, 0.3, INCONCLUSIVE), (math.nan, 1.0, INCONCLUSIVE)],
)  # fmt: skip
def test_agreement_verdict(lower, upper, verdict):
    assert agreement_verdict(lower, upper, 1.0)[0] == verdict


def test_transition_verdict():
    s, n, i = ((v, "") for v in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE))
    assert transition_verdict({0.05: s, 1.0: n})[0] == SUPPORTED
    assert transition_verdict({0.05: n, 1.0: n})[0] == NOT_SUPPORTED
    assert transition_verdict({0.05: s, 1.0: s})[0] == NOT_SUPPORTED
    assert transition_verdict({0.05: i, 1.0: n})[0] == INCONCLUSIVE


@pytest.mark.parametrize(
    "changes, name",
    [
        (dict(batch_size=7), "batch_size"),
        (dict(sde_steps=0), "sde_steps"),
        (dict(seeds=1), "seeds"),
        (dict(ells=(2, 4, 8)), "ells"),
        (dict(ells=(1, 2)), "ells"),
        (dict(ells=(1, 2, 2, 4)), "ells"),
        (dict(learning_rates=()), "learning_rates"),
        (dict(learning_rates=(0.1, -0.2)), "learning_rates"),
        (dict(acc_tolerance=0.0), "acc_tolerance"),
        (dict(loss_tolerance=math.inf), "loss_tolerance"),
        (dict(level=1.5), "level"),
    ],
)
def test_bad_config_errors_name_the_argument(changes, name):
    with pytest.raises(ValueError, match=name):
        check_config(tiny(**changes))
    check_config(tiny())


def test_noise_scale_rows_divide_the_sums():
    cfg = tiny(seeds=3, learning_rates=(0.1,))
    trace = np.array([[[4.0, 8.0], [6.0, 6.0], [3.0, 9.0]]])  # Σ = 12 each
    grad = np.array([[[1.0, 2.0], [0.5, 0.5], [2.0, 1.0]]])  # Σ = 3, 1, 3
    row = noise_scale_rows(cfg, trace, grad)[0]
    assert row["b_simple"] == pytest.approx((4 + 12 + 4) / 3)
    assert row["ratio"] == pytest.approx(4 / row["b_simple"])  # B/2 = 4
    assert row["b_simple_lower"] < row["b_simple"] < row["b_simple_upper"]


def test_ell_one_is_sgd_on_the_first_half_batch():
    """ℓ = 1 is plain SGD on the first B/2 examples of each batch (the same draws), for
    every learning rate, and its first noise-scale reading is the batch's own."""
    cfg = tiny()
    data = load_mnist1d(cfg.n_train, cfg.n_test, seed=cfg.data_seed)
    out = run_ell(cfg, data, 1, noise_scale=True)
    assert (out["steps"] == cfg.sde_steps).all()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    k_init, k_data = seed_keys(range(cfg.seeds))

    def model(key):
        return MLP(40, cfg.hidden, 10, rngs=nnx.Rngs(key))

    graphdef, _ = nnx.split(model(k_init[0]), nnx.Param)
    apply = functional_apply(graphdef)
    half = cfg.batch_size // 2

    def draw(key):
        key, k = jax.random.split(key)
        return key, jax.random.randint(k, (cfg.batch_size,), 0, x.shape[0])

    @jax.jit
    def trace(p, key):
        idx = draw(key)[1]
        return gradient_statistics(nnx.merge(graphdef, p), x[idx], y[idx]).noise_scale.trace

    @jax.jit
    def sgd(p, key, lr):
        key, idx = draw(key)
        g = jax.grad(batch_loss(apply))(p, x[idx[:half]], y[idx[:half]])
        return jax.tree.map(lambda w, gw: w - lr * gw, p, g), key

    for s in range(cfg.seeds):
        start = nnx.to_pure_dict(nnx.split(model(k_init[s]), nnx.Param)[1])
        first = trace(start, k_data[s])
        for i, lr in enumerate(cfg.learning_rates):
            np.testing.assert_allclose(out["trace"][i, s, 0], first, rtol=1e-4)
            p, key = start, k_data[s]
            for _ in range(cfg.sde_steps):
                p, key = sgd(p, key, lr)
            got = jax.tree.map(lambda a, i=i, s=s: a[i, s], out["params"])
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(p), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    out = tmp_path_factory.mktemp("sde")
    return out, sde_regime_section(out, "quick", tiny())


def test_section_runs_at_equal_sde_time_and_gives_claims(section):
    out, sec = section
    cfg = tiny()
    runs = list(csv.DictReader((out / "sde_regime_runs.csv").open()))
    assert len(runs) == len(cfg.learning_rates) * len(cfg.ells) * cfg.seeds
    for r in runs:
        ell, lr = int(r["ell"]), float(r["learning_rate"])
        assert int(r["steps"]) == ell * cfg.sde_steps  # the optimizer's own step count
        assert float(r["sde_time"]) == pytest.approx(cfg.sde_steps * lr)
    assert len(sec.claims) == len(cfg.learning_rates) + 2
    assert all(isinstance(c.verdict, Verdict) for c in sec.claims)
    assert {"sde_regime.png", "sde_regime.csv", "sde_regime_noise.csv"} <= set(sec.files)
    assert (out / "sde_regime.png").stat().st_size > 0
    assert "ℓ → ∞" in sec.table
