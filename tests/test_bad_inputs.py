"""Bad input across the public API: each raises a clear error that names the argument.

One row per bad input: the call, the exception type, and a pattern the message must
contain (the argument's name, or the flag for the command line). The optimizer and
sweep entries are kept with their own modules' tests.
"""

from __future__ import annotations

import contextlib
import io
import math

import jax.numpy as jnp
import numpy as np
import pytest

from sdn import cli, domains, first_exit_time, noise, simulate, simulate_trajectory, stats, theory
from sdn.landscapes import quadratic_basin, sharp_flat_2d
from sdn.sde import sgd_sde
from sdn.train import data


def _sde(**kw):
    return sgd_sde(lambda w: w, noise.isotropic(1.0), 0.1, 1, **kw)


def _sim(**kw):
    args = dict(key=0, sde=_sde(), w0=jnp.zeros(()), dt=0.01, n_steps=5, n_paths=2)
    args.update(kw)
    return simulate(args.pop("key"), args.pop("sde"), args.pop("w0"), **args)


def _exit(**kw):
    args = dict(domain=domains.interval(-1.0, 1.0), w0=jnp.zeros(()), n_steps=5)
    args.update(kw)
    return first_exit_time(0, _sde(), args.pop("w0"), args.pop("domain"), dt=0.01, n_paths=2,
                           **args)  # fmt: skip


def _mfpt(**kw):
    args = dict(x0=0.0, lo=-1.0, hi=1.0)
    args.update(kw)
    return theory.mean_first_passage_time(lambda x: -x, lambda x: 1.0 + 0 * x, **args)


