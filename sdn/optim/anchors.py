"""Anchor trackers: how `w̄`, the estimate of the local minimum, follows the params.

Each is a pair of pure functions, ``init(params) -> anchor`` and
``offset(anchor, params, count) -> (x, new_anchor)`` with `x = w − w̄`, the state at which
the noise model is evaluated (docs/theory.md §5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import is_concrete

Array = jax.Array

ANCHORS = ("ema", "init", "periodic")


class AnchorTracker(NamedTuple):
    """How `w̄` follows the params: ``init(params) -> anchor`` and
    ``offset(anchor, params, count) -> (x, new_anchor)`` with `x = w − w̄` (clipped so
    that `x²` stays finite)."""

    init: Callable[[Any], Any]
    offset: Callable[[Any, Any, Array], tuple[Any, Any]]


def _stat_dtype(dtype: Any) -> Any:
    """Statistics (anchor, offsets, draws) are kept in float32, or wider for wider params."""
    return jnp.promote_types(dtype, jnp.float32)


def _copy_like(tree: Any, params: Any) -> Any:
    # Copies: donating the state must not delete the caller's params or anchor.
    return jax.tree.map(
        lambda a, p: jnp.array(a, _stat_dtype(jnp.result_type(p)), copy=True), tree, params
    )


def _clip(d: Array) -> Array:
    # |x| ≤ sqrt(max)/4 keeps x² finite, so diverging params give huge but finite noise,
    # never inf − inf = NaN.
    lim = math.sqrt(float(jnp.finfo(d.dtype).max)) / 4
    return jnp.clip(d, -lim, lim)


def _offsets(anchor: Any, params: Any) -> Any:
    return jax.tree.map(lambda a, w: _clip(w.astype(a.dtype) - a), anchor, params)


def ema_anchor(decay: float = 0.99) -> AnchorTracker:
    """`w̄_0 = w_0`, then `w̄_{k+1} = β w̄_k + (1 − β) w_k`; step `k` uses `w̄_k`.

    With `β ≥ 1/2` known at construction, `x = w − w̄` is read from the new anchor as
    `(w − w̄')/β` (the same number): the anchor can then be updated in place before the
    params are, and XLA copies neither (reading the old `w̄` and `w` copied every param
    and anchor leaf: +60% on the transform's cost in a step).
    """
    if is_concrete(decay) and (np.ndim(decay) != 0 or not 0.0 <= float(decay) <= 1.0):
        raise ValueError(f"ema_decay must be a scalar in [0, 1], got {decay}")
    from_new = is_concrete(decay) and float(decay) >= 0.5

    def init(params):
        return _copy_like(params, params)

    def offset(anchor, params, count):
        def step(a, w):
            return a + (1 - jnp.asarray(decay, a.dtype)) * (w.astype(a.dtype) - a)

        new = jax.tree.map(step, anchor, params)
        if not from_new:
            return _offsets(anchor, params), new
        x = jax.tree.map(
            lambda n, w: _clip((w.astype(n.dtype) - n) / jnp.asarray(decay, n.dtype)), new, params
        )
        return x, new

    return AnchorTracker(init, offset)


def init_anchor() -> AnchorTracker:
    """`w̄ = w_0`, the params given to ``init``, throughout."""
    return AnchorTracker(
        lambda params: _copy_like(params, params), lambda a, p, c: (_offsets(a, p), a)
    )


def periodic_anchor(every: int = 100) -> AnchorTracker:
    """`w̄ = w_{N⌊k/N⌋}`: the params copied at steps `0, N, 2N, …` (where `x = 0`)."""
    if is_concrete(every):
        n = np.asarray(every)
        if n.ndim != 0 or not np.issubdtype(n.dtype, np.integer) or n < 1:
            raise ValueError(f"anchor_every must be an int >= 1, got {every!r}")

    def offset(anchor, params, count):
        refresh = count % every == 0
        a = jax.tree.map(lambda a, w: jnp.where(refresh, w.astype(a.dtype), a), anchor, params)
        return _offsets(a, params), a

    return AnchorTracker(lambda params: _copy_like(params, params), offset)


def fixed_anchor(anchor: Any) -> AnchorTracker:
    """A fixed `w̄`: a pytree with the params' structure and shapes."""
    if is_concrete(anchor):
        for path, leaf in jax.tree_util.tree_flatten_with_path(anchor)[0]:
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"anchor{jax.tree_util.keystr(path)} must be finite")

    def init(params):
        _check_tree_like("anchor", anchor, params)
        return _copy_like(anchor, params)

    return AnchorTracker(init, lambda a, p, c: (_offsets(a, p), a))


def _check_tree_like(name: str, value: Any, params: Any) -> None:
    """Raise ValueError unless `value` has the tree structure and shapes of `params`."""
    p_struct, v_struct = jax.tree.structure(params), jax.tree.structure(value)
    if p_struct != v_struct:
        raise ValueError(
            f"{name} is a pytree that does not match the params: its structure is {v_struct}, "
            f"the params' is {p_struct}"
        )
    for (path, v), p in zip(
        jax.tree_util.tree_flatten_with_path(value)[0], jax.tree.leaves(params)
    ):
        if np.shape(v) != np.shape(p):
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} has shape {np.shape(v)}, which does not "
                f"equal the shape {np.shape(p)} of the matching params leaf"
            )


def anchor_tracker(anchor: str | Any = "ema", ema_decay: float = 0.99, anchor_every: int = 100):
    """The tracker named by `anchor` (``"ema"``, ``"init"``, ``"periodic"``, or a pytree)."""
    if isinstance(anchor, AnchorTracker):
        return anchor
    if isinstance(anchor, str):
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS} or a pytree, got {anchor!r}")
        if anchor == "ema":
            return ema_anchor(ema_decay)
        if anchor == "init":
            return init_anchor()
        return periodic_anchor(anchor_every)
    return fixed_anchor(anchor)
