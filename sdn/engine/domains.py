"""Domains for first-exit problems: `inside(w)` and, where known, the exit geometry.

Every domain has `inside(w)`, `check_state(w)` and `is_box`. A box (`interval`, `box`;
`is_box` true) also gives the probability that a Brownian path crossed its boundary
between two monitored points, and its walls `lo`, `hi`, which the first-exit driver uses
to correct discrete monitoring (docs/theory.md §4, boundary correction).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_broadcastable, is_concrete, pytree_dataclass
from sdn._deprecation import warn_deprecated

Array = jax.Array


@pytree_dataclass
class Box:
    """The open box `lo < w < hi`, coordinatewise; bounds may be infinite."""

    lo: Array
    hi: Array
    is_box = True
    """A box: walls `lo`, `hi` and a bridge crossing probability (`crossing_probability`)."""

    @property
    def has_bridge(self) -> bool:
        """Deprecated: `is_box`."""
        warn_deprecated("Box.has_bridge", "Box.is_box")
        return self.is_box

    def inside(self, w: Array) -> Array:
        """True where every coordinate of `w` lies strictly between `lo` and `hi`."""
        return jnp.all((w > self.lo) & (w < self.hi))

    def crossing_probability(self, w: Array, w_next: Array, variance_dt: Array) -> Array:
        """Probability that a Brownian bridge from `w` to `w_next` left the box.

        For one wall at distance `d0` from `w` and `d1` from `w_next` and increment
        variance `v dt`, the bridge crosses with probability `exp(−2 d0 d1 / (v dt))`;
        the walls of all coordinates are combined as independent.
        """
        safe = jnp.where(variance_dt > 0, variance_dt, 1.0)

        def survive(d0, d1):
            p = jnp.exp(-2.0 * jnp.maximum(d0 * d1, 0.0) / safe)
            return 1.0 - jnp.where(variance_dt > 0, p, 0.0)

        keep = survive(w - self.lo, w_next - self.lo) * survive(self.hi - w, self.hi - w_next)
        return 1.0 - jnp.prod(keep)

    def check_state(self, w: Array) -> None:
        check_broadcastable("lo", self.lo, jnp.shape(w), "w0")
        check_broadcastable("hi", self.hi, jnp.shape(w), "w0")


def _bounds(lo, hi) -> tuple[Array, Array]:
    lo, hi = jnp.asarray(lo, dtype=float), jnp.asarray(hi, dtype=float)
    if is_concrete(lo, hi):
        if np.any(np.isnan(np.asarray(lo))) or np.any(np.isnan(np.asarray(hi))):
            raise ValueError(f"lo and hi must not be NaN, got lo={lo}, hi={hi}")
        if np.any(np.asarray(lo) >= np.asarray(hi)):
            raise ValueError(f"need lo < hi, got lo={np.asarray(lo)}, hi={np.asarray(hi)}")
    return lo, hi


def interval(lo: float, hi: float) -> Box:
    """The open interval `(lo, hi)`, for scalar states or every coordinate alike.

    >>> import jax.numpy as jnp
    >>> bool(interval(-1.0, 1.0).inside(jnp.array(0.5)))
    True
    """
    if is_concrete(lo, hi) and (np.ndim(lo) or np.ndim(hi)):
        raise ValueError(f"interval takes scalar bounds, got lo={lo}, hi={hi}; use box()")
    return Box(*_bounds(lo, hi))


def box(lo: Array, hi: Array) -> Box:
    """The open box `lo < w < hi` with per-coordinate bounds (use `±inf` for no wall).

    >>> import jax.numpy as jnp
    >>> bool(box(jnp.array([-1.0, -jnp.inf]), jnp.array([1.0, 2.0])).inside(jnp.zeros(2)))
    True
    """
    return Box(*_bounds(lo, hi))


@pytree_dataclass
class FromFunction:
    """A domain given only by its indicator; no boundary geometry, so no boundary correction."""

    inside_fn: Callable[[Array], Array]
    is_box = False

    @property
    def has_bridge(self) -> bool:
        """Deprecated: `is_box`."""
        warn_deprecated("FromFunction.has_bridge", "FromFunction.is_box")
        return self.is_box

    def inside(self, w: Array) -> Array:
        return jnp.asarray(self.inside_fn(w), dtype=bool).all()

    def check_state(self, w: Array) -> None:
        out = jax.eval_shape(self.inside_fn, w)
        if out.shape != ():
            raise ValueError(f"inside(w) must return a scalar, got shape {out.shape}")


def from_function(inside: Callable[[Array], Array]) -> FromFunction:
    """A domain `{w : inside(w)}` from a JAX-traceable boolean function.

    Exits are detected at the monitored steps only: the boundary correction needs
    the boundary's geometry, which a plain indicator does not give.

    >>> import jax.numpy as jnp
    >>> bool(from_function(lambda w: jnp.sum(w**2) < 1.0).inside(jnp.zeros(2)))
    True
    """
    if not callable(inside):
        raise TypeError(f"inside must be callable, got {type(inside).__name__}")
    return FromFunction(inside)
