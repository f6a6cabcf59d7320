"""Probes of the gradient noise and the curvature of a trained model (docs/theory.md §1, §6.1).

Every probe takes a per-sample loss ``sample_loss(params, datum) -> scalar`` and the data
as a pytree whose leaves have a leading axis of size `n` (for a classifier, ``(x, y)``;
``sdn.train.sample_loss(apply)`` builds that loss), so it covers networks and the
finite-sum problems of `sdn.landscapes` alike. Parameters are any pytree.

- `per_sample_grads`, `gradient_moments`: `∇ℓ_i(w)` for all `i`, and their per-coordinate
  mean and population variance `C_jj(w) = Var_i ∂_j ℓ_i(w)`, in chunks of samples so the
  memory is bounded.
- `noise_along`: on a grid of `t`, the gradient-noise variance at `w* + t v`, both along
  `v` (`vᵀ C v = Var_i ∂_v ℓ_i`, one forward-mode derivative per sample) and per
  coordinate; `power_law_fit` fits the constant, linear and quadratic models of §6.1.
- `taylor_coefficients`: the second-order prediction of those fits from the per-sample
  first and second directional derivatives at `w*` (§1).
- `top_hessian_eigenvalue`: power iteration on Hessian-vector products (sharpness).
- `fit_power_law`, `fit_noise_along`, `fit_empirical` (and the NNX forms
  `fit_network_power_law`, `fit_network_empirical`): the measurement as an `sdn.noise`
  model with its standard errors, a `NoiseFit` — the per-coordinate power law, the power
  law along a direction, and the structured (low-rank empirical) covariance.

For Flax NNX networks, `gradient_statistics` (from `sdn.train.gradstats`) gives the
mean, per-coordinate variance, per-sample norms and `v·g_i` of a batch at about the
cost of one backward pass, and `network_noise_along` is `noise_along` built on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sdn import noise, stats
from sdn._checks import check_int
from sdn.train.gradstats import GradientStatistics as GradientStatistics
from sdn.train.gradstats import batch_gradient_statistics, cross_entropy_losses
from sdn.train.gradstats import gradient_statistics as gradient_statistics

Params = Any
SampleLoss = Callable[[Params, Any], jax.Array]


def _n_samples(data: Any) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("data must be a pytree of arrays with a leading sample axis")
    n = {np.shape(leaf)[0] if np.ndim(leaf) else -1 for leaf in leaves}
    if len(n) != 1 or -1 in n:
        raise ValueError(f"data leaves must share a leading sample axis, got sizes {sorted(n)}")
    return n.pop()


def _take(data: Any, start: int, stop: int) -> Any:
    return jax.tree.map(lambda a: a[start:stop], data)


def _gradient_chunk(chunk_size: int | None) -> int:
    """Samples per ``vmap(grad)`` chunk: `chunk_size`, or by default 1 on the CPU and 256
    on accelerators. On the CPU, XLA turns the per-sample outer products of dense layers
    into a batched matmul with a contraction of size 1, which ran 14× slower than one
    sample at a time (`benchmarks/optim.py`); GPUs and TPUs batch them well."""
    if chunk_size is None:
        return 1 if jax.default_backend() == "cpu" else 256
    return check_int("chunk_size", chunk_size)


def _chunked(data: Any, chunk_size: int) -> tuple[Any, Any, int]:
    """`data` as `(n // c, c, …)` full chunks and the remainder `(n % c, …)`."""
    n = _n_samples(data)
    c = min(check_int("chunk_size", chunk_size), n)
    k = n // c
    full = jax.tree.map(lambda a: a[: k * c].reshape(k, c, *a.shape[1:]), data)
    return full, _take(data, k * c, n), n % c


def _dot(a: Any, b: Any) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _axpy(t: jax.Array, v: Any, w: Any) -> Any:
    return jax.tree.map(lambda vi, wi: wi + (t * vi).astype(wi.dtype), v, w)


def tree_normalize(v: Any) -> Any:
    """`v / ‖v‖` for a pytree `v` (Euclidean norm over all leaves)."""
    norm = jnp.sqrt(_dot(v, v))
    return jax.tree.map(lambda a: a / norm, v)


def random_direction(key: jax.Array, params: Params) -> Params:
    """A uniformly random unit vector shaped like `params` (`‖v‖ = 1` over all leaves).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> v = random_direction(jax.random.key(0), {"a": jnp.zeros(3), "b": jnp.zeros(2)})
      >>> round(float(sum(jnp.sum(x**2) for x in jax.tree.leaves(v))), 5)
      1.0
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    v = [jax.random.normal(k, jnp.shape(p), jnp.result_type(p)) for k, p in zip(keys, leaves)]
    return tree_normalize(jax.tree.unflatten(treedef, v))


# ---------------------------------------------------------------------------------------
# Per-sample gradients and their moments
# ---------------------------------------------------------------------------------------


