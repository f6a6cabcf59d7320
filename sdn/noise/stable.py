"""Symmetric α-stable (Lévy) noise, for comparison with the α-stable models of SGD.

Its draws are `sdn.noise.increments.symmetric_stable`; the increment over a step `dt` is
`c · dt^(1/α) · S`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_positive, is_concrete, pytree_dataclass
from sdn._deprecation import renamed_keywords, warn_deprecated
from sdn.noise.base import Array, NoiseModel, _as_float, _dtype, leafwise
from sdn.noise.increments import check_increments, leaf_keys, symmetric_stable


@pytree_dataclass
class AlphaStable(NoiseModel):
    """Symmetric α-stable (Lévy) noise of index `α` and scale `c`: `E e^{iuL_t} = e^{−t|cu|^α}`."""

    alpha: Array
    c: Array
    is_gaussian = False
    constant = True
    _state_params = ("c",)

    @property
    def scale(self) -> Array:
        """Deprecated spelling of `c` (``scale`` is the SDE's `η/b`)."""
        warn_deprecated("AlphaStable.scale", "AlphaStable.c")
        return self.c

    @property
    def scale_exponent(self) -> Array:
        """`1 − 1/α`: SGD's jump `η ξ` over a step `dt = η` (`½` at `α = 2`)."""
        return 1 - 1 / self.alpha

    def variance(self, w: Any) -> Any:
        """Infinite for `α < 2` (the law has no second moment); `2c²` at `α = 2`."""
        var = jnp.where(self.alpha < 2, jnp.inf, 2 * jnp.square(self.c))
        return leafwise(lambda x, v: jnp.broadcast_to(v, jnp.shape(x)).astype(_dtype(x)), w, v=var)

    def diffusion(self, w: Any, dw: Any) -> Any:
        """`c · dw`, with `dw = dt^(1/α) S` (at `α = 2`, `Var S = 2`: variance `2c² dt`)."""
        return leafwise(lambda d, c: (c * d).astype(_dtype(d)), dw, c=self.c)

    def standard(self, key: Array, w: Any, dt: Any = None, increments: str = "gaussian") -> Any:
        """`dt^(1/α) S` with `S` standard symmetric α-stable: self-similar Lévy increments."""
        if increments != "gaussian":
            check_increments(increments)
            raise ValueError(
                f"increments={increments!r} needs a Gaussian noise model, got AlphaStable"
            )
        leaves, treedef = jax.tree.flatten(w)
        out = []
        for k, x in zip(leaf_keys(key, len(leaves)), leaves):
            dtype = _dtype(x)
            s = symmetric_stable(k, self.alpha, jnp.shape(x), dtype)
            if dt is not None:
                s = jnp.asarray(dt, dtype) ** (1 / jnp.asarray(self.alpha, dtype)) * s
            out.append(s)
        return jax.tree.unflatten(treedef, out)


@renamed_keywords("alpha_stable", scale="c")
def alpha_stable(alpha: float | Array, c: float | Array = 1.0) -> AlphaStable:
    """Symmetric α-stable noise, for comparison with the α-stable models of SGD.

    The Lévy process `L_t` with `E e^{iuL_t} = e^{−t|cu|^α}`: its increment over a step `dt`
    is `c · dt^(1/α) · S`, `S` drawn by Chambers–Mallows–Stuck with characteristic function
    `exp(−|u|^α)`. At `α = 2` it is Gaussian with variance `2 c² dt`; for `α < 2` the
    variance is infinite.

    Args:
      alpha: the index, `0 < α ≤ 2` (a scalar).
      c: the scale `c > 0` of the law (not the SDE's `η/b`), scalar or per coordinate;
        ``scale=`` before 1.0.

    >>> import jax, jax.numpy as jnp
    >>> alpha_stable(1.5).block(jax.random.key(0), jnp.zeros(2), 0.01, 3).shape
    (3, 2)
    """
    if is_concrete(alpha):
        a = np.asarray(alpha)
        if a.ndim != 0 or not (0 < float(a) <= 2):
            raise ValueError(f"alpha must be a scalar in (0, 2], got {alpha}")
    check_positive("c", c)
    return AlphaStable(_as_float(alpha), _as_float(c))