def _cli(*argv):
    """The command line's user errors, raised as ValueError with the line it printed."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    if code == 2:
        raise ValueError(err.getvalue())
    return code


def _gaussian_ppf(q):
    return theory.gaussian_stationary(1.0, 0.1, 1, 1.0).ppf(q)


SAMPLES = np.random.default_rng(0).standard_t(3, 200)

CASES = [
    # engine: simulate, first_exit_time, sgd_sde
    ("simulate w0 NaN", lambda: _sim(w0=jnp.nan), ValueError, "w0 must be finite"),
    ("simulate dt=0", lambda: _sim(dt=0.0), ValueError, "dt must be finite and positive"),
    (
        "simulate dt<0",
        lambda: _sim(dt=-0.1),
        ValueError,
        "dt must be finite and positive, got -0.1",
    ),
    ("simulate n_paths=0", lambda: _sim(n_paths=0), ValueError, "n_paths"),
    ("simulate n_paths float", lambda: _sim(n_paths=1.5), TypeError, "n_paths"),
    ("simulate n_steps=0", lambda: _sim(n_steps=0), ValueError, "n_steps"),
    (
        "simulate_trajectory save_every>n_steps",
        lambda: simulate_trajectory(0, _sde(), 0.0, dt=0.01, n_steps=5, n_paths=2, save_every=9),
        ValueError,
        "save_every",
    ),
    ("simulate sde not an SDE", lambda: _sim(sde="sde"), TypeError, "sde"),
    ("simulate key a string", lambda: _sim(key="abc"), TypeError, "key"),
    ("simulate chunk_size=0", lambda: _sim(chunk_size=0), ValueError, "chunk_size"),
    ("simulate unknown solver", lambda: _sim(solver="rk4"), ValueError, "solver"),
    (
        "first_exit_time w0 outside",
        lambda: _exit(w0=jnp.array(2.0)),
        ValueError,
        "w0=2.0 is not inside",
    ),
    ("first_exit_time domain", lambda: _exit(domain=(-1, 1)), TypeError, "domain"),
    ("first_exit_time n_steps=0", lambda: _exit(n_steps=0), ValueError, "n_steps"),
    ("sgd_sde grad_fn", lambda: sgd_sde(3, noise.isotropic(1.0), 0.1, 1), TypeError, "grad_fn"),
    (
        "sgd_sde learning_rate",
        lambda: sgd_sde(abs, noise.isotropic(1.0), 0.0, 1),
        ValueError,
        "learning_rate",
    ),  # fmt: skip
    (
        "sgd_sde batch_size",
        lambda: sgd_sde(abs, noise.isotropic(1.0), 0.1, 0),
        ValueError,
        "batch_size",
    ),  # fmt: skip
    # domains
    ("interval lo >= hi", lambda: domains.interval(1.0, 0.0), ValueError, "lo=1.0, hi=0.0"),
    ("interval NaN", lambda: domains.interval(math.nan, 1.0), ValueError, "lo=nan"),
    (
        "interval vector bounds",
        lambda: domains.interval(np.zeros(2), np.ones(2)),
        ValueError,
        "box",
    ),  # fmt: skip
    ("box lo >= hi", lambda: domains.box([0.0, 0.0], [1.0, -1.0]), ValueError, "need lo < hi"),
    ("from_function not callable", lambda: domains.from_function(3), TypeError, "inside"),
    # noise models
    ("isotropic negative", lambda: noise.isotropic(-1.0), ValueError, "variance"),
    ("isotropic vector", lambda: noise.isotropic([1.0, 2.0]), ValueError, "variance"),
    ("diagonal negative", lambda: noise.diagonal([1.0, -1.0]), ValueError, "variances"),
    ("full not square", lambda: noise.full(np.ones(3)), ValueError, "covariance"),
    (
        "full not symmetric",
        lambda: noise.full([[1.0, 0.5], [0.0, 1.0]]),
        ValueError,
        "covariance",
    ),  # fmt: skip
    ("full not PSD", lambda: noise.full([[1.0, 0.0], [0.0, -1.0]]), ValueError, "covariance"),
    ("power_law sigma_g<0", lambda: noise.power_law(-1.0, 1.0), ValueError, "sigma_g"),
    ("power_law sigma_h<0", lambda: noise.power_law(1.0, -1.0), ValueError, "sigma_h"),
    (
        "power_law center NaN",
        lambda: noise.power_law(1.0, 1.0, center=math.nan),
        ValueError,
        "center",
    ),  # fmt: skip
    ("empirical one sample", lambda: noise.empirical(np.ones((1, 3))), ValueError, "gradients"),
    ("empirical scalar", lambda: noise.empirical(1.0), ValueError, "gradients"),
    (
        "empirical leading axes differ",
        lambda: noise.empirical({"a": np.ones((3, 2)), "b": np.ones((4,))}),
        ValueError,
        "gradients",
    ),  # fmt: skip
    ("empirical NaN", lambda: noise.empirical([[0.0], [math.nan]]), ValueError, "gradients"),
    ("empirical scaled<0", lambda: noise.empirical(np.eye(3)).scaled(-1.0), ValueError, "factor"),
    ("empirical alpha_g<0", lambda: noise.empirical(np.eye(3), -1.0), ValueError, "alpha_g"),
    ("empirical alpha_h<0", lambda: noise.empirical(np.eye(3), 1.0, -1.0), ValueError, "alpha_h"),
    (
        "empirical factors vs w0",
        lambda: _sim(sde=sgd_sde(lambda w: w, noise.empirical(np.eye(3)), 0.1, 1)),
        ValueError,
        "factors",
    ),  # fmt: skip
    (
        "minibatch sample_grad",
        lambda: noise.minibatch(3, np.ones((4, 1)), 2),
        TypeError,
        "sample_grad",
    ),  # fmt: skip
    (
        "minibatch batch > n",
        lambda: noise.minibatch(lambda w, x: x, np.ones((4, 1)), 5, replace=False),
        ValueError,
        "batch_size",
    ),  # fmt: skip
    ("alpha_stable alpha>2", lambda: noise.alpha_stable(2.5), ValueError, "alpha"),
    ("alpha_stable c=0", lambda: noise.alpha_stable(1.5, 0.0), ValueError, "c must be"),
    # theory
    (
        "power_law_stationary curvature",
        lambda: theory.power_law_stationary(0.0, 0.1, 1, 1.0, 1.0),
        ValueError,
        "curvature",
    ),  # fmt: skip
    (
        "gaussian_stationary sigma_g",
        lambda: theory.gaussian_stationary(1.0, 0.1, 1, -1.0),
        ValueError,
        "sigma_g",
    ),  # fmt: skip
    (
        "gaussian_stationary batch_size",
        lambda: theory.gaussian_stationary(1.0, 0.1, 0, 1.0),
        ValueError,
        "batch_size",
    ),  # fmt: skip
    ("mfpt lo >= hi", lambda: _mfpt(lo=1.0, hi=1.0), ValueError, "lo=1.0, hi=1.0"),
    ("mfpt x0 outside", lambda: _mfpt(x0=2.0), ValueError, "got x0=2.0"),
    ("mfpt n_grid", lambda: _mfpt(n_grid=5), ValueError, "n_grid"),
    ("mfpt n_grid float", lambda: _mfpt(n_grid=65.0), TypeError, "n_grid"),
    (
        "kramers learning_rate",
        lambda: theory.kramers_escape_time(quadratic_basin(1.0, 1.0), 0.0, 1, 1.0),
        ValueError,
        "learning_rate",
    ),  # fmt: skip
    (
        "kramers other landscape",
        lambda: theory.kramers_escape_time(sharp_flat_2d(), 0.1, 1, 1.0),
        TypeError,
        "landscape",
    ),  # fmt: skip
    (
        "power_law_escape sigma_h",
        lambda: theory.power_law_escape_time(quadratic_basin(1.0, 1.0), 0.1, 1, 1.0, 0.0),
        ValueError,
        "sigma_h",
    ),  # fmt: skip
    (
        "walled_basin var_u",
        lambda: theory.walled_basin_escape_times(1.0, 0.5, 0.1, 1, 1.0, -1.0),
        ValueError,
        "var_u",
    ),  # fmt: skip
    # statistics
    ("hill too few", lambda: stats.hill_estimator([1.0, 2.0]), ValueError, "samples"),
    ("hill k fraction", lambda: stats.hill_estimator(SAMPLES, 1.5), ValueError, "k as a fraction"),
    ("hill NaN", lambda: stats.hill_estimator([*SAMPLES, math.nan]), ValueError, "finite"),
    (
        "stable_index t_range",
        lambda: stats.stable_index(SAMPLES, t_range=(1.0, 0.1)),
        ValueError,
        "t_range",
    ),  # fmt: skip
    (
        "quantile_table probs",
        lambda: stats.quantile_table(SAMPLES, _gaussian_ppf, [0.5, 1.5]),
        ValueError,
        "probs",
    ),  # fmt: skip
    (
        "quantile_table level",
        lambda: stats.quantile_table(SAMPLES, _gaussian_ppf, level=1.0),
        ValueError,
        "level",
    ),  # fmt: skip
    ("bootstrap level", lambda: stats.bootstrap_ci(0, SAMPLES, level=0.0), ValueError, "level"),
    (
        "polynomial_fit sizes",
        lambda: stats.polynomial_fit([1.0, 2, 3, 4, 5], [1.0, 2, 3, 4], 1),
        ValueError,
        "x and y",
    ),  # fmt: skip
    (
        "fit_critical_batch too few sizes",
        lambda: stats.fit_critical_batch([16, 32, 32], [10.0, 5, 5]),
        ValueError,
        "batch_size needs at least 3 distinct",
    ),  # fmt: skip
    (
        "fit_critical_batch steps",
        lambda: stats.fit_critical_batch([16, 32, 64], [10.0, -5, 3]),
        ValueError,
        "steps must be finite and positive, got [-5.0]",
    ),  # fmt: skip
    # data loaders
    ("load_digits test_fraction", lambda: data.load_digits(1.5), ValueError, "test_fraction"),
    (
        "teacher_student label_noise",
        lambda: data.teacher_student(label_noise=2.0),
        ValueError,
        "label_noise",
    ),  # fmt: skip
    ("load_npz name", lambda: data.load_npz(".", name=""), ValueError, "name"),
    (
        "load_npz missing folder",
        lambda: data.load_npz("/no/such/folder"),
        FileNotFoundError,
        "no mnist data at /no/such/folder: expected",
    ),  # fmt: skip
    # command line (one line on stderr, exit code 2)
    ("cli --dt", lambda: _cli("escape", "--dt", "0"), ValueError, "--dt"),
    (
        "cli --quantiles",
        lambda: _cli("stationary", "--quantiles", "0.5,1.5"),
        ValueError,
        "--quantiles",
    ),  # fmt: skip
    (
        "cli --x0 outside --wall",
        lambda: _cli("escape", "--x0", "1", "--wall", "1"),
        ValueError,
        "--x0",
    ),  # fmt: skip
    ("cli --batch", lambda: _cli("train", "--batch", "0"), ValueError, "--batch"),
    ("cli --paths", lambda: _cli("demo", "--paths", "-5"), ValueError, "--paths"),
    ("cli --only", lambda: _cli("reproduce", "--only", "x"), ValueError, "--only"),
    ("cli --hidden", lambda: _cli("train", "--hidden", "8,a"), ValueError, "--hidden"),
]


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("call, error, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_named(call, error, names):
    # a pattern of one or two letters would match almost any message
    assert len(names) >= 3, names
    with pytest.raises(error) as info:
        call()
    assert names in str(info.value), str(info.value)
