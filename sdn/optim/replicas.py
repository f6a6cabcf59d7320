"""Keys of the noise transforms: one per replica, and a check that no two replicas share one.

`init` folds the transform's key with a fingerprint of the params, so `jax.vmap(tx.init)`
over replicas with different params gives independent streams; `reseed` gives each
replica a key of its own; `assert_independent_replicas` catches replicas that share one.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from sdn._deprecation import warn_deprecated
from sdn.optim._keys import canonical_key, is_key_like
from sdn.optim.transform import RefittedNoiseState, StateDependentNoiseState

Array = jax.Array

__all__ = ["StateDependentNoiseState", "assert_independent_replicas", "reseed"]


def _is_noise_state(node: Any) -> bool:
    return isinstance(node, StateDependentNoiseState | RefittedNoiseState)


def reseed(key: Array | int, opt_state: Any) -> Any:
    """`opt_state` with a fresh noise key, from `key`, in every noise transform it holds.

    For one replica; ``jax.vmap(reseed)(keys, states)`` gives replica `i` the key
    `keys[i]` (`sdn.train.train` does this for a plain transform, so each seed draws its
    own noise). The `j`-th noise state met gets `fold_in(key, j)`.

    The order of before 1.0, ``reseed(opt_state, key)``, works for one release with a
    DeprecationWarning: it is recognised when `key` is not key-like (a key array, an
    integer array or an int) and `opt_state` is.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sdn import noise
      >>> from sdn.optim import add_state_dependent_noise
      >>> tx = add_state_dependent_noise(0, noise.isotropic(1.0))
      >>> state = reseed(jax.random.key(1), tx.init(jnp.zeros(2)))
      >>> bool(jnp.all(jax.random.key_data(state.rng_key)
      ...               == jax.random.key_data(jax.random.fold_in(jax.random.key(1), 0))))
      True
    """
    if not is_key_like(key) and is_key_like(opt_state):
        warn_deprecated("sdn.optim.reseed(opt_state, key)", "sdn.optim.reseed(key, opt_state)")
        key, opt_state = opt_state, key
    key = canonical_key(key)
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
