"""Anchor trackers: how `w̄`, the estimate of the local minimum, follows the params.

Each is a pair of pure functions, ``init(params) -> anchor`` and
``offset(anchor, params, count) -> (x, new_anchor)`` with `x = w − w̄`, the state at which
the noise model is evaluated (docs/theory.md §5). A transform takes one ``anchor``
argument: a tracker (``ema_anchor(0.99)``, ``init_anchor()``, ``periodic_anchor(every=100)``,
``fixed_anchor(w̄)``), a fixed pytree (shorthand of ``fixed_anchor``), or a name of
`ANCHORS` (shorthand of the tracker with its default: ``"ema"`` is ``ema_anchor()``).

>>> import jax.numpy as jnp
>>> tracker = anchor_tracker(periodic_anchor(every=2))
>>> a = tracker.init(jnp.zeros(1))
>>> [float(tracker.offset(a, jnp.ones(1), k)[0][0]) for k in (1, 2)]
[1.0, 0.0]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import is_concrete
from sdn._deprecation import warn_deprecated

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
        raise ValueError(f"ema_anchor: decay must be a scalar in [0, 1], got {decay!r}")
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
            raise ValueError(f"periodic_anchor: every must be an int >= 1, got {every!r}")

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


def anchor_tracker(
    anchor: str | AnchorTracker | Any = "ema", ema_decay: Any = None, anchor_every: Any = None
) -> AnchorTracker:
    """The tracker that `anchor` stands for: a tracker itself, a name of `ANCHORS`
    (``"ema"``: ``ema_anchor()``, ``"init"``: ``init_anchor()``, ``"periodic"``:
    ``periodic_anchor()``), or a pytree (``fixed_anchor(anchor)``).

    The keywords ``ema_decay=`` and ``anchor_every=`` of before 1.0 work for one release
    with a DeprecationWarning naming the tracker to pass instead; given with an anchor
    they do not apply to, they raise ValueError.

    Raises:
      ValueError: an unknown name.
    """
    anchor = legacy_anchor("anchor_tracker", anchor, ema_decay, anchor_every)
    if isinstance(anchor, AnchorTracker):
        return anchor
    if isinstance(anchor, str):
        if anchor not in ANCHORS:
            raise ValueError(
                f"anchor must be one of {ANCHORS}, a tracker (e.g. sdn.optim.ema_anchor(0.99)) "
                f"or a pytree, got {anchor!r}"
            )
        return {"ema": ema_anchor, "init": init_anchor, "periodic": periodic_anchor}[anchor]()
    return fixed_anchor(anchor)


# The anchor's side knobs of before 1.0: which anchor name each applied to, and its tracker.
_SIDE_KNOBS = {"ema_decay": ("ema", "ema_anchor"), "anchor_every": ("periodic", "periodic_anchor")}


def legacy_anchor(owner: str, anchor: Any, ema_decay: Any = None, anchor_every: Any = None) -> Any:
    """`anchor`, with a deprecated ``ema_decay=`` / ``anchor_every=`` folded into its tracker.

    ``anchor="ema", ema_decay=β`` becomes ``ema_anchor(β)`` and ``anchor="periodic",
    anchor_every=N`` becomes ``periodic_anchor(N)``, each with a DeprecationWarning; a knob
    given with another anchor (which it never applied to) is a ValueError.
    """
    for name, value in (("ema_decay", ema_decay), ("anchor_every", anchor_every)):
        if value is None:
            continue
        short, tracker = _SIDE_KNOBS[name]
        if not (isinstance(anchor, str) and anchor == short):
            raise ValueError(
                f"{owner}: {name}={value!r} applies only to anchor={short!r}, got "
                f"anchor={anchor if isinstance(anchor, str) else type(anchor).__name__!r}; "
                f"pass anchor=sdn.optim.{tracker}({value!r}) instead"
            )
        warn_deprecated(
            f"{owner}(anchor={short!r}, {name}={value!r})",
            f"{owner}(anchor=sdn.optim.{tracker}({value!r}))",
            stacklevel=4,
        )
        anchor = ema_anchor(value) if short == "ema" else periodic_anchor(value)
    return anchor


def accepts_legacy_anchor_keywords(fn: Callable) -> Callable:
    """Let `fn` (which takes ``anchor=``) accept ``ema_decay=`` / ``anchor_every=`` for one
    release, folded into its ``anchor`` by `legacy_anchor`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, ema_decay: Any = None, anchor_every: Any = None, **kwargs: Any):
        if ema_decay is not None or anchor_every is not None:
            kwargs["anchor"] = legacy_anchor(
                fn.__name__, kwargs.get("anchor", "ema"), ema_decay, anchor_every
            )
        return fn(*args, **kwargs)

    return wrapper
