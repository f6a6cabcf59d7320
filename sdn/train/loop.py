"""Training K seeds at once: a pure train step, an evaluation, and a chunked driver.

A Flax NNX model is split once into its graph (static) and its parameters, a plain
pytree (`nnx.to_pure_dict`); the step is a pure function of the parameters, the
optimizer state and a key. `train` vmaps that step over seeds (each seed has its own
initialization, minibatches and optimizer key) and runs `lax.scan` over chunks of
steps, so K seeds cost one compiled program. Between chunks it evaluates and
updates a progress bar.

Minibatches are drawn **with replacement** (`b` indices uniform on `0..n−1`), so the
minibatch gradient has covariance `C(w)/b` exactly (docs/theory.md §1).

When the transform asks for them, the step passes to ``tx.update`` (as optax extra
arguments, beside ``params``):

- ``grad_variance``: an estimate of the per-sample per-coordinate variance `C_jj(w)`.
  For a network applied by `functional_apply` (every model `train` builds) it is the
  unbiased per-sample variance of the whole batch, `b/(b−1) · (1/b) Σ_i (g_ij − ḡ_j)²`,
  from the backprop signals (`sdn.train.gradstats`, about one more matrix product per
  layer). For any other ``apply`` it comes from `m` equal microbatches with gradients
  `G_1 … G_m`: `(b/m) · Var_j(G_j)` (unbiased over `j`), a noisier estimate (`m − 1`
  degrees of freedom per coordinate instead of `b − 1`).
- ``grad_fluctuation``: `g_A − g_B`, the means of the first and second halves of the
  `m` microbatches; with `m = 2`, `Cov((g_A − g_B)/2) = C(w)/b`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sdn import optim
from sdn._checks import check_int
from sdn.train.data import Dataset
from sdn.train.gradstats import NoiseScale, batch_gradient_statistics
from sdn.train.monitor import NoiseScaleMonitor

Params = Any
Apply = Callable[[Params, jax.Array], jax.Array]
ModelFn = Callable[[nnx.Rngs], nnx.Module]
TxLike = optax.GradientTransformation | Callable[[jax.Array], optax.GradientTransformation]

EXTRA_ARGS = ("grad_variance", "grad_fluctuation")


# ---------------------------------------------------------------------------------------
# Models as pure functions
# ---------------------------------------------------------------------------------------


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, Params]:
    """The model's static graph and its parameters as a plain nested dict of arrays.

    `nnx.merge(graphdef, params)(x)` rebuilds the model; `functional_apply(graphdef)`
    is that as a function. Only models whose whole state is ``nnx.Param`` are
    supported (no batch-norm statistics, no dropout RNG state).

    Example:
      >>> from flax import nnx
      >>> from sdn.train.models import MLP
      >>> graphdef, params = split_model(MLP(3, (4,), 2, rngs=nnx.Rngs(0)))
      >>> params["layers"][0]["kernel"].shape
      (3, 4)
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError(
            f"{type(model).__name__} has state other than nnx.Param "
            f"({sorted({type(v).__name__ for v in jax.tree.leaves(rest)})}); the training "
            "loop supports parameter-only models"
        )
    return graphdef, nnx.to_pure_dict(params)


def functional_apply(graphdef: nnx.GraphDef) -> Apply:
    """`apply(params, x) = nnx.merge(graphdef, params)(x)`, a pure function."""

    def apply(params: Params, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, params)(x)

    # `make_train_step` reads it to measure per-sample gradient statistics.
    apply.graphdef = graphdef
    return apply


