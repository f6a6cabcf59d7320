"""Random directions and the gradient noise along a line (docs/theory.md §1, §6.1).

`noise_along` (any per-sample loss) and `network_noise_along` (a Flax NNX network) measure
the per-sample gradient variance at `w* + t v` on a grid of `t`; `taylor_coefficients`
is the second-order prediction of that profile from derivatives at `w*`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sdn._checks import check_int
from sdn.train.gradstats import batch_gradient_statistics
from sdn.train.persample import (
    Params,
    SampleLoss,
    _n_samples,
    directional_derivatives,
    gradient_moments,
)


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