def per_sample_grads(
    sample_loss: SampleLoss, params: Params, data: Any, *, chunk_size: int | None = None
) -> Params:
    """`∇ℓ_i(params)` for every sample: the params' tree with leaves `(n, *leaf_shape)`.

    Computed with ``vmap(grad)`` over chunks of `chunk_size` samples (``lax.map``), so
    the working memory is one chunk of gradients; the result itself is `n × P`. For
    statistics of large models use `gradient_moments`, which never holds it. The
    default chunk is 1 sample on the CPU and 256 on accelerators (see
    `benchmarks/README.md`).

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda w, d: 0.5 * d["h"] * (w - d["c"]) ** 2
      >>> data = {"h": jnp.array([1.0, 2.0, 3.0]), "c": jnp.array([0.0, 1.0, 2.0])}
      >>> per_sample_grads(loss, jnp.array(1.0), data, chunk_size=2).tolist()
      [1.0, 0.0, -3.0]
    """
    n = _n_samples(data)
    c = min(_gradient_chunk(chunk_size), n)
    grad = jax.grad(sample_loss)
    return jax.lax.map(lambda d: grad(params, d), data, batch_size=c)


class GradientMoments(NamedTuple):
    """Per-coordinate mean `∇L(w)` and population variance `C_jj(w)` (divided by `n`) of
    the per-sample gradients; both have the params' tree structure."""

    mean: Params
    variance: Params


def _chunk_moments(grads: Params) -> tuple[jax.Array, Params, Params]:
    c = jax.tree.leaves(grads)[0].shape[0]
    mean = jax.tree.map(lambda g: g.mean(0), grads)
    m2 = jax.tree.map(lambda g, m: jnp.sum(jnp.square(g - m), 0), grads, mean)
    return jnp.asarray(c, jnp.float32), mean, m2


def _combine(a, b):
    """Chan et al.'s pairwise update of (count, mean, sum of squared deviations)."""
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    delta = jax.tree.map(lambda x, y: y - x, ma, mb)
    mean = jax.tree.map(lambda m, d: m + d * (nb / n), ma, delta)
    m2 = jax.tree.map(lambda x, y, d: x + y + jnp.square(d) * (na * nb / n), sa, sb, delta)
    return n, mean, m2


def gradient_moments(
    sample_loss: SampleLoss, params: Params, data: Any, *, chunk_size: int | None = None
) -> GradientMoments:
    """Mean and per-coordinate population variance of `∇ℓ_i(params)` over the `n` samples.

    `C_jj(w) = (1/n) Σ_i (∂_j ℓ_i(w) − ∂_j L(w))²` (docs/theory.md §1), accumulated over
    chunks of `chunk_size` per-sample gradients with the pairwise (Chan) update, so
    memory is `O(chunk_size × P)` and float32 cancellation is avoided. Jittable. The
    default chunk is 1 sample on the CPU and 256 on accelerators.

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda w, d: 0.5 * d["h"] * (w - d["c"]) ** 2
      >>> data = {"h": jnp.array([1.0, 2.0, 3.0]), "c": jnp.array([0.0, 1.0, 2.0])}
      >>> m = gradient_moments(loss, jnp.array(1.0), data, chunk_size=2)
      >>> round(float(m.mean), 4), round(float(m.variance), 4)  # of [1, 0, -3]
      (-0.6667, 2.8889)
    """
    full, rest, n_rest = _chunked(data, _gradient_chunk(chunk_size))
    grad = jax.vmap(jax.grad(sample_loss), (None, 0))

    def body(acc, chunk):
        return _combine(acc, _chunk_moments(grad(params, chunk))), None

    first = _chunk_moments(grad(params, jax.tree.map(lambda a: a[0], full)))
    acc, _ = jax.lax.scan(body, first, jax.tree.map(lambda a: a[1:], full))
    if n_rest:
        acc = _combine(acc, _chunk_moments(grad(params, rest)))
    n, mean, m2 = acc
    return GradientMoments(mean, jax.tree.map(lambda s: s / n, m2))


