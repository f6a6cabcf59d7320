"""Input checks for the public boundary, and a pytree dataclass decorator.

Checks run on concrete values only: under `jit`/`vmap` the arguments are tracers, whose
values are unknown, and the checks are skipped (the traced code must then report
problems through status codes, never silent NaNs).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np


def pytree_dataclass(cls):
    """Make `cls` a frozen dataclass registered as a JAX pytree.

    Fields declared with `static_field()` are part of the tree structure (functions,
    names, integers that fix shapes); all others are leaves.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    data, meta = [], []
    for f in dataclasses.fields(cls):
        (meta if f.metadata.get("static") else data).append(f.name)
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


def static_field(**kwargs):
    """A dataclass field that is static (part of the pytree structure)."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def is_concrete(*values: Any) -> bool:
    """True if no leaf of `values` is a JAX tracer."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(values))


def _short(value: Any) -> str:
    text = np.array2string(np.asarray(value), threshold=6, precision=4)
    return text if len(text) < 80 else text[:77] + "..."


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raise ValueError if a concrete `value` has a non-positive (or negative) entry."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    bad = ~np.isfinite(arr) | ((arr < 0) if allow_zero else (arr <= 0))
    if np.any(bad):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {kind}, got {_short(value)}")


def check_finite(name: str, value: Any) -> None:
    """Raise ValueError if a concrete `value` (array or pytree) has a non-finite entry."""
    if not is_concrete(value):
        return
    for leaf in jax.tree.leaves(value):
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"{name} must be finite, got {_short(leaf)}")


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return `value` as an int, or raise TypeError/ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_broadcastable(name: str, value: Any, shape: tuple[int, ...], target: str) -> None:
    """Raise ValueError unless `value` broadcasts to `shape` without changing it."""
    vshape = np.shape(value)
    try:
        out = np.broadcast_shapes(vshape, shape)
    except ValueError:
        out = None
    if out != tuple(shape):
        raise ValueError(
            f"{name} has shape {vshape}, which does not broadcast to the shape {tuple(shape)} "
            f"of {target}"
        )
