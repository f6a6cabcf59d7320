"""Models, data loaders and the vmapped-seed training loop."""

import random

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sdn import optim
from sdn.train import (
    CNN,
    MLP,
    Dataset,
    count_params,
    load_digits,
    load_mnist1d,
    load_npz,
    make_train_step,
    nnx_train_step,
    split_model,
    teacher_student,
    train,
)
from sdn.train.loop import batch_loss, functional_apply


@pytest.fixture(scope="module")
def small():
    return teacher_student(256, 128, dim=8, n_classes=3, hidden=16, seed=1)


def mlp(rngs):
    return MLP(8, (16,), 3, rngs=rngs)


# --------------------------------------------------------------------------- models


def test_models_shapes_and_parameter_count():
    assert MLP(64, (32, 16), 10, rngs=nnx.Rngs(0))(jnp.ones((5, 8, 8))).shape == (5, 10)
    assert count_params(MLP(4, (3,), 2, rngs=nnx.Rngs(0))) == 4 * 3 + 3 + 3 * 2 + 2
    assert CNN((40,), 10, rngs=nnx.Rngs(0))(jnp.ones((2, 40))).shape == (2, 10)
    assert CNN((8, 8), 10, rngs=nnx.Rngs(0))(jnp.ones((2, 8, 8))).shape == (2, 10)
    rgb = CNN((6, 6), 10, in_channels=3, channels=(4, 4, 4), rngs=nnx.Rngs(0))
    assert rgb(jnp.ones((2, 6, 6, 3))).shape == (2, 10)  # pools 6 → 3 → 1, then stops
    with pytest.raises(ValueError, match="hidden"):
        MLP(4, (0,), 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="input_shape"):
        CNN((2, 2, 2), 3, rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------- data


def test_digits_deterministic_standardized_stratified():
    a, b = load_digits(), load_digits()
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int32
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_allclose(a.x_train.mean(0), 0.0, atol=1e-5)
    assert set(np.unique(a.y_test)) == set(range(10)) and a.n_classes == 10
    assert not np.array_equal(load_digits(seed=1).y_train, a.y_train)


def test_mnist1d_offline_deterministic_and_leaves_global_rng_alone():
    random.seed(5)
    np.random.seed(5)
    before = (random.random(), np.random.random())
    random.seed(5)
    np.random.seed(5)
    d = load_mnist1d(n_train=150, n_test=50, seed=3)
    assert (random.random(), np.random.random()) == before
    assert d.x_train.shape == (150, 40) and d.x_test.shape == (50, 40)
    assert set(np.unique(np.concatenate([d.y_train, d.y_test]))) == set(range(10))
    np.testing.assert_array_equal(d.x_train, load_mnist1d(150, 50, seed=3).x_train)
    assert not np.array_equal(d.x_train, load_mnist1d(150, 50, seed=4).x_train)
    with pytest.raises(ValueError, match="multiple of 10"):
        load_mnist1d(n_train=15, n_test=3)


def test_teacher_student_labels_follow_the_teacher():
    d = teacher_student(500, 200, dim=6, n_classes=3, label_noise=0.0, seed=2)
    noisy = teacher_student(500, 200, dim=6, n_classes=3, label_noise=0.5, seed=2)
    np.testing.assert_array_equal(d.y_test, noisy.y_test)
    flipped = np.mean(d.y_train != noisy.y_train)
    assert 0.2 < flipped < 0.45  # half re-drawn, two thirds of those change
    with pytest.raises(ValueError, match="label_noise"):
        teacher_student(label_noise=2.0)


def _arrays(rng, shape=(6, 28, 28)):
    return dict(
        x_train=rng.integers(0, 256, shape, dtype=np.uint8),
        y_train=np.arange(shape[0]) % 10,
        x_test=rng.integers(0, 256, (3, *shape[1:]), dtype=np.uint8),
        y_test=np.arange(3),
    )


def test_load_npz_file_folder_and_npy_files(tmp_path):
    rng = np.random.default_rng(0)
    arrays = _arrays(rng)
    np.savez(tmp_path / "mnist.npz", **arrays)
    by_dir = load_npz(tmp_path, "mnist")
    by_file = load_npz(tmp_path / "mnist.npz", standardize=False)
    np.testing.assert_allclose(by_file.x_train, arrays["x_train"] / 255.0, rtol=1e-6)
    assert by_dir.x_train.shape == (6, 28, 28) and abs(float(by_dir.x_train.mean())) < 1e-5
    np.testing.assert_array_equal(by_dir.y_train, arrays["y_train"])

    cifar = tmp_path / "cifar10"
    cifar.mkdir()
    c_arrays = _arrays(rng, (4, 3, 32, 32))
    c_arrays["y_train"] = np.eye(10)[np.arange(4)]  # one-hot labels
    c_arrays["y_test"] = np.arange(3)[:, None]  # (n, 1) labels
    for k, a in c_arrays.items():
        np.save(cifar / f"{k}.npy", a)
    d = load_npz(tmp_path, "cifar10")
    assert d.x_train.shape == (4, 32, 32, 3) and d.x_test.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(d.y_train, np.arange(4))
    np.testing.assert_array_equal(d.y_test, np.arange(3))
    np.testing.assert_allclose(d.x_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)


def test_load_npz_missing_files_name_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar10\.npz.*x_train\.npy"):
        load_npz(tmp_path, "cifar10")
    arrays = _arrays(np.random.default_rng(0))
    del arrays["y_test"]
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(ValueError, match="y_test"):
        load_npz(tmp_path, "mnist")


# --------------------------------------------------------------------------- training


def test_tiny_training_decreases_the_loss(small):
    res = train(mlp, small, optax.sgd(0.2), steps=200, batch_size=32, seeds=2, progress=False)
    assert res.train_loss.shape == (2, 11) and res.steps.tolist() == list(range(0, 201, 20))
    assert np.all(res.train_loss[:, -1] < 0.7 * res.train_loss[:, 0])
    assert np.all(res.test_accuracy[:, -1] > 0.6)
    assert np.isnan(res.batch_loss[:, 0]).all() and np.isfinite(res.batch_loss[:, 1:]).all()
    assert jax.tree.leaves(res.params)[0].shape[0] == 2


def test_vmapped_seeds_equal_separately_run_seeds(small):
    kw = dict(steps=60, batch_size=16, eval_every=25, progress=False)
    both = train(mlp, small, optax.sgd(0.1, momentum=0.9), seeds=[3, 7], **kw)
    alone = train(mlp, small, optax.sgd(0.1, momentum=0.9), seeds=[7], **kw)
    assert both.steps.tolist() == [0, 25, 50, 60]  # the last chunk is shorter
    np.testing.assert_allclose(both.train_loss[1], alone.train_loss[0], rtol=2e-5)
    for a, b in zip(jax.tree.leaves(both.params), jax.tree.leaves(alone.params)):
        np.testing.assert_allclose(a[1], b[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(both.train_loss[0], both.train_loss[1])


def test_stop_below_ends_at_the_first_evaluation_every_seed_reaches(small):
    kw = dict(steps=200, batch_size=32, seeds=2, eval_every=20, progress=False)
    full = train(mlp, small, optax.sgd(0.2), stop_below=1e-9, **kw)  # never reached
    assert full.steps.tolist() == list(range(0, 201, 20))  # so every step ran
    target = float(np.max(full.train_loss[:, 5]))  # both seeds are at or below it by step 100
    first = int(np.argmax(np.all(full.train_loss <= target, axis=0)))
    stopped = train(mlp, small, optax.sgd(0.2), stop_below=target, **kw)
    assert 0 < first <= 5 and stopped.steps.tolist() == full.steps[: first + 1].tolist()
    np.testing.assert_allclose(stopped.train_loss, full.train_loss[:, : first + 1], rtol=1e-5)
    with pytest.raises(TypeError, match="stop_below"):
        train(mlp, small, optax.sgd(0.2), stop_below="0.5", **kw)


def test_transform_factory_gives_each_seed_its_own_noise(small):
    def tx(key):
        return optim.power_law_sgd(key, 0.1, alpha_g=1e-2, alpha_h=1.0)

    kw = dict(steps=40, batch_size=16, eval_every=20, progress=False)
    pair = train(mlp, small, tx, seeds=[0, 1], **kw)
    alone = train(mlp, small, tx, seeds=[1], **kw)
    plain = train(mlp, small, optax.sgd(0.1), seeds=[1], **kw)
    np.testing.assert_allclose(pair.train_loss[1], alone.train_loss[0], rtol=2e-5)
    assert not np.allclose(alone.train_loss[0, 1:], plain.train_loss[0, 1:], rtol=1e-4)


def test_a_plain_transform_gives_each_seed_its_own_noise_and_shared_keys_raise(small):
    """Seeds with equal params (a model that ignores its rngs) differ only by their noise."""

    def same_init(rngs):
        return mlp(nnx.Rngs(0))

    kw = dict(steps=20, batch_size=16, eval_every=20, progress=False)
    tx = optim.power_law_sgd(0, 0.1, alpha_g=1e-2, alpha_h=1.0)
    res = train(same_init, small, tx, seeds=[0, 1], **kw)
    for leaf in jax.tree.leaves(res.params):
        assert not np.allclose(leaf[0], leaf[1])
    pair = train(same_init, small, tx, seeds=[3, 1], **kw)  # the seed fixes the noise
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(pair.params)):
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)
    # A factory that ignores its key, on equal params: one noise stream for both seeds.
    with pytest.raises(ValueError, match="share the noise key"):
        train(same_init, small, lambda key: tx, seeds=[0, 1], **kw)


def _recorder():
    """A transform that stores the extra arguments it is given in its state."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return {"grad_variance": zeros, "grad_fluctuation": zeros}

    def update(updates, state, params=None, **extra):
        assert params is not None
        return updates, {k: extra.get(k, state[k]) for k in state}

    return optax.GradientTransformationExtraArgs(init, update)


@pytest.mark.parametrize("variance_from", ["samples", "microbatches"])
def test_step_passes_variance_and_fluctuation(small, variance_from):
    graphdef, params = split_model(mlp(nnx.Rngs(0)))
    apply = functional_apply(graphdef)
    if variance_from == "microbatches":  # an apply without a graphdef: microbatch variance
        apply = lambda p, x, apply=apply: apply(p, x)  # noqa: E731
    tx = _recorder()
    b, m = 32, 4
    step = make_train_step(
        apply, tx, b, microbatches=m, extra_args=("grad_variance", "grad_fluctuation")
    )
    key = jax.random.key(5)
    x, y = jnp.asarray(small.x_train), jnp.asarray(small.y_train)
    new, state, loss = jax.jit(step)(params, tx.init(params), key, x, y)

    idx = jax.random.randint(key, (b,), 0, x.shape[0])
    grad = jax.grad(batch_loss(apply))
    gs = [grad(params, x[idx[i * 8 : (i + 1) * 8]], y[idx[i * 8 : (i + 1) * 8]]) for i in range(m)]
    gs = jax.tree.map(lambda *a: np.stack(a).astype(np.float64), *gs)
    want_var = jax.tree.map(lambda g: (b // m) * g.var(0, ddof=1), gs)
    if variance_from == "samples":  # the unbiased per-sample variance of the whole batch
        one = jax.vmap(
            jax.grad(lambda p, xi, yi: batch_loss(apply)(p, xi[None], yi[None])), (None, 0, 0)
        )
        per = jax.tree.map(lambda g: np.asarray(g, np.float64), one(params, x[idx], y[idx]))
        want_var = jax.tree.map(lambda g: g.var(0, ddof=1), per)
    want_fluct = jax.tree.map(lambda g: g[:2].mean(0) - g[2:].mean(0), gs)
    want_params = jax.tree.map(lambda p, g: p + g.mean(0), params, gs)  # identity tx: u = g
    for got, want in (
        (state["grad_variance"], want_var),
        (state["grad_fluctuation"], want_fluct),
    ):
        for a, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-6)
    for a, w in zip(jax.tree.leaves(new), jax.tree.leaves(want_params)):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(loss), float(batch_loss(apply)(params, x[idx], y[idx])), 1e-5)


def test_training_with_the_fluctuation_and_variance_sources(small):
    kw = dict(steps=40, batch_size=32, microbatches=2, seeds=2, progress=False)
    fl = optim.from_fluctuation(4, 32)
    res = train(mlp, small, optax.chain(fl, optax.sgd(0.1)), extra_args=["grad_fluctuation"], **kw)
    var = optim.from_gradient_variance(0, 4, 32)
    res2 = train(mlp, small, optax.chain(var, optax.sgd(0.1)), extra_args=["grad_variance"], **kw)
    for r in (res, res2):
        assert np.isfinite(r.train_loss).all()
        assert np.all(r.train_loss[:, -1] < r.train_loss[:, 0])


def test_nnx_optimizer_path():
    data = teacher_student(128, 64, dim=8, n_classes=3, seed=0)
    model = mlp(nnx.Rngs(0))
    opt = nnx.Optimizer(
        model, optim.power_law_sgd(0, 0.2, alpha_g=1e-4, alpha_h=0.1), wrt=nnx.Param
    )
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    losses = [float(nnx_train_step(model, opt, x, y)) for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0]


def test_bad_input(small):
    with pytest.raises(ValueError, match="divisible"):
        train(mlp, small, optax.sgd(0.1), steps=2, batch_size=10, microbatches=3, progress=False)
    with pytest.raises(ValueError, match="microbatches >= 2"):
        train(mlp, small, optax.sgd(0.1), steps=2, batch_size=8, extra_args=["grad_fluctuation"])
    with pytest.raises(ValueError, match="extra_args"):
        train(mlp, small, optax.sgd(0.1), steps=2, batch_size=8, microbatches=2, extra_args=["x"])
    with pytest.raises(ValueError, match="even"):
        make_train_step(None, optax.sgd(0.1), 9, microbatches=3, extra_args=["grad_fluctuation"])
    with pytest.raises(TypeError, match="Dataset"):
        train(mlp, tuple(small), optax.sgd(0.1), steps=2, batch_size=8)
    with pytest.raises(ValueError, match="steps"):
        train(mlp, small, optax.sgd(0.1), steps=0, batch_size=8)
    with pytest.raises(ValueError, match="seeds"):
        train(mlp, small, optax.sgd(0.1), steps=1, batch_size=8, seeds=[])
    assert isinstance(small, Dataset)
