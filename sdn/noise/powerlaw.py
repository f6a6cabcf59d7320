"""The power-law (state-dependent) noise of SGD near a minimum (docs/theory.md §1, §3).

`C(w) = σ_g + 2 σ_gH x + σ_H x²` with `x = w − w*`: the quadratic covariance of the
per-sample gradients `g_i + H_i x`, whose coefficients are the *variances* `σ_g = Var g_i`,
`σ_H = Var H_i` and the covariance `σ_gH = Cov(g_i, H_i)` (the paper's symbols).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_finite, is_concrete, pytree_dataclass, static_field
from sdn.noise.base import (
    Array,
    NoiseModel,
    _as_float_tree,
    _check_tree,
    _dtype,
    is_static_zero,
    leafwise,
)


def power_law_variance(x: Array, sigma_g: Array, sigma_h: Array, sigma_gh: Array = 0.0) -> Array:
    """The quadratic covariance `σ_g + 2 σ_gH x + σ_H x²` elementwise (docs/theory.md §1).

    Clipped at zero so that rounding never hands a negative variance to a square root.

    >>> float(power_law_variance(2.0, 1.0, 0.5))
    3.0
    """
    return jnp.maximum(sigma_g + 2.0 * sigma_gh * x + sigma_h * jnp.square(x), 0.0)


@pytree_dataclass
class PowerLaw(NoiseModel):
    """State-dependent noise `C_jj(w) = σ_g + 2σ_gH x_j + σ_H x_j²`, `x = w − center`."""

    sigma_g: Any
    sigma_h: Any
    center: Any
    sigma_gh: Any
    constant: bool = static_field(default=False)
    _state_params = ("sigma_g", "sigma_h", "center", "sigma_gh")

    def variance(self, w: Any) -> Any:
        def one(x, sg, sh, c, sgh):
            return power_law_variance(x - c, sg, sh, sgh).astype(_dtype(x))

        return leafwise(one, w, sg=self.sigma_g, sh=self.sigma_h, c=self.center, sgh=self.sigma_gh)


def power_law(
    sigma_g: Any,
    sigma_h: Any,
    center: Any = 0.0,
    sigma_gh: Any = 0.0,
) -> PowerLaw:
    """Power-law (state-dependent) noise, `C(w) = σ_g + 2 σ_gH x + σ_H x²`, `x = w − w*`.

    The covariance of SGD near a minimum `w*` is quadratic in `x` (docs/theory.md §1); taken
    diagonal, it is the noise of the power-law dynamic, whose stationary law is a
    Student-t (§3). Every parameter is a scalar, an array per coordinate, or a pytree
    like a pytree state. In the optimizer (`sdn.optim`) the model is evaluated at
    `x = w − w̄` and `C` is the covariance of the added noise itself.

    Args:
      sigma_g: `σ_g = Var g_i ≥ 0`, a variance (not a standard deviation): the
        per-sample gradient variance at the minimum, `C(w*)`.
      sigma_h: `σ_H = Var H_i ≥ 0`, a variance: that of the per-sample curvatures.
      center: the minimum `w*`.
      sigma_gh: `σ_gH = Cov(g_i, H_i)`, the covariance of per-sample gradients and
        curvatures; must obey `σ_gH² ≤ σ_g σ_H` so that `C(w) ≥ 0` everywhere.

    >>> import jax.numpy as jnp
    >>> power_law(1.0, 2.0).variance(jnp.array([0.0, 1.0]))
    Array([1., 3.], dtype=float32)
    """
    _check_tree("sigma_g", sigma_g)
    _check_tree("sigma_h", sigma_h)
    check_finite("center", center)
    check_finite("sigma_gh", sigma_gh)
    leaves = [
        jax.tree_util.treedef_is_leaf(jax.tree.structure(v)) for v in (sigma_g, sigma_h, sigma_gh)
    ]
    if all(leaves) and is_concrete(sigma_g, sigma_h, sigma_gh):
        excess = np.square(np.asarray(sigma_gh)) - np.asarray(sigma_g) * np.asarray(sigma_h)
        if np.any(excess > 1e-6 * (1.0 + np.abs(np.asarray(sigma_g) * np.asarray(sigma_h)))):
            raise ValueError(
                f"sigma_gh must satisfy sigma_gh**2 <= sigma_g * sigma_h (else C(w) < 0 "
                f"somewhere), got sigma_gh={sigma_gh}, sigma_g={sigma_g}, sigma_h={sigma_h}"
            )
    return PowerLaw(
        *(_as_float_tree(v) for v in (sigma_g, sigma_h, center, sigma_gh)),
        constant=is_static_zero(sigma_h, sigma_gh),
    )
