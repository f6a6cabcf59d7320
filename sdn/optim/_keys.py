"""Keys of the noise transforms: a typed key from what a user passes, and a fingerprint
of the params that `init` folds into it (so replicas with different params draw apart)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def is_key_like(value: Any) -> bool:
    """Whether `value` reads as a key: a typed key array, an integer array or an int seed.

    Used to tell a call in the order of before 1.0 (key second) from one in the new order:
    a learning rate is a float, a float array or a schedule, never one of these.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int | np.integer):
        return True
    dtype = getattr(value, "dtype", None)
    if dtype is None or not isinstance(value, jax.Array | np.ndarray):
        return False
    return jnp.issubdtype(dtype, jax.dtypes.prng_key) or jnp.issubdtype(dtype, jnp.integer)


def canonical_key(key: Any) -> Array:
    """A typed PRNG key from a typed key of any impl, a raw uint32 key, or an int seed."""
    if isinstance(key, jax.Array | np.ndarray) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single key, got a key array of shape {key.shape}")
        return key
    if isinstance(key, bool):
        raise TypeError("key must be a jax.random.key or an int seed, got a bool")
    if isinstance(key, int | np.integer):
        return jax.random.key(key)
    if isinstance(key, jax.Array | np.ndarray) and jnp.issubdtype(key.dtype, jnp.integer):
        if key.ndim == 0:
            return jax.random.key(key)
        if key.dtype == jnp.uint32 and key.ndim == 1:
            return jax.random.wrap_key_data(key)
        raise ValueError(
            f"key must be a single key or an int seed, got an array of shape {key.shape}"
        )
    raise TypeError(f"key must be a jax.random.key or an int seed, got {type(key).__name__}")


def fingerprint(params: Any) -> Array:
    """A uint32 hash of the params' bits (position-weighted, so permutations differ)."""
    h = jnp.uint32(2166136261)
    for leaf in jax.tree.leaves(params):
        x = jnp.ravel(jnp.asarray(leaf))
        if x.size == 0:
            continue
        bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
        weights = jnp.arange(x.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
        h = (h ^ jnp.sum(bits * weights, dtype=jnp.uint32)) * jnp.uint32(16777619)
    return h