def directional_derivatives(
    sample_loss: SampleLoss,
    params: Params,
    data: Any,
    direction: Params,
    *,
    order: int = 1,
    chunk_size: int = 1024,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Per-sample directional derivatives `∂_v ℓ_i(w) = v · ∇ℓ_i(w)`, shape `(n,)`.

    Forward mode (``jvp``), about the cost of one forward pass per sample. With
    ``order=2`` also returns `∂²_v ℓ_i(w) = vᵀ ∇²ℓ_i(w) v` (nested ``jvp``).

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda w, d: 0.5 * d["h"] * (w - d["c"]) ** 2
      >>> data = {"h": jnp.array([1.0, 2.0]), "c": jnp.array([0.0, 1.0])}
      >>> d1, d2 = directional_derivatives(loss, jnp.array(1.0), data, jnp.array(1.0), order=2)
      >>> d1.tolist(), d2.tolist()
      ([1.0, 0.0], [1.0, 2.0])
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    c = min(check_int("chunk_size", chunk_size), _n_samples(data))

    def first(p, d):
        return jax.jvp(lambda q: sample_loss(q, d), (p,), (direction,))[1]

    def one(d):
        if order == 1:
            return first(params, d)
        return jax.jvp(lambda q: first(q, d), (params,), (direction,))

    return jax.lax.map(one, data, batch_size=c)


# ---------------------------------------------------------------------------------------
# Gradient noise along a line, and its fits (docs/theory.md §6.1)
# ---------------------------------------------------------------------------------------


class NoiseProfile(NamedTuple):
    """Gradient-noise variance at `w* + t v` on a grid of `t` (docs/theory.md §6.1).

    Attributes:
      t: `(T,)` the grid.
      directional: `(T,)` `vᵀ C(w) v = Var_i(v · ∇ℓ_i(w))`, the noise along `v`.
      trace: `(T,)` `tr C(w) = Σ_j C_jj(w)`, or NaN when not measured.
      per_coordinate: the params' tree with leaves `(T, *leaf_shape)` holding `C_jj(w)`,
        or None when not requested.
      loss: `(T,)` the mean loss `L(w)`.
    """

    t: np.ndarray
    directional: np.ndarray
    trace: np.ndarray
    per_coordinate: Params | None
    loss: np.ndarray


def noise_along(
    sample_loss: SampleLoss,
    params: Params,
    data: Any,
    direction: Params,
    ts: Sequence[float] | np.ndarray,
    *,
    per_coordinate: bool = False,
    trace: bool = True,
    chunk_size: int | None = None,
) -> NoiseProfile:
    """Measure the per-sample gradient variance at `w* + t v` for each `t` in `ts`.

    Near a minimum `∇ℓ_i(w* + x) ≈ g_i + H_i x` gives, along `x = t v` (docs/theory.md §1),

        vᵀ C(w* + t v) v = σ_g + 2 σ_gH t + σ_H t²,
        σ_g = Var_i(v·g_i),  σ_gH = Cov_i(v·g_i, vᵀH_i v),  σ_H = Var_i(vᵀH_i v),

    and each `C_jj` is likewise quadratic in `t`. The directional variance costs one
    forward-mode pass per sample; `trace` and `per_coordinate` need the per-sample
    gradients (`gradient_moments`, chunked). All variances are population variances.

    Args:
      sample_loss: ``(params, datum) -> scalar``.
      params: `w*`.
      data: pytree with leading sample axis.
      direction: `v`, shaped like `params` (not normalized here).
      ts: the grid of `t`.
      per_coordinate: also return `C_jj` at each `t` (memory `T × P`).
      trace: measure `tr C` (set False to skip the per-sample gradients).
      chunk_size: samples per chunk (default: 256 for the forward passes; for the
        per-sample gradients, 1 on the CPU and 256 on accelerators).

    Returns:
      A `NoiseProfile` of numpy arrays.
    """
    ts = np.asarray(ts, dtype=np.float32)
    if ts.ndim != 1 or ts.size < 1 or not np.all(np.isfinite(ts)):
        raise ValueError(f"ts must be a non-empty 1-D grid of finite numbers, got {ts!r}")
    need_grads = per_coordinate or trace
    chunk = min(
        256 if chunk_size is None else check_int("chunk_size", chunk_size), _n_samples(data)
    )

    @jax.jit
    def at(t):
        w = _axpy(t, direction, params)
        d1 = directional_derivatives(sample_loss, w, data, direction, chunk_size=chunk)
        losses = jax.lax.map(lambda d: sample_loss(w, d), data, batch_size=chunk)
        out = {"directional": jnp.var(d1), "loss": losses.mean()}
        if need_grads:
            var = gradient_moments(sample_loss, w, data, chunk_size=chunk_size).variance
            out["trace"] = sum(jnp.sum(v) for v in jax.tree.leaves(var))
            if per_coordinate:
                out["per_coordinate"] = var
        return out

    return _profile(ts, [at(jnp.float32(t)) for t in ts])


def _profile(ts: np.ndarray, rows: list[dict]) -> NoiseProfile:
    """A `NoiseProfile` from one dict of measurements per `t`."""
    stack = {k: jax.tree.map(lambda *a: np.stack(a), *[r[k] for r in rows]) for k in rows[0]}
    return NoiseProfile(
        t=ts.astype(np.float64),
        directional=np.asarray(stack["directional"], np.float64),
        trace=np.asarray(stack.get("trace", np.full(ts.shape, np.nan)), np.float64),
        per_coordinate=stack.get("per_coordinate"),
        loss=np.asarray(stack["loss"], np.float64),
    )


class PowerLawFit(NamedTuple):
    """The §6.1 fits of a variance profile `y(t)` and the power-law coefficients.

    Attributes:
      fits: ``{"constant", "linear", "quadratic"}`` → `sdn.stats.PolynomialFit`.
      sigma_g, sigma_gh, sigma_h: from the quadratic `σ_g + 2σ_gH t + σ_H t²`.
      stderr: standard errors of `(σ_g, σ_gH, σ_H)`.
    """

    fits: dict
    sigma_g: float
    sigma_gh: float
    sigma_h: float
    stderr: tuple[float, float, float]

    @property
    def r_squared(self) -> dict[str, float]:
        return {k: float(f.r_squared) for k, f in self.fits.items()}


def power_law_fit(t: np.ndarray, y: np.ndarray) -> PowerLawFit:
    """Constant, linear and quadratic least-squares fits of `y(t)` (docs/theory.md §6.1).

    Uses `sdn.stats.fit_constant_linear_quadratic`; the quadratic's coefficients
    `(c₀, c₁, c₂)` give `σ_g = c₀`, `σ_gH = c₁/2`, `σ_H = c₂`.

    Example:
      >>> import numpy as np
      >>> t = np.linspace(-1, 1, 9)
      >>> fit = power_law_fit(t, 0.5 + 0.2 * t + 3.0 * t**2)
      >>> round(fit.sigma_g, 6), round(fit.sigma_gh, 6), round(fit.sigma_h, 6)
      (0.5, 0.1, 3.0)
    """
    fits = stats.fit_constant_linear_quadratic(np.asarray(t, float), np.asarray(y, float))
    q = fits["quadratic"]
    return PowerLawFit(
        fits,
        float(q.coef[0]),
        float(q.coef[1] / 2),
        float(q.coef[2]),
        (float(q.stderr[0]), float(q.stderr[1] / 2), float(q.stderr[2])),
    )


class TaylorCoefficients(NamedTuple):
    """Second-order prediction of `vᵀ C(w* + t v) v` from derivatives at `w*` (§1)."""

    sigma_g: float
    sigma_gh: float
    sigma_h: float


def taylor_coefficients(
    sample_loss: SampleLoss, params: Params, data: Any, direction: Params, *, chunk_size=1024
) -> TaylorCoefficients:
    """`σ_g = Var(a_i)`, `σ_gH = Cov(a_i, b_i)`, `σ_H = Var(b_i)` with `a_i = ∂_v ℓ_i(w*)`,
    `b_i = ∂²_v ℓ_i(w*)` (population moments): the quadratic that the second-order
    expansion `∂_v ℓ_i(w* + t v) ≈ a_i + t b_i` predicts (docs/theory.md §1).

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda w, d: 0.5 * d["h"] * (w - d["c"]) ** 2
      >>> data = {"h": jnp.array([1.0, 3.0]), "c": jnp.array([0.0, 0.0])}
      >>> taylor_coefficients(loss, jnp.array(0.0), data, jnp.array(1.0)).sigma_h
      1.0
    """
    a, b = directional_derivatives(
        sample_loss, params, data, direction, order=2, chunk_size=chunk_size
    )
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ca, cb = a - a.mean(), b - b.mean()
    return TaylorCoefficients(float(np.mean(ca**2)), float(np.mean(ca * cb)), float(np.mean(cb**2)))


# ---------------------------------------------------------------------------------------
# Sharpness
# ---------------------------------------------------------------------------------------


def hessian_vector_product(loss_fn: Callable[[Params], jax.Array], params: Params, v: Params):
    """`∇²L(w) v` by forward-over-reverse differentiation (``jvp`` of ``grad``)."""
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


class Eigenpair(NamedTuple):
    """`value`: the Rayleigh quotient `vᵀHv`; `vector`: unit `v`; `residual`: `‖Hv − λv‖`."""

    value: jax.Array
    vector: Params
    residual: jax.Array


def top_hessian_eigenvalue(
    loss_fn: Callable[[Params], jax.Array],
    params: Params,
    key: jax.Array,
    *,
    num_iters: int = 100,
) -> Eigenpair:
    """The Hessian eigenvalue of largest magnitude, by power iteration on `Hv` (sharpness).

    `v_{k+1} = H v_k / ‖H v_k‖` from a random unit `v_0`, `num_iters` times (a fixed
    count, so the function is jittable and vmappable over seeds); returns the Rayleigh
    quotient `λ = vᵀHv` and the residual `‖Hv − λv‖`, which is small when the iteration
    has converged. Near a minimum the largest-magnitude eigenvalue is the top one
    (negative curvature is small there); a large residual means the top two eigenvalues
    are close or of opposite sign and equal size — run more iterations.

    Args:
      loss_fn: ``params -> scalar`` (e.g. the full-batch training loss).
      params: the point `w`.
      key: PRNG key of the start vector.
      num_iters: power iterations (each one Hessian-vector product).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> loss = lambda w: 0.5 * (3.0 * w[0] ** 2 + 1.0 * w[1] ** 2)
      >>> eig = top_hessian_eigenvalue(loss, jnp.zeros(2), jax.random.key(0), num_iters=50)
      >>> round(float(eig.value), 4)
      3.0
    """
    num_iters = check_int("num_iters", num_iters)

    def hvp(v):
        return hessian_vector_product(loss_fn, params, v)

    def body(_, v):
        return tree_normalize(hvp(v))

    v = jax.lax.fori_loop(0, num_iters, body, random_direction(key, params))
    hv = hvp(v)
    value = _dot(v, hv)
    r = jax.tree.map(lambda a, b: a - value * b, hv, v)
    return Eigenpair(value, v, jnp.sqrt(_dot(r, r)))


# ---------------------------------------------------------------------------------------
# Gradient noise of a network along a line (docs/theory.md §6.1)
# ---------------------------------------------------------------------------------------


def _split_network(model: nnx.Module, like_params: Any):
    """(graphdef, params as a pure dict, other state, `like_params` as a pure dict)."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if isinstance(like_params, nnx.State):
        like_params = nnx.to_pure_dict(like_params)
    return graphdef, nnx.to_pure_dict(params), rest, like_params


def network_noise_along(
    model: nnx.Module,
    x: jax.Array,
    y: jax.Array,
    direction: Params,
    ts: Sequence[float] | np.ndarray,
    *,
    loss: Callable | None = None,
    per_coordinate: bool = False,
) -> NoiseProfile:
    """`noise_along` for a Flax NNX network, from `gradient_statistics` at each `t`.

    At `w* + t v` one backward pass (plus one matrix product per layer) gives
    `vᵀ C v = Var_i(v·g_i)`, `tr C = Σ_j C_jj` and, if asked, every `C_jj`: no
    per-sample forward-mode pass and no per-sample gradient of a dense or
    convolutional layer (docs/theory.md §6.1).

    Args:
      model: the network at `w*` (its ``nnx.Param`` state).
      x, y: the samples (all of them: the variances are over these `n`).
      direction: `v`, an ``nnx.State`` like ``nnx.state(model, nnx.Param)`` or its pure
        dict (not normalized here).
      ts: the grid of `t`.
      loss: ``loss(outputs, y) -> (n,)``; default: cross-entropy of integer labels.
      per_coordinate: also return `C_jj` at each `t` (a pure dict, leaves `(T, …)`).

    Returns:
      A `NoiseProfile` of numpy arrays.
    """
    ts = np.asarray(ts, dtype=np.float32)
    if ts.ndim != 1 or ts.size < 1 or not np.all(np.isfinite(ts)):
        raise ValueError(f"ts must be a non-empty 1-D grid of finite numbers, got {ts!r}")
    graphdef, pure, rest, v = _split_network(model, direction)
    x, y = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def at(t):
        s = batch_gradient_statistics(
            graphdef, _axpy(t, v, pure), x, y, rest=rest, loss=loss, direction=v
        )
        out = {
            "directional": s.directional_variance,
            "trace": sum(jnp.sum(a) for a in jax.tree.leaves(s.variance)),
            "loss": s.loss,
        }
        if per_coordinate:
            out["per_coordinate"] = s.variance
        return out

    return _profile(ts, [at(jnp.float32(t)) for t in ts])


# ---------------------------------------------------------------------------------------
# Fitted noise models (docs/theory.md §1, §5, §6.1)
# ---------------------------------------------------------------------------------------


class NoiseFit(NamedTuple):
    """A noise model fitted to measured gradient noise, with its uncertainty.

    The power-law fits (`fit_power_law`, `fit_network_power_law`, `fit_noise_along`)
    model `C_jj(w* + x) = σ_g,j + 2 σ_gH,j x_j + σ_H,j x_j²` (docs/theory.md §1); the
    empirical fits (`fit_empirical`, `fit_network_empirical`) the whole covariance
    `C(w*)` at one point. Either is the per-sample gradient covariance, not yet divided
    by a batch size.

    Attributes:
      model: the fitted ``sdn.noise`` model. Power law: ``sdn.noise.power_law``
        (estimates clipped to a valid model: `σ_g, σ_H ≥ 0`, `σ_gH² ≤ σ_g σ_H`), centred
        at `w*`; for parameters with more than one leaf it acts on the flat vector
        ``jax.flatten_util.ravel_pytree(w)[0]``. Empirical: ``sdn.noise.empirical``,
        on the params' own pytree.
      sigma_g, sigma_gh, sigma_h: the raw least-squares estimates, shaped like the
        parameters (scalars for a fit along a direction). Empirical: `sigma_g` is the
        estimated diagonal `C_jj(w*)`, `sigma_gh` and `sigma_h` are None.
      stderr: standard errors of `(σ_g, σ_gH, σ_H)`, shaped alike (None where the
        estimate is None).
      center: `w*`.
      directions: empirical fits only, the directions `v` (pytrees like the params)
        along which `directional` was measured; else None.
      directional: `(K,)` the fitted model's `vᵀ C(w*) v` along each direction.
      directional_stderr: `(K,)` their standard errors.
    """

    model: Any
    sigma_g: Any
    sigma_gh: Any
    sigma_h: Any
    stderr: tuple[Any, Any, Any]
    center: Any
    directions: list | None = None
    directional: np.ndarray | None = None
    directional_stderr: np.ndarray | None = None


def _valid_power_law(center, sg, sgh, sh):
    sg, sh = np.maximum(sg, 0.0), np.maximum(sh, 0.0)
    bound = np.sqrt(sg * sh)
    return noise.power_law(
        jnp.asarray(sg, jnp.float32),
        jnp.asarray(sh, jnp.float32),
        center=jnp.asarray(center, jnp.float32),
        sigma_gh=jnp.asarray(np.clip(sgh, -bound, bound), jnp.float32),
    )


def _flat(tree: Any) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])


def _fit_per_coordinate(variance_of, params, displacement, ts, n, batch_size, groups, key):
    """Least-squares fit of `C_jj` measured on `groups` batches at each `w* + t d`."""
    ts = np.asarray(ts, np.float64)
    if ts.ndim != 1 or ts.size < 3 or not np.all(np.isfinite(ts)):
        raise ValueError(f"ts must be a 1-D grid of at least 3 finite numbers, got {ts!r}")
    groups = check_int("groups", groups)
    if groups < 2:
        raise ValueError(f"groups must be >= 2 (their spread is the error), got {groups}")
    batch_size = n if batch_size is None else check_int("batch_size", batch_size)
    m = batch_size // groups
    if m < 2:
        raise ValueError(f"batch_size={batch_size} must give groups={groups} at least 2 each")
    d = _flat(displacement)
    if d.shape != _flat(params).shape:
        raise ValueError("displacement must have the structure and shapes of params")
    if np.any(d == 0):
        raise ValueError("displacement must be non-zero in every coordinate")
    means, errs = [], []
    for t, k in zip(ts, jax.random.split(key, ts.size)):
        idx = jax.random.randint(k, (groups, m), 0, n)
        w = _axpy(jnp.float32(t), displacement, params)
        v = np.stack([_flat(variance_of(w, idx[g])) for g in range(groups)]) * (m / (m - 1))
        means.append(v.mean(0))
        errs.append(v.std(0, ddof=1) / np.sqrt(groups))
    c, se = np.stack(means), np.stack(errs)  # (T, P)
    design = np.stack([np.ones_like(ts), 2 * ts, ts**2], 1)  # in t; x_j = t d_j
    a = np.linalg.pinv(design)  # (3, T): β = A c, Var β_a = Σ_k A_ak² se_k²
    beta, beta_se = a @ c, np.sqrt(np.square(a) @ np.square(se))
    scale = np.stack([np.ones_like(d), d, d**2])
    est, est_se = beta / scale, beta_se / np.abs(scale)
    unravel = jax.flatten_util.ravel_pytree(params)[1]
    leaves = jax.tree.leaves(params)

    def tree(a):
        if len(leaves) == 1 and not isinstance(params, dict):
            return np.reshape(a, np.shape(leaves[0]))
        return jax.tree.map(np.asarray, unravel(jnp.asarray(a, jnp.float32)))

    center = _flat(params)
    if len(leaves) == 1 and not isinstance(params, dict):
        center = np.reshape(center, np.shape(leaves[0]))
    model = _valid_power_law(center, *(np.reshape(e, np.shape(center)) for e in est))
    return NoiseFit(
        model,
        tree(est[0]),
        tree(est[1]),
        tree(est[2]),
        (tree(est_se[0]), tree(est_se[1]), tree(est_se[2])),
        params,
    )


def fit_power_law(
    sample_loss: SampleLoss,
    params: Params,
    data: Any,
    displacement: Params,
    *,
    key: jax.Array,
    ts: Sequence[float] | np.ndarray = (-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0),
    batch_size: int | None = None,
    groups: int = 16,
    chunk_size: int | None = None,
) -> NoiseFit:
    """Fit the per-coordinate power law `C_jj(w) ≈ σ_g,j + 2σ_gH,j x_j + σ_H,j x_j²`.

    At each displaced point `w* + t d` (`t` in `ts`, `x = t d`), `groups` independent
    batches of `batch_size // groups` samples (drawn with replacement) give unbiased
    estimates of the per-sample variances `C_jj` (`gradient_moments`); their mean is
    fitted by least squares per coordinate, and their spread — the Monte Carlo error of
    the measurement — is propagated through the fit into the standard errors. The
    diagonal model assumes `C_jj` depends on `x_j` alone; for a network, whose
    per-sample Hessians couple coordinates, the fitted `σ_H,j` also carries the other
    coordinates' share along `d` (docs/theory.md §1).

    Calibrating docs/theory.md §5's noise from the fit: fitted at the large-batch
    minimum, the noise that gives batch-`b_l` SGD the noise of batch `b_s` has
    `α = σ (1/b_s − 1/b_l)` per coordinate (`α_g = σ_g r`, `α_H = σ_H r`,
    `r = 1/b_s − 1/b_l`), i.e. ``sdn.optim.from_moments(key, b_s, b_l,
    sigma_g=fit.sigma_g, sigma_h=fit.sigma_h)`` with the estimates
    clipped at zero, anchored at the minimum.

    Args:
      sample_loss: ``(params, datum) -> scalar``.
      params: `w*`, any pytree.
      data: pytree with leading sample axis `n`.
      displacement: `d`, shaped like `params`, non-zero in every coordinate.
      key: PRNG key of the batches.
      ts: at least 3 points `t`.
      batch_size: samples per point (default `n`), split into `groups`.
      groups: `≥ 2` batches per point; their spread gives the errors.
      chunk_size: as in `gradient_moments`.

    Returns:
      A `NoiseFit`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sdn import landscapes
      >>> prob = landscapes.finite_sum_quadratic(jax.random.key(0), n=400, dim=2)
      >>> fit = fit_power_law(prob.sample_loss, prob.minimum, prob.data, jnp.ones(2),
      ...                     key=jax.random.key(1), groups=4)
      >>> fit.sigma_h.shape, fit.model.variance(prob.minimum).shape
      ((2,), (2,))
    """
    n = _n_samples(data)

    @jax.jit
    def variance_of(w, idx):
        batch = jax.tree.map(lambda a: a[idx], data)
        return gradient_moments(sample_loss, w, batch, chunk_size=chunk_size).variance

    return _fit_per_coordinate(variance_of, params, displacement, ts, n, batch_size, groups, key)


def fit_network_power_law(
    model: nnx.Module,
    x: jax.Array,
    y: jax.Array,
    displacement: Params,
    *,
    key: jax.Array,
    loss: Callable | None = None,
    ts: Sequence[float] | np.ndarray = (-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0),
    batch_size: int | None = None,
    groups: int = 16,
) -> NoiseFit:
    """`fit_power_law` for a Flax NNX network, its variances from `gradient_statistics`.

    The model's ``nnx.Param`` state is `w*`; `displacement` is an ``nnx.State`` like it
    or its pure dict, and the fit's trees are pure dicts. See `fit_power_law` for the
    measurement, the errors and how to calibrate docs/theory.md §5's noise from it.
    """
    graphdef, pure, rest, d = _split_network(model, displacement)
    x, y = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def variance_of(w, idx):
        return batch_gradient_statistics(graphdef, w, x[idx], y[idx], rest=rest, loss=loss).variance

    return _fit_per_coordinate(variance_of, pure, d, ts, x.shape[0], batch_size, groups, key)


def fit_noise_along(profile: NoiseProfile) -> NoiseFit:
    """The power law along a direction, `vᵀC(w* + t v)v ≈ σ_g + 2σ_gH t + σ_H t²`.

    Fitted to a `noise_along` / `network_noise_along` profile by least squares
    (`power_law_fit`); the standard errors are those of the regression (the profile is
    exact over its samples, so they measure how far the profile is from a quadratic).
    The model acts on the scalar coordinate `t` along `v`, centred at 0.

    Example:
      >>> import numpy as np
      >>> t = np.linspace(-1, 1, 9)
      >>> prof = NoiseProfile(t, 0.5 + 3.0 * t**2, t * np.nan, None, t * 0)
      >>> fit = fit_noise_along(prof)
      >>> round(fit.sigma_h, 6), float(fit.model.variance(jnp.float32(1.0)))
      (3.0, 3.5)
    """
    fit = power_law_fit(profile.t, profile.directional)
    return NoiseFit(
        _valid_power_law(0.0, fit.sigma_g, fit.sigma_gh, fit.sigma_h),
        fit.sigma_g,
        fit.sigma_gh,
        fit.sigma_h,
        fit.stderr,
        0.0,
    )


def _variance_and_stderr(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased sample variance over axis 0 and its standard error.

    `Var s² = (μ₄ − σ⁴ (m − 3)/(m − 1)) / m` for `m` independent samples, with the
    sample fourth central moment for `μ₄` and `s²` for `σ²`.
    """
    m = a.shape[0]
    c = a - a.mean(axis=0)
    s2 = np.sum(c**2, axis=0) / (m - 1)
    mu4 = np.mean(c**4, axis=0)
    return s2, np.sqrt(np.maximum(mu4 - s2**2 * (m - 3) / (m - 1), 0.0) / m)


def _empirical_fit(grads: Params, params: Params, directions, n_directions, key) -> NoiseFit:
    """The `NoiseFit` of `noise.empirical(grads)`: diagonal and `vᵀCv` with their errors."""
    if directions is None:
        n_directions = check_int("n_directions", n_directions, minimum=0)
        keys = jax.random.split(key, n_directions) if n_directions else []
        directions = [random_direction(k, params) for k in keys]
    else:
        directions = list(directions)
        struct = jax.tree.structure(params)
        for v in directions:
            if jax.tree.structure(v) != struct or any(
                np.shape(a) != np.shape(b)
                for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(params))
            ):
                raise ValueError("every direction must have the structure and shapes of params")
    leaves = [np.asarray(g, np.float64) for g in jax.tree.leaves(grads)]
    m = leaves[0].shape[0]
    flat = np.concatenate([g.reshape(m, -1) for g in leaves], axis=1)  # (m, P)
    diag, diag_se = _variance_and_stderr(flat)
    if directions:
        proj = flat @ np.stack([_flat(v) for v in directions], axis=1)  # (m, K) of v·g_i
        directional, directional_se = _variance_and_stderr(proj)
    else:
        directional = directional_se = np.zeros(0)
    unravel = jax.flatten_util.ravel_pytree(params)[1]

    def tree(a):
        return jax.tree.map(np.asarray, unravel(jnp.asarray(a, jnp.float32)))

    return NoiseFit(
        noise.empirical(grads, center=params),
        tree(diag),
        None,
        None,
        (tree(diag_se), None, None),
        params,
        directions,
        directional,
        directional_se,
    )


