"""Shared helpers of `sdn.theory` (private)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
ArrayLike = Any


def _float(x: ArrayLike) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))
