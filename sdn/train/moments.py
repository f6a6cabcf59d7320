"""The one accumulator of per-sample gradient moments, shared by every probe of `sdn.train`.

Per-sample gradients are formed a chunk of samples at a time and never all at once: each
chunk is centred before squaring (so float32 cancellation is avoided) and the chunks are
combined with the pairwise update of Chan, Golub and LeVeque (1979),

    n = n_a + n_b,   δ = μ_b − μ_a,   μ = μ_a + δ n_b/n,   M₂ = M₂a + M₂b + δ² n_a n_b/n.

`gradient_moments` (any per-sample loss) and the per-sample paths of
`gradient_statistics` (layers of a Flax NNX network) both call `sample_moments`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any


class SampleMoments(NamedTuple):
    """Moments of `n` per-sample gradients `g_i`.

    Attributes:
      mean: `ḡ = (1/n) Σ_i g_i`, a tree like the gradients.
      variance: `(1/n) Σ_i (g_i − ḡ)²` per coordinate (the population variance).
      sq_norms: `(n,)` the squared norms `‖g_i‖²`.
      directional: `(n,)` `v·g_i` along the direction given, else zeros.
    """

    mean: Params
    variance: Params
    sq_norms: jax.Array
    directional: jax.Array


def _chunk_moments(grads: Params, mask: jax.Array, direction: Params | None):
    """(count, mean, Σ(g − mean)², ‖g_i‖², v·g_i) of a chunk, `mask` marking real samples."""
    w = mask.astype(jnp.float32)
    count = w.sum()

    def mean(g):
        return jnp.tensordot(w, g, 1) / jnp.maximum(count, 1.0)

    mu = jax.tree.map(mean, grads)
    m2 = jax.tree.map(lambda g, m: jnp.tensordot(w, jnp.square(g - m), 1), grads, mu)
    sq = sum(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), 1) for g in jax.tree.leaves(grads))
    if direction is None:
        dirs = jnp.zeros_like(w)
    else:
        dirs = sum(
            jnp.sum((g * v[None]).reshape(g.shape[0], -1), 1)
            for g, v in zip(jax.tree.leaves(grads), jax.tree.leaves(direction))
        )
    return count, mu, m2, sq * w, dirs * w


def _combine(a, b):
    """Chan et al.'s pairwise update of (count, mean, sum of squared deviations)."""
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    nb_n = nb / jnp.maximum(n, 1.0)
    delta = jax.tree.map(lambda x, y: y - x, ma, mb)
    mean = jax.tree.map(lambda m, d: m + d * nb_n, ma, delta)
    m2 = jax.tree.map(lambda x, y, d: x + y + jnp.square(d) * (na * nb_n), sa, sb, delta)
    return n, mean, m2


def sample_moments(
    per_sample: Callable[..., Params],
    args: Any,
    n: int,
    chunk: int,
    direction: Params | None = None,
) -> SampleMoments:
    """Moments of the per-sample gradients ``per_sample(*chunk_of_args)`` over `n` samples.

    `args` is a tuple of pytrees whose leaves have a leading axis of size `n`; they are
    padded to whole chunks of `chunk` samples by repeating the last one (the padding is
    masked out, and a repeated real sample keeps every gradient finite) and
    ``per_sample`` maps one chunk to the gradients of its samples, leaves
    ``(chunk, *shape)``. Memory is one chunk of gradients. Jittable.
    """
    chunk = max(1, min(n, chunk))
    k = -(-n // chunk)
    pad = k * chunk - n
    mask = (jnp.arange(k * chunk) < n).reshape(k, chunk)
    chunks = jax.tree.map(
        lambda x: jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), mode="edge").reshape(
            k, chunk, *x.shape[1:]
        ),
        args,
    )

    def one(i):
        grads = per_sample(*jax.tree.map(lambda c: c[i], chunks))
        return _chunk_moments(grads, mask[i], direction)

    first = one(0)
    if k == 1:
        count, mu, m2, sq, dirs = first
        return SampleMoments(mu, jax.tree.map(lambda s: s / count, m2), sq[:n], dirs[:n])

    def body(acc, i):
        c, mu_i, m2_i, sq_i, d_i = one(i)
        return _combine(acc, (c, mu_i, m2_i)), (sq_i, d_i)

    acc, (sq, dirs) = jax.lax.scan(body, first[:3], jnp.arange(1, k))
    count, mu, m2 = acc
    sq = jnp.concatenate([first[3], sq.reshape(-1)])[:n]
    dirs = jnp.concatenate([first[4], dirs.reshape(-1)])[:n]
    return SampleMoments(mu, jax.tree.map(lambda s: s / count, m2), sq, dirs)