def fit_empirical(
    sample_loss: SampleLoss,
    params: Params,
    data: Any,
    *,
    key: jax.Array,
    batch_size: int = 256,
    directions: Sequence[Params] | None = None,
    n_directions: int = 8,
    chunk_size: int | None = None,
) -> NoiseFit:
    """Fit the structured (low-rank empirical) noise model `C(w*) ≈ S` at one point.

    `batch_size` samples are drawn with replacement; their per-sample gradients
    `∇ℓ_i(w*)` (`per_sample_grads`) are the factors of ``sdn.noise.empirical``, whose
    covariance `S` is their unbiased sample covariance: an estimate of the per-sample
    covariance `C(w*)` with its full (non-diagonal) structure, of rank below
    `batch_size` (docs/theory.md §1, §5). The fit holds `batch_size × P` numbers; the
    model never forms a `P × P` matrix.

    Uncertainty: the estimates of the diagonal `C_jj` and of `vᵀCv` along each
    direction `v` are sample variances of `m` independent values (`∂_j ℓ_i` and
    `v·∇ℓ_i`), with standard errors from the sample-variance formula
    `Var s² = (μ₄ − σ⁴ (m − 3)/(m − 1))/m` (fourth moments estimated from the same
    samples). `fit.directional` equals `vᵀ fit.model.covariance(w*) v` exactly. These
    errors hold when the `m` samples show the tails of the per-sample gradients (on a
    finite sum of `sdn.landscapes`, 40 fits of 128 samples gave mean `Z²` = 1.36 against
    1 ± 0.22). At a trained
    network's minimum a few samples can carry most of a coordinate's variance, and a
    batch that misses them reports too small a `C_jj` with too small an error: on a
    digits MLP at training loss 0.011 (`n` = 1437), `vᵀCv` along 6 random directions
    was within 2.5 SE of the exact value at `m` = 256 and 1.3 SE at `m` = 1024, but
    30% (`m` = 256) and 13% (`m` = 1024) of the 9 098 diagonal entries were more than
    3 SE off. For the exact diagonal over all samples use `gradient_statistics`.

    Simulating and injecting it: ``sdn.sgd_sde(grad, fit.model, η, b)`` simulates SGD
    with this noise (`C/b`; for params with several leaves use ``fit.model.ravel()`` on
    the flat vector, as `sdn.simulate` takes array states); ``fit.model.scaled(1/b_s −
    1/b_l)`` is the noise that gives batch-`b_l` SGD the noise of batch `b_s` in
    ``sdn.optim.add_state_dependent_noise`` (docs/theory.md §5; it depends on the state
    only through `α_H`, so it needs no anchor).

    Args:
      sample_loss: ``(params, datum) -> scalar``.
      params: `w*`, any pytree.
      data: pytree with leading sample axis `n`.
      key: PRNG key of the batch and of the random directions.
      batch_size: `m ≥ 2` samples (with replacement), the model's factors.
      directions: directions `v` (pytrees like `params`, not normalized) to report
        `vᵀCv` along; default `n_directions` random unit vectors.
      n_directions: the number of random directions when `directions` is None.
      chunk_size: as in `per_sample_grads`.

    Returns:
      A `NoiseFit` whose ``model`` is an ``sdn.noise.Empirical``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sdn import landscapes
      >>> prob = landscapes.finite_sum_quadratic(jax.random.key(0), n=400, dim=3)
      >>> fit = fit_empirical(prob.sample_loss, prob.minimum, prob.data,
      ...                     key=jax.random.key(1), batch_size=64, n_directions=2)
      >>> fit.model.rank, fit.directional.shape, fit.sigma_g.shape
      (64, (2,), (3,))
    """
    n = _n_samples(data)
    m = check_int("batch_size", batch_size, minimum=2)
    k_batch, k_dirs = jax.random.split(key)
    idx = jax.random.randint(k_batch, (m,), 0, n)
    batch = jax.tree.map(lambda a: jnp.asarray(a)[idx], data)
    grads = per_sample_grads(sample_loss, params, batch, chunk_size=chunk_size)
    return _empirical_fit(grads, params, directions, n_directions, k_dirs)