def init_params(model_fn: ModelFn, keys: jax.Array) -> tuple[nnx.GraphDef, Params]:
    """Initialize one model per key: parameters with a leading axis of size `len(keys)`.

    Args:
      model_fn: ``rngs -> nnx.Module``, e.g. ``lambda rngs: MLP(64, (32,), 10, rngs=rngs)``.
      keys: typed PRNG keys of shape `(K,)`.

    Returns:
      ``(graphdef, params)`` with every params leaf of shape `(K, *leaf_shape)`.
    """
    graphdef, _ = split_model(nnx.eval_shape(lambda: model_fn(nnx.Rngs(0))))

    def one(key):
        return split_model(model_fn(nnx.Rngs(key)))[1]

    return graphdef, jax.vmap(one)(keys)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer `labels` (shape `(n,)`) under `logits` `(n, k)`."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def batch_loss(apply: Apply) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """`loss(params, x, y)`: mean cross-entropy of a batch."""

    def loss(params, x, y):
        return cross_entropy(apply(params, x), y)

    return loss


def sample_loss(apply: Apply) -> Callable[[Params, tuple], jax.Array]:
    """`ℓ_i(params) = loss(params, (x_i, y_i))` for one example, for the probes."""

    def loss(params, datum):
        x, y = datum
        return cross_entropy(apply(params, x[None]), y[None])

    return loss


# ---------------------------------------------------------------------------------------
# One step, evaluation
# ---------------------------------------------------------------------------------------


def _microbatch_gradients(grad_fn, params, xm, ym, extra_args):
    """Mean loss and gradient over `m` microbatches, and the requested statistics.

    A `lax.scan` over the microbatches keeps one gradient in memory at a time (a `vmap`
    would hold all `m`; at `m = 32` on an MLP that was 4× slower on the CPU). The
    per-coordinate variance is accumulated with Welford's update, which does not lose
    precision when the mean is large against the spread.

    Returns:
      ``(loss, grads, extras)``; ``extras["grad_variance"]`` is the unbiased variance
      over microbatches `Var_j(G_j)` and ``extras["grad_fluctuation"]`` is
      `g_A − g_B` (first half minus second half), each only when requested.
    """
    m = xm.shape[0]
    half = m // 2
    want_var = "grad_variance" in extra_args
    want_fluct = "grad_fluctuation" in extra_args
    f32 = jnp.float32

    def zeros():
        return jax.tree.map(lambda p: jnp.zeros(p.shape, f32), params)

    def body(carry, inputs):
        i, xi, yi = inputs
        loss_sum, mean, m2, fluct = carry
        loss, g = grad_fn(params, xi, yi)
        g = jax.tree.map(lambda a: a.astype(f32), g)
        delta = jax.tree.map(jnp.subtract, g, mean)
        count = (i + 1).astype(f32)
        new_mean = jax.tree.map(lambda mu, d: mu + d / count, mean, delta)
        if want_var:
            m2 = jax.tree.map(lambda s, d, gi, mu: s + d * (gi - mu), m2, delta, g, new_mean)
        if want_fluct:
            sign = jnp.where(i < half, f32(1), f32(-1))
            fluct = jax.tree.map(lambda f, gi: f + sign * gi, fluct, g)
        return (loss_sum + loss.astype(f32), new_mean, m2, fluct), None

    init = (
        jnp.zeros((), f32),
        zeros(),
        zeros() if want_var else None,
        zeros() if want_fluct else None,
    )
    (loss_sum, mean, m2, fluct), _ = jax.lax.scan(body, init, (jnp.arange(m), xm, ym))
    grads = jax.tree.map(lambda mu, p: mu.astype(p.dtype), mean, params)
    extras = {}
    if want_var:
        extras["grad_variance"] = jax.tree.map(lambda s: s / (m - 1), m2)
    if want_fluct:
        extras["grad_fluctuation"] = jax.tree.map(lambda f: f / half, fluct)
    return loss_sum / m, grads, extras


def make_train_step(
    apply: Apply,
    tx: optax.GradientTransformation,
    batch_size: int,
    *,
    microbatches: int = 1,
    extra_args: Sequence[str] = (),
    with_noise_scale: bool = False,
) -> Callable[[Params, Any, jax.Array, jax.Array, jax.Array], tuple]:
    """A pure SGD step on a minibatch drawn with replacement: `step(params, opt_state, key,
    x, y) -> (params, opt_state, minibatch_loss)`.

    `w ← w + u`, `(u, state) = tx.update(ĝ, state, w, **extras)` with `ĝ` the mean
    gradient of `b` examples drawn uniformly with replacement (docs/theory.md §1). With
    `m = microbatches > 1` the batch is split into `m` microbatches whose gradients give
    the requested `extra_args` (see the module docstring); the cost is one batch
    gradient. With ``grad_variance`` and an ``apply`` from `functional_apply`, the
    variance is the per-sample variance of the whole batch instead (any `m`; see the
    module docstring). With `with_noise_scale` (an ``apply`` from `functional_apply`
    needed) the step also returns the batch's `NoiseScale`, from the per-sample
    statistics that give its gradient. Not jitted: wrap it in ``jax.jit`` / ``jax.vmap``
    as needed.

    Args:
      apply: ``apply(params, x) -> logits``.
      tx: any optax transform; extra arguments are passed only if `extra_args` names them.
      batch_size: `b ≥ 1`, divisible by `microbatches`.
      microbatches: `m ≥ 1`; at least 2 for ``grad_fluctuation`` (and even) and for a
        microbatch ``grad_variance``.
      extra_args: names from ``("grad_variance", "grad_fluctuation")``.
      with_noise_scale: return `(params, opt_state, loss, noise_scale)`.
    """
    b = check_int("batch_size", batch_size)
    m = check_int("microbatches", microbatches)
    extra_args = tuple(extra_args)
    for name in extra_args:
        if name not in EXTRA_ARGS:
            raise ValueError(f"extra_args entries must be in {EXTRA_ARGS}, got {name!r}")
    if b % m:
        raise ValueError(f"batch_size={b} must be divisible by microbatches={m}")
    graphdef = getattr(apply, "graphdef", None)
    per_sample = "grad_variance" in extra_args and graphdef is not None
    if (per_sample or with_noise_scale) and b < 2:
        what = "grad_variance" if per_sample else "the noise scale"
        raise ValueError(f"{what} needs batch_size >= 2, got {b}")
    if with_noise_scale and graphdef is None:
        raise ValueError("with_noise_scale needs an apply made by functional_apply(graphdef)")
    needs_m = [a for a in extra_args if not (per_sample and a == "grad_variance")]
    if needs_m and m < 2:
        raise ValueError(f"extra_args={tuple(needs_m)} need microbatches >= 2, got {m}")
    if "grad_fluctuation" in extra_args and m % 2:
        raise ValueError(f"grad_fluctuation needs an even number of microbatches, got {m}")
    tx = optax.with_extra_args_support(tx)
    loss_fn = batch_loss(apply)
    grad_fn = jax.value_and_grad(loss_fn)

    def step(params, opt_state, key, x, y):
        idx = jax.random.randint(key, (b,), 0, x.shape[0])
        xb, yb = x[idx], y[idx]
        stats = None
        if per_sample or with_noise_scale:
            stats = batch_gradient_statistics(graphdef, params, xb, yb)
        if per_sample:
            loss, grads = stats.loss, stats.mean
            extras = {"grad_variance": jax.tree.map(lambda v: v * (b / (b - 1)), stats.variance)}
            if "grad_fluctuation" in extra_args:
                xm = xb.reshape(m, b // m, *xb.shape[1:])
                ym = yb.reshape(m, b // m)
                fluct = _microbatch_gradients(grad_fn, params, xm, ym, ("grad_fluctuation",))
                extras["grad_fluctuation"] = fluct[2]["grad_fluctuation"]
        elif m == 1:
            loss, grads = (stats.loss, stats.mean) if stats else grad_fn(params, xb, yb)
            extras = {}
        else:
            xm = xb.reshape(m, b // m, *xb.shape[1:])
            ym = yb.reshape(m, b // m)
            loss, grads, extras = _microbatch_gradients(grad_fn, params, xm, ym, extra_args)
            if "grad_variance" in extras:
                extras["grad_variance"] = jax.tree.map(
                    lambda v: (b // m) * v, extras["grad_variance"]
                )
        updates, opt_state = tx.update(grads, opt_state, params, **extras)
        out = (optax.apply_updates(params, updates), opt_state, loss)
        return (*out, stats.noise_scale) if with_noise_scale else out

    return step


def make_monitored_step(
    apply: Apply,
    tx: optax.GradientTransformation,
    batch_size: int,
    monitor: NoiseScaleMonitor,
    **options: Any,
) -> Callable:
    """`make_train_step`'s step that also feeds a `NoiseScaleMonitor`:
    `step(params, opt_state, key, x, y, monitor_state, t) -> (params, opt_state, loss,
    monitor_state)`.

    On steps `t` the monitor is due, the gradient comes from the batch's per-sample
    statistics and their noise scale is folded into `monitor_state`; on the others it is
    the plain step. Pass the same `t` to every vmapped replica (``in_axes=None``): the
    choice is then a branch, and the plain steps pay nothing for the monitor. `options`
    as in `make_train_step`.
    """
    plain = make_train_step(apply, tx, batch_size, **options)
    measured = make_train_step(apply, tx, batch_size, **options, with_noise_scale=True)

    def step(params, opt_state, key, x, y, monitor_state, t):
        def measure(p, s, ns):
            p, s, loss, scale = measured(p, s, key, x, y)
            return p, s, loss, monitor.update(ns, scale)

        def skip(p, s, ns):
            return (*plain(p, s, key, x, y), ns)

        return jax.lax.cond(monitor.due(t), measure, skip, params, opt_state, monitor_state)

    return step


def evaluate(
    apply: Apply, params: Params, x: jax.Array, y: jax.Array, *, batch_size: int = 4096
) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy of `params` on `(x, y)`, in batches of `batch_size`.

    Pure and jittable; memory is bounded by one batch of activations.

    Returns:
      ``(loss, accuracy)``, scalars.
    """

    def one(datum):
        xi, yi = datum
        logits = apply(params, xi[None])[0]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yi)
        return loss, (jnp.argmax(logits) == yi).astype(jnp.float32)

    losses, correct = jax.lax.map(one, (x, y), batch_size=min(batch_size, x.shape[0]))
    return losses.mean(), correct.mean()


