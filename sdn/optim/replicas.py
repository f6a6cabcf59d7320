"""Keys of the noise transforms: one per replica, and a check that no two replicas share one.

`init` folds the transform's key with a fingerprint of the params, so `jax.vmap(tx.init)`
over replicas with different params gives independent streams; `reseed` gives each
replica a key of its own; `assert_independent_replicas` catches replicas that share one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class StateDependentNoiseState(NamedTuple):
    """State of `add_state_dependent_noise`.

    Attributes:
      count: number of updates so far (int32).
      rng_key: the key of the next step's draw (a typed key of the given impl).
      anchor: the anchor tracker's state (`w̄`, a float32 or wider copy of the params'
        tree); ``()`` when the model does not depend on the state.
    """

    count: Array
    rng_key: Array
    anchor: Any


# ----------------------------------------------------------------------------- keys


def _canonical_key(key: Any) -> Array:
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


def _fingerprint(params: Any) -> Array:
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


def _is_noise_state(node: Any) -> bool:
    return isinstance(node, StateDependentNoiseState)


def reseed(opt_state: Any, key: Array | int) -> Any:
    """`opt_state` with a fresh noise key, from `key`, in every noise transform it holds.

    For one replica; ``jax.vmap(reseed)(states, keys)`` gives replica `i` the key
    `keys[i]` (`sdn.train.train` does this for a plain transform, so each seed draws its
    own noise). The `j`-th noise state met gets `fold_in(key, j)`.
    """
    key = _canonical_key(key)
    counter = iter(range(1 << 30))

    def fresh(node):
        if _is_noise_state(node):
            return node._replace(rng_key=jax.random.fold_in(key, next(counter)))
        return node

    return jax.tree.map(fresh, opt_state, is_leaf=_is_noise_state)


def assert_independent_replicas(opt_state: Any) -> None:
    """Raise ValueError if two replicas (leading axis) of a noise state share a key.

    Replicas with one key draw the same noise: K seeds would then be K correlated runs.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sdn import noise
      >>> from sdn.optim import add_state_dependent_noise
      >>> tx = add_state_dependent_noise(0, noise.isotropic(1.0))
      >>> states = jax.vmap(tx.init)(jnp.zeros((3, 2)))  # equal params, one key
      >>> assert_independent_replicas(states)
      Traceback (most recent call last):
      ...
      ValueError: replicas 0 and 1 share the noise key ...
    """
    states = [n for n in jax.tree.leaves(opt_state, is_leaf=_is_noise_state) if _is_noise_state(n)]
    for state in states:
        keys = state.rng_key
        if keys.ndim == 0:
            continue
        data = np.asarray(jax.random.key_data(keys)).reshape(keys.shape[0], -1)
        seen: dict[bytes, int] = {}
        for i, row in enumerate(data):
            j = seen.setdefault(row.tobytes(), i)
            if j != i:
                raise ValueError(
                    f"replicas {j} and {i} share the noise key of a state-dependent noise "
                    "transform, so they draw the same noise; give each replica its own key "
                    "(tx as key -> transform, or sdn.optim.reseed under jax.vmap)"
                )