def fit_network_empirical(
    model: nnx.Module,
    x: jax.Array,
    y: jax.Array,
    *,
    key: jax.Array,
    loss: Callable | None = None,
    batch_size: int = 256,
    directions: Sequence[Params] | None = None,
    n_directions: int = 8,
    chunk_size: int | None = None,
) -> NoiseFit:
    """`fit_empirical` for a Flax NNX network at its current ``nnx.Param`` state `w*`.

    The fit's trees, the model's factors and the directions are pure dicts like
    ``nnx.to_pure_dict(nnx.state(model, nnx.Param))``; `directions` may also be
    ``nnx.State``. `loss` is ``loss(outputs, y) -> (n,)`` (default: cross-entropy of
    integer labels). See `fit_empirical` for the estimate and its errors.
    """
    graphdef, pure, rest, _ = _split_network(model, None)
    if directions is not None:
        directions = [nnx.to_pure_dict(v) if isinstance(v, nnx.State) else v for v in directions]
    per_example = cross_entropy_losses if loss is None else loss

    def sample_loss(p, datum):
        xi, yi = datum
        out = nnx.merge(graphdef, p, rest)(xi[None])
        return per_example(out, yi[None])[0]

    return fit_empirical(
        sample_loss,
        pure,
        (jnp.asarray(x), jnp.asarray(y)),
        key=key,
        batch_size=batch_size,
        directions=directions,
        n_directions=n_directions,
        chunk_size=chunk_size,
    )