# ---------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """Histories of K seeds, evaluated after every chunk of steps.

    Attributes:
      seeds: the K seeds.
      steps: `(E,)` the step count at each evaluation (0 is the initialization).
      batch_loss: `(K, E)` mean minibatch loss over the chunk before each evaluation
        (NaN at step 0).
      train_loss, train_accuracy, test_loss, test_accuracy: `(K, E)` on the full sets.
      params: the final parameters, leaves of shape `(K, …)`.
      graphdef: the model's graph; ``functional_apply(graphdef)`` applies `params`.
      seconds: wall time of the run (compilation included).
      noise_scale: with a monitor, a `NoiseScale` of `(K, E)` arrays: the monitor's
        reading (moving averages of `tr C` and `‖∇L‖²`, and `B_simple`) at each
        evaluation (NaN at step 0); else None.
    """

    seeds: tuple[int, ...]
    steps: np.ndarray
    batch_loss: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    params: Params
    graphdef: Any
    seconds: float
    noise_scale: NoiseScale | None = None

    @property
    def apply(self) -> Apply:
        return functional_apply(self.graphdef)

    def seed_params(self, k: int) -> Params:
        """The final parameters of the `k`-th seed (no leading axis)."""
        return jax.tree.map(lambda a: a[k], self.params)

    def rows(self) -> list[dict]:
        """The histories as tidy rows, one per seed and evaluation (for a CSV file)."""
        cols = {
            "batch_loss": self.batch_loss,
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
        }
        if self.noise_scale is not None:
            cols |= {
                "noise_trace": self.noise_scale.trace,
                "noise_grad_norm_sq": self.noise_scale.grad_norm_sq,
                "noise_scale_simple": self.noise_scale.simple,
            }
        return [
            dict(seed=seed, step=int(step), **{k: float(v[i, j]) for k, v in cols.items()})
            for i, seed in enumerate(self.seeds)
            for j, step in enumerate(self.steps)
        ]


def _seed_keys(seeds: Sequence[int]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-seed (init, data, optimizer) keys; each seed's keys depend on that seed only."""
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
    return split[:, 0], split[:, 1], split[:, 2]


