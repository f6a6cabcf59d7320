"""The one place where keys become numbers: the standard increments every noise model drives.

A noise model (`sdn.noise.base.NoiseModel`) turns standard increments into its noise term;
this module draws them, and the engine (`sdn.simulate`, first exits) and the optimizer
transform (`sdn.optim`) draw them through these functions only, so that for a given key
each of them sees the same numbers.

- Gaussian: `N(0, dt)` per coordinate, ``jax.random.normal``.
- Two-point: `±sqrt(dt)` with equal probability, one random bit each. The bits come
  32 to a ``uint32`` word (`two_point_words`); bit `b` of word `m` (`word_signs`) is the
  increment of step `32 m + b` of a block, or element `32 m + b` of `rademacher`.
- α-stable: Chambers–Mallows–Stuck draws of the standard symmetric law
  (`symmetric_stable`).
- Minibatches: the sample indices of `sdn.noise.minibatch` (`batch_indices`).
- Bridge uniforms: the uniforms the first-exit driver compares with the Brownian
  bridge's crossing probability (`bridge_uniforms`), from a stream of a block's key
  independent of its increments.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.random import threefry_2x32

Array = jax.Array

INCREMENTS = ("gaussian", "two_point")
"""The laws of the standard increment: Brownian `N(0, dt)`, or `±sqrt(dt)` (weak)."""

BITS_PER_WORD = 32
"""Two-point increments per random ``uint32`` word."""

_BRIDGE_STREAM = 1 << 30
"""Folded into a block's key for its bridge uniforms: far from any block or leaf index."""


def check_increments(increments: str) -> str:
    """Return `increments` if it names a law of `INCREMENTS`, else raise ValueError."""
    if increments not in INCREMENTS:
        raise ValueError(f"increments must be one of {INCREMENTS}, got {increments!r}")
    return increments


def leaf_keys(key: Array, n_leaves: int) -> list:
    """One key per leaf of a pytree state: `key` itself for one leaf, else a split.

    >>> len(leaf_keys(jax.random.key(0), 3))
    3
    """
    return list(jax.random.split(key, n_leaves)) if n_leaves > 1 else [key]


def gaussian(key: Array, shape: tuple[int, ...], dtype: Any) -> Array:
    """Independent standard normals `N(0, 1)` (the Brownian increment over a unit step).

    >>> gaussian(jax.random.key(0), (2, 3), jnp.float32).shape
    (2, 3)
    """
    return jax.random.normal(key, shape, dtype)


def two_point_words(key: Array, n_words: int, shape: tuple[int, ...]) -> Array:
    """`n_words` random ``uint32`` words per element of `shape`, shape `(n_words, *shape)`.

    Each word holds the signs of `BITS_PER_WORD` two-point increments of one coordinate
    (read them with `word_signs`): a block of `32 · n_words` steps costs one draw of
    words, `1/32` of the random numbers normal increments need.

    >>> two_point_words(jax.random.key(0), 2, (3,)).shape
    (2, 3)
    """
    return jax.random.bits(key, (n_words, *shape), jnp.uint32)


def word_signs(words: Array, bit: Array | int, magnitude: Array) -> Array:
    """`+magnitude` where bit `bit` of `words` is set, `−magnitude` where it is not.

    With `magnitude = sqrt(dt)` this is the two-point increment `±sqrt(dt)` of step
    `32 m + bit` of a block, `words` being word `m` of `two_point_words`; with
    `magnitude = 1` a random sign. The result has `magnitude`'s dtype.

    >>> import numpy as np
    >>> w = jnp.array([0b101], jnp.uint32)
    >>> tuple(float(word_signs(w, b, jnp.float32(2.0))[0]) for b in range(3))
    (2.0, -2.0, 2.0)
    """
    return jnp.where(((words >> bit) & 1) == 1, magnitude, -magnitude)


