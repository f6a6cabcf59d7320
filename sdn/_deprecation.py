"""Old public spellings that keep working for one release, each with a warning naming the new one.

Every rename of 1.0 goes through these helpers, so that the message reads the same
everywhere and a test can check it with ``pytest.warns(DeprecationWarning, match=NEW)``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REMOVED_IN = "2.0"


def warn_deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (both as a user would write them)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in sdn {REMOVED_IN}; use {new} instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_keywords(owner: str, **renames: str) -> Callable[[Callable], Callable]:
    """Accept old keyword names of a function for one release.

    ``@renamed_keywords("simulate", max_steps="n_steps")`` lets ``simulate(max_steps=5)``
    run as ``simulate(n_steps=5)`` with a warning; passing both names is a ``TypeError``.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{owner}() got both {old}= (deprecated) and {new}=; pass {new}= only"
                        )
                    warn_deprecated(f"{owner}({old}=...)", f"{owner}({new}=...)")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def deprecated_alias(fn: Callable, old: str, new: str | None = None) -> Callable:
    """A function ``old`` that warns and calls ``fn`` (the new spelling, named ``new``)."""
    new = new or f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warn_deprecated(old, new)
        return fn(*args, **kwargs)

    alias.__doc__ = f"Deprecated alias of `{new}` (removed in sdn {REMOVED_IN})."
    return alias


# `key` first: the rule that tells an old call from a new one. A key is a typed
# ``jax.random.key`` array, a raw ``uint32`` key of shape ``(2,)``, or a Python/NumPy int
# (a seed, turned into ``jax.random.key(seed)``). A call whose first argument is not a key,
# with the key passed as ``key=`` or at its old position, is the old spelling.


def is_key(x: Any) -> bool:
    """Whether `x` is a PRNG key by the rule above (a key array, a raw key, or an int)."""
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (int, np.integer)):
        return True
    dtype, shape = getattr(x, "dtype", None), getattr(x, "shape", None)
    if dtype is None:
        return False
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return dtype == jnp.uint32 and tuple(shape) == (2,)


def key_first(owner: str, *, new: str, old_position: int | None = None) -> Callable:
    """Let `owner(key, ...)` also be called the old way for one release.

    Old spellings: ``owner(a, b, ..., key=k)`` (any function), and, when `old_position`
    is given, the key at that positional index (``owner(loss_fn, params, key)``). `new`
    is the new spelling as a user writes it, for the warning.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if args and not is_key(args[0]):
                if "key" in kwargs:
                    warn_deprecated(f"{owner}(..., key=...)", new)
                    args = (kwargs.pop("key"), *args)
                elif old_position is not None and len(args) > old_position:
                    if is_key(args[old_position]):
                        warn_deprecated(f"{owner} with the key at position {old_position}", new)
                        i = old_position
                        args = (args[i], *args[:i], *args[i + 1 :])
            key = args[0] if args else kwargs.pop("key", None)
            if not is_key(key):
                raise TypeError(
                    f"{owner}() takes a PRNG key (jax.random.key or an int seed) as its "
                    f"first argument, as in {new}; got {type(key).__name__}"
                )
            if isinstance(key, (int, np.integer)):
                key = jax.random.key(int(key))
            return fn(key, *args[1:], **kwargs)

        return wrapper

    return decorate
