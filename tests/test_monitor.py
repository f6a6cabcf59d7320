"""The noise-scale monitor: its moving averages, and its readings inside `sdn.train.train`
against the statistics of the very batches the run drew."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sdn.train import MLP, NoiseScale, NoiseScaleMonitor, teacher_student, train
from sdn.train.gradstats import batch_gradient_statistics
from sdn.train.loop import _seed_keys, init_params


def test_readings_are_bias_corrected_moving_averages():
    monitor = NoiseScaleMonitor(every=3, decay=0.8)
    xs = [(2.0, 1.0), (5.0, -0.5), (3.0, 4.0)]
    state = monitor.init()
    assert np.isnan(float(monitor.read(state).simple))
    for i, (tr, gn) in enumerate(xs, 1):
        state = monitor.update(state, NoiseScale(tr, gn, tr / gn))
        w = 0.8 ** np.arange(i)[::-1] * 0.2
        want_tr = np.dot(w, [x[0] for x in xs[:i]]) / w.sum()
        want_gn = np.dot(w, [x[1] for x in xs[:i]]) / w.sum()
        got = monitor.read(state)
        np.testing.assert_allclose([got.trace, got.grad_norm_sq], [want_tr, want_gn], rtol=1e-6)
        np.testing.assert_allclose(got.simple, want_tr / want_gn, rtol=1e-6)
    assert int(state.count) == 3
    assert [monitor.due(t) for t in range(7)] == [1, 0, 0, 1, 0, 0, 1]
    assert monitor.measurements(7) == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(every=0), "every"), (dict(every=2.0), "every"), (dict(decay=1.0), "decay")],
)
def test_bad_settings_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoiseScaleMonitor(**kwargs)


def test_train_records_the_noise_scale_of_the_batches_it_drew(tmp_path):
    data = teacher_student(128, 32, dim=6, n_classes=3, hidden=8, seed=4)

    def model_fn(rngs):
        return MLP(6, (8,), 3, rngs=rngs)

    tx, b = optax.sgd(0.2), 16
    run = dict(batch_size=b, seeds=2, progress=False)
    monitored = train(
        model_fn, data, tx, steps=2, eval_every=1,
        noise_scale=NoiseScaleMonitor(every=1, decay=0.5), **run,
    )  # fmt: skip
    plain = train(model_fn, data, tx, steps=1, **run)
    # the batches of steps 0 and 1, from each seed's data key, at the parameters of then
    _, k_data, _ = _seed_keys((0, 1))
    graphdef, params0 = init_params(model_fn, _seed_keys((0, 1))[0])
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def batch_scale(params, key):
        idx = jax.random.randint(key, (b,), 0, x.shape[0])
        return batch_gradient_statistics(graphdef, params, x[idx], y[idx]).noise_scale

    def keys(k):
        k1, k_step0 = jax.random.split(k)
        return k_step0, jax.random.split(k1)[1]

    k0, k1 = jax.vmap(keys)(k_data)
    first = jax.vmap(batch_scale)(params0, k0)
    second = jax.vmap(batch_scale)(plain.params, k1)
    got = monitored.noise_scale
    assert np.isnan(got.simple[:, 0]).all()  # before any step
    np.testing.assert_allclose(got.trace[:, 1], first.trace, rtol=1e-4)
    np.testing.assert_allclose(got.grad_norm_sq[:, 1], first.grad_norm_sq, rtol=1e-4)
    # EMA with β = 1/2, bias-corrected: (β(1−β) x0 + (1−β) x1) / (1 − β²) = (x0 + 2 x1)/3
    want = (first.trace + 2 * second.trace) / 3
    np.testing.assert_allclose(got.trace[:, 2], want, rtol=1e-4)
    want_gn = (first.grad_norm_sq + 2 * second.grad_norm_sq) / 3
    np.testing.assert_allclose(got.simple[:, 2], want / want_gn, rtol=1e-4)
    # measuring takes the step's gradient from the statistics: the same training
    np.testing.assert_allclose(
        jax.flatten_util.ravel_pytree(monitored.params)[0],
        jax.flatten_util.ravel_pytree(train(model_fn, data, tx, steps=2, **run).params)[0],
        rtol=1e-4, atol=1e-6,
    )  # fmt: skip
    rows = monitored.rows()
    assert len(rows) == 2 * 3 and rows[-1]["noise_scale_simple"] == float(got.simple[1, 2])
    assert plain.noise_scale is None and "noise_trace" not in plain.rows()[0]
    from sdn.experiments import plots

    plots.plot_noise_scale(monitored, tmp_path / "noise_scale.png")
    assert (tmp_path / "noise_scale.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="noise_scale"):
        plots.plot_noise_scale(plain, tmp_path / "none.png")


def test_the_user_loop_form_measures_and_gives_the_gradient():
    data = teacher_student(64, 16, dim=4, n_classes=2, hidden=4, seed=0)
    model = MLP(4, (4,), 2, rngs=nnx.Rngs(0))
    monitor = NoiseScaleMonitor(every=2, decay=0.0)
    state, stats = monitor.measure(monitor.init(), model, data.x_train[:8], data.y_train[:8])
    reading = monitor.read(state)
    np.testing.assert_allclose(reading.trace, stats.noise_scale.trace, rtol=1e-6)
    grads = nnx.grad(
        lambda m: optax.softmax_cross_entropy_with_integer_labels(
            m(data.x_train[:8]), data.y_train[:8]
        ).mean()
    )(model)
    np.testing.assert_allclose(
        jax.flatten_util.ravel_pytree(nnx.state(grads))[0],
        jax.flatten_util.ravel_pytree(stats.mean)[0],
        rtol=1e-4, atol=1e-6,
    )  # fmt: skip