def rademacher(key: Array, shape: tuple[int, ...], dtype: Any) -> Array:
    """Independent `±1` with equal probability, from one random bit each.

    The bits come 32 to a `uint32` word, so the generator makes `1/32` of the words a
    normal draw of the same shape needs (the normal draw is the cost of a noise step on
    the CPU). Element `32 m + b` of the flattened result is bit `b` of word `m`.

    >>> rademacher(jax.random.key(0), (2, 3), jnp.float32).shape
    (2, 3)
    """
    n = math.prod(shape)
    words = jax.random.bits(key, (max(1, -(-n // BITS_PER_WORD)),), jnp.uint32)
    bits = jnp.arange(BITS_PER_WORD, dtype=jnp.uint32)
    signs = word_signs(words[:, None], bits, jnp.ones((), dtype))
    return signs.reshape(-1)[:n].reshape(shape)


def standard_increments(
    key: Array,
    shape: tuple[int, ...],
    dtype: Any,
    dt: Array | float | None = None,
    increments: str = "gaussian",
) -> Array:
    """Independent standard increments: `N(0, dt)` or `±sqrt(dt)` (``"two_point"``).

    Both have mean 0 and variance `dt` (`dt=None`: 1); the two-point law matches the
    Gaussian's first three moments, which is what weak order 1 needs.

    >>> z = standard_increments(jax.random.key(0), (4,), jnp.float32, 0.01, "two_point")
    >>> bool(jnp.all(jnp.abs(z) == jnp.sqrt(jnp.float32(0.01))))
    True
    """
    if increments == "gaussian":
        z = gaussian(key, shape, dtype)
    elif increments == "two_point":
        z = rademacher(key, shape, dtype)
    else:
        check_increments(increments)
    return z if dt is None else jnp.sqrt(jnp.asarray(dt, dtype)) * z


def batch_indices(key: Array, n_batches: int, batch_size: int, n: int, *, replace: bool) -> Array:
    """`n_batches` minibatches of `batch_size` indices into `n` samples, shape `(n_batches, b)`.

    With replacement every index is uniform on `0 … n−1`; without, each batch holds `b`
    distinct indices (a uniformly random subset, its own key per batch).

    >>> batch_indices(jax.random.key(0), 3, 2, 5, replace=False).shape
    (3, 2)
    """
    if replace:
        return jax.random.randint(key, (n_batches, batch_size), 0, n)
    keys = jax.random.split(key, n_batches)
    return jax.vmap(lambda k: jax.random.choice(k, n, (batch_size,), replace=False))(keys)


def bridge_uniforms(block_key: Array, n: int, dtype: Any) -> Array:
    """`n` uniforms on `[0, 1)` for the Brownian-bridge exit test of one block of steps.

    `block_key` is the key the block's increments are drawn from; the uniforms come from
    a stream of it folded apart (`fold_in(block_key, 2³⁰)`), so they are independent of
    the increments and the same whatever the block's law.

    >>> bridge_uniforms(jax.random.key(0), 4, jnp.float32).shape
    (4,)
    """
    return jax.random.uniform(jax.random.fold_in(block_key, _BRIDGE_STREAM), (n,), dtype=dtype)


_SINPI_COEFFS = (3.14159264, -5.16770968, 2.55006973, -0.59824212, 0.07756038)
"""`sin(πx) ≈ x P(x²)` on `[0, ½]` (relative error 5·10⁻⁹; 2·10⁻⁷ evaluated in float32)."""


def _sinpi(x: Array) -> Array:
    """`sin(πx)` for `x` in `[0, ½]`, to float32 rounding with a polynomial.

    On the CPU the library sine costs several times a polynomial (it reduces any
    argument); the stable draw only needs the quarter period, whose relative error the
    polynomial keeps near one ulp down to `x → 0`. Float64 uses the library sine.
    """
    if x.dtype != jnp.float32:
        return jnp.sin(jnp.pi * x)
    z = x * x
    p = jnp.float32(_SINPI_COEFFS[-1])
    for c in reversed(_SINPI_COEFFS[:-1]):
        p = p * z + jnp.float32(c)
    return x * p


def _word_pairs(key: Array, shape: tuple[int, ...]) -> Array:
    """Two random ``uint32`` words per element of `shape`, shape `(2, *shape)`.

    A Threefry key gives both words of element `i` from one block of the cipher (counter
    `i`, the block's two output words): ``jax.random.bits`` would spend a block per
    word (it XORs a block's two words into one), twice the cipher's work. Keys of other
    implementations draw ``bits(key, (2, *shape))``.
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32":
            return jax.random.bits(key, (2, *shape), jnp.uint32)
        key = jax.random.key_data(key)
    n = math.prod(shape)
    # threefry_2x32 pairs the counters' two halves: block i enciphers (i, n + i), and its
    # first output word comes out at i, its second at n + i.
    words = threefry_2x32(key, jnp.arange(2 * n, dtype=jnp.uint32))
    return words.reshape(2, *shape)


def _stable_uniforms(key: Array, shape: tuple[int, ...], dtype: Any) -> tuple:
    """The sign of `V`, `w = ½ − |V|/π` and the uniform `u` of `E = −log u`, from one draw.

    One call of the generator makes two words per element (`_word_pairs`): the first
    gives the sign (top bit) and `w = (m + ½) 2^−(k+1)` from its next `k` bits
    (`k = 23` in float32, 52 in float64), a grid of the open interval `(0, ½)` that is
    exact in the dtype and never reaches `|V| = π/2`; the second gives `u = (m + ½) 2^−k`
    in `(0, 1)`, so `E > 0`.
    """
    wide = jnp.dtype(dtype).itemsize > 4
    udtype, k = (jnp.uint64, 52) if wide else (jnp.uint32, 23)
    nbits = 64 if wide else 32
    words = jax.random.bits(key, (2, *shape), udtype) if wide else _word_pairs(key, shape)
    negative = (words[0] >> (nbits - 1)) == 1
    scale = jnp.asarray(2.0**-k, dtype)
    mw = ((words[0] >> (nbits - 1 - k)) & ((1 << k) - 1)).astype(dtype)
    w = (mw + 0.5) * (scale / 2)
    u = ((words[1] >> (nbits - k)).astype(dtype) + 0.5) * scale
    return negative, w, u


def symmetric_stable(key: Array, alpha: Array | float, shape: tuple[int, ...], dtype: Any) -> Array:
    """Standard symmetric α-stable draws `S`, `E e^{iuS} = e^{−|u|^α}` (Chambers–Mallows–Stuck).

    `S = sin(αV) / cos(V)^(1/α) · (cos(V − αV) / E)^((1 − α)/α)` with `V` uniform on
    `(−π/2, π/2)` and `E` standard exponential (β = 0); at `α = 1` the Cauchy `tan V`,
    at `α = 2` a normal of variance 2. Evaluated as
    `S = sin(αV)/cos V · (cos(V − αV) / (E cos V))^(1/α − 1)`: one log and one exp for the
    power, and `tan V` at `α = 1` by itself. `V` and `E` come from one draw of two words
    per element (`_stable_uniforms`); the sines are of reduced arguments (`_sinpi`), so
    the float32 draw is within a few ulps of the formula in float64.
    Half-precision dtypes are drawn in float32 and rounded.

    >>> symmetric_stable(jax.random.key(0), 1.5, (3,), jnp.float32).shape
    (3,)
    """
    work = jnp.float64 if jnp.dtype(dtype).itemsize > 4 else jnp.float32
    negative, w, u = _stable_uniforms(key, shape, work)
    alpha = jnp.asarray(alpha, work)
    t = 0.5 - w  # |V| / π, exact
    at = alpha * t  # |αV| / π in [0, 1): fold onto [0, ½]
    sin_av = _sinpi(jnp.where(at > 0.5, 1 - at, at))
    cos_v = _sinpi(w)
    cos_rest = _sinpi(0.5 - jnp.abs(1 - alpha) * t)  # cos((1 − α)V)
    e = -jnp.log(u)
    power = jnp.exp((1 / alpha - 1) * jnp.log(cos_rest / (e * cos_v)))
    s = sin_av / cos_v * power
    return jnp.where(negative, -s, s).astype(dtype)