# Long on purpose: one driver that builds one compiled program; its parts are the closures.
def train(
    model_fn: ModelFn,
    data: Dataset,
    tx: TxLike,
    *,
    steps: int,
    batch_size: int,
    seeds: int | Sequence[int] = 1,
    eval_every: int | None = None,
    microbatches: int = 1,
    extra_args: Sequence[str] = (),
    eval_batch_size: int = 4096,
    noise_scale: NoiseScaleMonitor | None = None,
    refit: Callable[[jax.Array, Params, Any], Any] | None = None,
    stop_below: float | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `K` seeds of `model_fn` with `tx` in one vmapped program (docs/theory.md §6.4).

    Seed `s` uses ``jax.random.key(s)``, split into its initialization, minibatch and
    optimizer keys, so a seed gives the same run whether trained alone or beside others.
    Steps run in `lax.scan` chunks of `eval_every`; after each chunk the train and test
    loss and accuracy are evaluated on the full sets and a ``tqdm`` bar advances.

    Args:
      model_fn: ``rngs -> nnx.Module`` (parameter-only state), e.g.
        ``lambda rngs: MLP(40, (512, 512), 10, rngs=rngs)``.
      data: a `Dataset` (inputs float32, integer labels).
      tx: an optax transform, or ``key -> transform``, called once per seed with the
        seed's optimizer key inside the vmapped ``init`` (e.g. ``lambda k:
        power_law_sgd(k, 0.05, alpha_g=…, alpha_h=…)``); the transforms must differ only
        in their key. A plain transform's noise states get the seed's key
        (`sdn.optim.reseed`). Either way each seed draws its own noise, and seeds that
        share a noise key raise ValueError.
      steps: number of SGD steps.
      batch_size: `b`, examples per step, drawn with replacement.
      seeds: an int K (seeds ``0..K−1``) or the seeds themselves.
      eval_every: steps per chunk between evaluations (default ``max(steps // 10, 1)``).
      microbatches: `m`, see `make_train_step`.
      extra_args: ``"grad_variance"`` and/or ``"grad_fluctuation"`` to pass to ``tx``.
      eval_batch_size: examples per evaluation batch.
      noise_scale: a `NoiseScaleMonitor`: every `every` steps the step's gradient comes
        from the batch's per-sample statistics, whose noise scale the monitor averages;
        its reading at each evaluation is `TrainResult.noise_scale`.
      refit: ``(key, params, opt_state) -> opt_state``, called for each seed (vmapped,
        compiled) before every chunk of `eval_every` steps, the first included, with a key
        of the seed's own for each chunk: e.g. measure the gradient noise at the current
        params and put a model of it into the optimizer with `sdn.optim.refit_noise`
        (noise that follows the state, refitted every `eval_every` steps).
      stop_below: stop after the first evaluation at which every seed's full training
        loss is at or below this value (a seed whose loss is NaN has not reached it), so
        the histories may end before `steps`; None (default) runs all `steps`.
      progress: show a progress bar.

    Returns:
      A `TrainResult`.

    Example:
      >>> import optax
      >>> from sdn.train import MLP, teacher_student, train
      >>> data = teacher_student(256, 128, dim=8, n_classes=3)
      >>> res = train(lambda r: MLP(8, (16,), 3, rngs=r), data, optax.sgd(0.1),
      ...             steps=50, batch_size=32, seeds=2, progress=False)
      >>> res.test_accuracy.shape, bool((res.train_loss[:, -1] < res.train_loss[:, 0]).all())
      ((2, 11), True)
    """
    t0 = time.perf_counter()
    steps = check_int("steps", steps)
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        seed_list = tuple(range(check_int("seeds", seeds)))
    else:
        seed_list = tuple(int(s) for s in seeds)
        if not seed_list:
            raise ValueError("seeds must be a positive int or a non-empty sequence of ints")
    every = max(steps // 10, 1) if eval_every is None else check_int("eval_every", eval_every)
    every = min(every, steps)
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be an sdn.train.Dataset, got {type(data).__name__}")
    if isinstance(tx, optax.GradientTransformation):
        tx_fn, shared_tx = None, tx
    elif callable(tx):
        tx_fn, shared_tx = tx, tx(jax.random.key(0))
    else:
        raise TypeError(f"tx must be an optax transform or key -> transform, got {tx!r}")

    if stop_below is not None and not (
        isinstance(stop_below, int | float) and not isinstance(stop_below, bool)
    ):
        raise TypeError(f"stop_below must be a number or None, got {stop_below!r}")
    k_init, k_data, k_opt = _seed_keys(seed_list)
    graphdef, params = init_params(model_fn, k_init)
    apply = functional_apply(graphdef)
    if tx_fn is None:
        # One transform for all seeds: each seed's noise transforms get its own key.
        opt_state = jax.vmap(lambda k, p: optim.reseed(k, shared_tx.init(p)))(k_opt, params)
    else:
        opt_state = jax.vmap(lambda k, p: tx_fn(k).init(p))(k_opt, params)
    if len(seed_list) > 1:
        optim.assert_independent_replicas(opt_state)

    if noise_scale is not None and not isinstance(noise_scale, NoiseScaleMonitor):
        raise TypeError(f"noise_scale must be an sdn.train.NoiseScaleMonitor, got {noise_scale!r}")
    options = dict(microbatches=microbatches, extra_args=extra_args)
    step = make_train_step(apply, shared_tx, batch_size, **options)
    if noise_scale is not None:
        monitored = make_monitored_step(apply, shared_tx, batch_size, noise_scale, **options)
    x_tr, y_tr = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_te, y_te = jnp.asarray(data.x_test), jnp.asarray(data.y_test)

    def chunk_one(carry, length, t0):
        def body(c, t):
            p, s, key, ns = c
            key, k = jax.random.split(key)
            if noise_scale is None:
                p, s, loss = step(p, s, k, x_tr, y_tr)
            else:
                p, s, loss, ns = monitored(p, s, k, x_tr, y_tr, ns, t)
            return (p, s, key, ns), loss

        carry, losses = jax.lax.scan(body, carry, t0 + jnp.arange(length))
        return carry, losses.mean()

    chunks = {}

    def run_chunk(carry, length, t0):
        if length not in chunks:
            one = jax.vmap(lambda c, t: chunk_one(c, length, t), in_axes=(0, None))
            chunks[length] = jax.jit(one, donate_argnums=0)
        return chunks[length](carry, jnp.int32(t0))

    def metrics_one(p):
        return (*evaluate(apply, p, x_tr, y_tr, batch_size=eval_batch_size),) + (
            *evaluate(apply, p, x_te, y_te, batch_size=eval_batch_size),
        )

    metrics = jax.jit(jax.vmap(metrics_one))

    history = [(np.full(len(seed_list), np.nan),) + tuple(map(np.asarray, metrics(params)))]
    done = [0]
    monitor_state = jax.vmap(lambda _: (noise_scale or NoiseScaleMonitor()).init())(k_data)
    readings = [jax.vmap(NoiseScaleMonitor.read)(monitor_state)]
    carry = (params, opt_state, k_data, monitor_state)
    lengths = [every] * (steps // every) + ([steps % every] if steps % every else [])
    from tqdm.auto import tqdm

    if refit is not None:
        if not callable(refit):
            raise TypeError(f"refit must be callable (key, params, opt_state) -> opt_state, "
                            f"got {refit!r}")  # fmt: skip
        refit_all = jax.jit(jax.vmap(refit))
        k_refit = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EF17))(k_opt)

    with tqdm(total=steps, disable=not progress, desc="train", unit="step") as bar:
        for i, length in enumerate(lengths):
            if refit is not None:
                p, s, kd, ns = carry
                keys = jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(k_refit)
                carry = (p, refit_all(keys, p, s), kd, ns)
            carry, mean_loss = run_chunk(carry, length, done[-1])
            history.append((np.asarray(mean_loss),) + tuple(map(np.asarray, metrics(carry[0]))))
            readings.append(jax.vmap(NoiseScaleMonitor.read)(carry[3]))
            done.append(done[-1] + length)
            bar.update(length)
            bar.set_postfix(test_acc=f"{float(np.mean(history[-1][4])):.3f}")
            if stop_below is not None and np.all(history[-1][1] <= stop_below):
                break
    cols = [np.stack(c, axis=1) for c in zip(*history)]
    return TrainResult(
        seeds=seed_list,
        steps=np.asarray(done),
        batch_loss=cols[0],
        train_loss=cols[1],
        train_accuracy=cols[2],
        test_loss=cols[3],
        test_accuracy=cols[4],
        params=carry[0],
        graphdef=graphdef,
        seconds=time.perf_counter() - t0,
        noise_scale=None
        if noise_scale is None
        else NoiseScale(*(np.stack([np.asarray(r[i]) for r in readings], 1) for i in range(3))),
    )


def __getattr__(name: str):
    # `nnx_train_step` moved to sdn.train.nnx_step; `sdn.train.loop.nnx_train_step` still works
    if name == "nnx_train_step":
        from sdn.train.nnx_step import nnx_train_step

        return nnx_train_step
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
