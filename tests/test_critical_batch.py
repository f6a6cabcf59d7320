"""§6.8: the critical batch size — the trade-off's fit, steps to the target, the experiment."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sdn.experiments import critical_batch as cb
from sdn.experiments.claims import Verdict
from sdn.stats import CriticalBatchFit, fit_critical_batch

B = 2.0 ** np.arange(4, 11)  # 16 … 1024
S_MIN, B_CRIT = 200.0, 100.0
LAW = S_MIN * (1 + B_CRIT / B)


def _covers(ci, value):
    return ci[0] <= value <= ci[1]


# --------------------------------------------------------------------------- the fit


def test_the_exact_law_is_recovered():
    fit = fit_critical_batch(B, LAW, 0.01 * LAW)
    assert isinstance(fit, CriticalBatchFit) and fit.n == 7 and fit.dof == 5
    assert fit.s_min == pytest.approx(S_MIN, rel=1e-10)
    assert fit.e_min == pytest.approx(S_MIN * B_CRIT, rel=1e-10)
    assert fit.b_crit == pytest.approx(B_CRIT, rel=1e-10) and fit.chi2 < 1e-12
    np.testing.assert_allclose(fit.examples_at(B), B * LAW, rtol=1e-10)
    # (S/S_min − 1)(E/E_min − 1) = 1 along the fitted curve
    s, e = fit.steps_at(B), fit.examples_at(B)
    np.testing.assert_allclose((s / fit.s_min - 1) * (e / fit.e_min - 1), 1.0, rtol=1e-10)


@pytest.mark.parametrize("errors", ["given", "estimated"])
def test_intervals_cover_at_the_nominal_rate_and_reject_the_nearest_wrong_answers(errors):
    # 400 noisy repeats of the law (5% relative noise). Coverage of a 95% interval over
    # 400 repeats has a Monte Carlo standard error sqrt(.95 · .05/400) = 0.011; each
    # coverage must lie within 3 of them of 0.95 (with given errors the misfit
    # inflation max(1, χ²/dof) may only widen: up to 0.95 + 0.04).
    rng = np.random.default_rng(0)
    reps = 400
    cover = np.zeros(3)
    wrong = np.zeros(3)
    for _ in range(reps):
        y = LAW * (1 + 0.05 * rng.standard_normal(B.size))
        fit = fit_critical_batch(B, y, 0.05 * LAW if errors == "given" else None)
        cover += [
            _covers(fit.s_min_ci, S_MIN),
            _covers(fit.e_min_ci, S_MIN * B_CRIT),
            _covers(fit.b_crit_ci, B_CRIT),
        ]
        # the nearest wrong answers: B_crit off by 2× either way, and perfect scaling
        # S ∝ 1/B (S_min = 0, B_crit = ∞)
        wrong += [
            _covers(fit.b_crit_ci, 2 * B_CRIT),
            _covers(fit.b_crit_ci, B_CRIT / 2),
            _covers(fit.s_min_ci, 0.0) or math.isinf(fit.b_crit_ci[1]),
        ]
    se = math.sqrt(0.95 * 0.05 / reps)
    upper = 0.95 + (0.04 if errors == "given" else 3 * se)
    assert np.all(cover / reps >= 0.95 - 3 * se) and np.all(cover / reps <= upper), cover / reps
    assert np.all(wrong / reps <= 0.01), wrong / reps


def test_perfect_scaling_data_leave_b_crit_unbounded_above():
    e = 20000.0
    rng = np.random.default_rng(1)
    y = e / B * (1 + 0.05 * rng.standard_normal(B.size))
    fit = fit_critical_batch(B, y)
    assert _covers(fit.s_min_ci, 0.0) and math.isinf(fit.b_crit_ci[1])
    assert _covers(fit.e_min_ci, e)


def test_the_interval_widens_with_the_noise_and_repeats_average_it():
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((3, B.size))
    one = fit_critical_batch(B, LAW * (1 + 0.05 * noise[0]))
    three = fit_critical_batch(np.tile(B, 3), np.tile(LAW, 3) * (1 + 0.05 * noise.ravel()))
    assert three.n == 21 and three.n_batch_sizes == 7 and three.dof == 19
    width = [np.log(f.b_crit_ci[1] / f.b_crit_ci[0]) for f in (one, three)]
    assert width[1] < width[0]


def test_bad_input_names_the_argument_and_the_value():
    with pytest.raises(ValueError, match=r"batch_size needs at least 3 distinct.*\[16\.0, 32\.0\]"):
        fit_critical_batch([16, 32, 32], [10, 5, 5])
    with pytest.raises(ValueError, match=r"steps must be finite and positive, got \[0\.0\]"):
        fit_critical_batch([16, 32, 64], [10, 5, 0])
    with pytest.raises(ValueError, match=r"batch_size must be finite and positive.*-16"):
        fit_critical_batch([-16, 32, 64], [10, 5, 3])
    with pytest.raises(ValueError, match=r"steps_sem must be finite and positive.*nan"):
        fit_critical_batch([16, 32, 64], [10, 5, 3], [1, np.nan, 1])
    with pytest.raises(ValueError, match="steps must have one value per batch size"):
        fit_critical_batch([16, 32, 64], [10, 5])
    with pytest.raises(ValueError, match="level must lie in"):
        fit_critical_batch([16, 32, 64], [10, 5, 3], level=95)


# --------------------------------------------------------------------------- steps to target


def test_steps_to_target_on_a_hand_made_curve():
    steps = [0, 10, 20, 30, 40]
    loss = [2.0, 1.0, 0.6, 0.3, 0.2]
    # first evaluation at or below 0.5 is step 30; log-linear between 0.6 (20) and 0.3 (30)
    expected = 20 + 10 * math.log(0.6 / 0.5) / math.log(0.6 / 0.3)
    assert cb.steps_to_target(steps, loss, 0.5) == pytest.approx(expected, rel=1e-12)
    assert cb.steps_to_target(steps, loss, 0.6) == 20.0  # exactly on an evaluation
    assert cb.steps_to_target(steps, loss, 5.0) == 0.0  # already there at the start
    assert cb.steps_to_target(steps, loss, 0.1) == math.inf  # never reached
    # a later dip does not count before the first crossing; a diverged run never reaches
    assert cb.steps_to_target([0, 10, 20], [1.0, 0.4, 0.9], 0.5) > 0
    assert cb.steps_to_target([0, 10, 20], [1.0, np.nan, np.nan], 0.5) == math.inf
    with pytest.raises(ValueError, match="steps and loss"):
        cb.steps_to_target([0, 10], [1.0], 0.5)
    with pytest.raises(ValueError, match="target must be positive"):
        cb.steps_to_target([0, 10], [1.0, 0.5], 0.0)


# --------------------------------------------------------------------------- the experiment


def _tiny(**changes) -> cb.CriticalBatchConfig:
    sizes = dict(
        batch_sizes=(16, 64, 256), n_train=500, target_loss=1.6, max_steps=600,
        first_eval_every=20, evals=8, hidden=(16,),
    )  # fmt: skip
    return dataclasses.replace(cb.CriticalBatchConfig.quick(), **{**sizes, **changes})


def test_a_tiny_run_reaches_the_target_and_fits():
    res = cb.run_critical_batch(_tiny())
    rows = res.rows
    assert len(rows) == 6 and all(r["reached"] for r in rows)
    s = {b: np.mean([r["steps"] for r in rows if r["batch_size"] == b]) for b in (16, 64, 256)}
    assert s[16] > s[64] > s[256] > 0  # more examples per step, fewer steps
    for r in rows:
        assert r["examples"] == pytest.approx(r["batch_size"] * r["steps"])
        assert r["learning_rate"] == min(0.05 * r["batch_size"] / 16, 1.6)
        assert r["step_cap"] <= 600 and math.isfinite(r["b_simple_at_target"])
    m = res.models["mlp"]
    assert m["fit"] is not None and m["fit"].n == 6 and math.isfinite(m["b_simple"])
    assert m["b_simple_lo"] < m["b_simple"] < m["b_simple_hi"]
    assert "B_crit" in res.table()


def test_runs_that_miss_the_target_are_reported_and_left_out():
    def row(b, seed, steps):
        return dict(batch_size=b, seed=seed, reached=math.isfinite(steps), steps=steps,
                    step_cap=500, final_train_loss=0.9, trace_at_target=100.0 * b,
                    grad_norm_sq_at_target=1.0 * b)  # fmt: skip

    rows = [row(b, k, S_MIN * (1 + B_CRIT / b) * (1 + 0.02 * k)) for b in B for k in (0, 1)]
    rows[1] = row(16.0, 1, math.inf)  # one run never reached the target
    curve = (np.arange(3), np.array([[np.nan, 50.0, 90.0]] * 2))
    history = {("mlp", b): curve for b in B}
    m = cb._model_summary(None, "mlp", rows, history)
    assert m["runs"] == 14 and m["reached"] == 13 and m["fit"].n == 13
    assert "not reached within the step cap" in m["note"] and "B=16.0 seed 1" in m["note"]
    assert m["b_simple"] == pytest.approx(100.0)
    assert (m["b_simple_train_min"], m["b_simple_train_max"]) == (50.0, 90.0)
    # too few batch sizes reach it: no fit, and the verdict says why
    m = cb._model_summary(None, "mlp", [r for r in rows if r["batch_size"] < 64], history)
    assert m["fit"] is None and "fewer than 3" in m["note"]
    verdict, reason = cb.trade_off_verdict(m, (16, 32))
    assert verdict is Verdict.INCONCLUSIVE and "fewer than 3" in reason


def _summary(ci, b_simple=(100.0, 80.0, 125.0), p=0.5, n_sizes=7):
    lo, hi = ci
    fit = CriticalBatchFit(50.0, (40, 60), 5000.0, (4000, 6000), 100.0, (lo, hi),
                           1.0, 5, math.nan, 0.05, 7, n_sizes, 0.95)  # fmt: skip
    return dict(fit=fit, lack_of_fit_p=p, b_simple=b_simple[0], b_simple_lo=b_simple[1],
                b_simple_hi=b_simple[2], note="")  # fmt: skip


@pytest.mark.parametrize(
    "ci, p, word",
    [
        ((60, 180), 0.5, "supported"),
        ((60, math.inf), 0.5, "inconclusive"),  # perfect scaling not excluded
        ((0.0, 180), 0.5, "inconclusive"),  # no gain not excluded
        ((60, 180), 0.001, "not supported"),  # the replicates reject the law
    ],
)
def test_trade_off_and_law_fit_verdicts_name_the_branch(ci, p, word):
    # the interval decides whether there is a B_crit; the replicates whether the law fits
    summary = _summary(ci, p=p)
    verdict, reason = cb.trade_off_verdict(summary, (16, 1024))
    fit_verdict, fit_reason = cb.law_fit_verdict(summary)
    if p < 0.01:
        assert verdict is Verdict.SUPPORTED and fit_verdict is Verdict(word), fit_reason
    else:
        assert verdict is Verdict(word) and fit_verdict is Verdict.SUPPORTED, reason
    # over 3 batch sizes the shape has 1 degree of freedom: no "supported" fit
    few = cb.law_fit_verdict(_summary(ci, p=p, n_sizes=3))[0]
    assert few is (Verdict.NOT_SUPPORTED if p < 0.01 else Verdict.INCONCLUSIVE)


@pytest.mark.parametrize(
    "ci, b_simple, word",
    [
        ((60, 180), (100, 80, 125), "supported"),
        ((60, 1800), (100, 80, 125), "inconclusive"),
        ((2000, 4000), (100, 80, 125), "not supported"),
        ((1, 5), (100, 80, 125), "not supported"),
    ],
)
def test_agreement_verdict_names_the_branch(ci, b_simple, word):
    verdict, reason = cb.agreement_verdict(_summary(ci, b_simple))
    assert verdict is Verdict(word), reason


def test_bad_config_names_the_argument():
    with pytest.raises(ValueError, match="models"):
        cb.CriticalBatchConfig(models=("resnet",))
    with pytest.raises(ValueError, match="batch_sizes"):
        cb.CriticalBatchConfig(batch_sizes=(64, 16, 256))
    with pytest.raises(ValueError, match="target_loss"):
        cb.CriticalBatchConfig(target_loss=0.0)
    with pytest.raises(ValueError, match="cnn_max_lr"):
        cb.CriticalBatchConfig(cnn_max_lr=-1.0)
