"""Per-sample gradients of any per-sample loss, and their moments (docs/theory.md §1).

Every function takes a per-sample loss ``sample_loss(params, datum) -> scalar`` and the
data as a pytree whose leaves have a leading axis of size `n` (for a classifier,
``(x, y)``; ``sdn.train.sample_loss(apply)`` builds that loss), so it covers networks and
the finite-sum problems of `sdn.landscapes` alike. Parameters are any pytree. For a Flax
NNX network, `sdn.train.gradient_statistics` gives the same moments at about the cost of
one backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from sdn._checks import check_int
from sdn.train.moments import sample_moments

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


def gradient_moments(
    sample_loss: SampleLoss, params: Params, data: Any, *, chunk_size: int | None = None
) -> GradientMoments:
    """Mean and per-coordinate population variance of `∇ℓ_i(params)` over the `n` samples.

    `C_jj(w) = (1/n) Σ_i (∂_j ℓ_i(w) − ∂_j L(w))²` (docs/theory.md §1), accumulated over
    chunks of `chunk_size` per-sample gradients by the accumulator that
    `gradient_statistics` uses too (`sdn.train.moments`), so memory is
    `O(chunk_size × P)` and float32 cancellation is avoided. Jittable. The default
    chunk is 1 sample on the CPU and 256 on accelerators; `chunk_size` changes the speed
    only. For a Flax NNX network `gradient_statistics` is 7–12× faster (dense layers).

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda w, d: 0.5 * d["h"] * (w - d["c"]) ** 2
      >>> data = {"h": jnp.array([1.0, 2.0, 3.0]), "c": jnp.array([0.0, 1.0, 2.0])}
      >>> m = gradient_moments(loss, jnp.array(1.0), data, chunk_size=2)
      >>> round(float(m.mean), 4), round(float(m.variance), 4)  # of [1, 0, -3]
      (-0.6667, 2.8889)
    """
    n = _n_samples(data)
    grad = jax.vmap(jax.grad(sample_loss), (None, 0))
    m = sample_moments(lambda chunk: grad(params, chunk), (data,), n, _gradient_chunk(chunk_size))
    return GradientMoments(m.mean, m.variance)


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
