"""Constant noise: `C(w)` does not depend on the state (docs/theory.md §2).

`isotropic` (Langevin, `C = σ I`), `diagonal` (`C = diag(σ_j)`) and `full` (any fixed
positive semi-definite `Σ`, e.g. `∝ H`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_finite, check_positive, is_concrete, pytree_dataclass
from sdn.noise.base import (
    Array,
    NoiseModel,
    _as_float,
    _as_float_tree,
    _check_tree,
    _dtype,
    leafwise,
)


@pytree_dataclass
class Isotropic(NoiseModel):
    """Constant isotropic noise `C = σ I` (Langevin / SGLD)."""

    variance_: Array
    constant = True
    _state_params = ("variance_",)

    def variance(self, w: Any) -> Any:
        return leafwise(
            lambda x, v: jnp.broadcast_to(v, jnp.shape(x)).astype(_dtype(x)), w, v=self.variance_
        )

    def diffusion(self, w: Any, dw: Any) -> Any:
        return jax.tree.map(lambda d: (jnp.sqrt(self.variance_) * d).astype(_dtype(d)), dw)


def isotropic(variance: float | Array) -> Isotropic:
    """Constant isotropic noise, `C(w) = σ I` (docs/theory.md §2, Langevin).

    Args:
      variance: `σ ≥ 0`, a scalar.

    >>> import jax.numpy as jnp
    >>> isotropic(0.5).variance(jnp.zeros(3))
    Array([0.5, 0.5, 0.5], dtype=float32)
    """
    check_positive("variance", variance, allow_zero=True)
    if is_concrete(variance) and np.ndim(variance) != 0:
        raise ValueError(f"variance must be a scalar, got shape {np.shape(variance)}")
    return Isotropic(_as_float(variance))


@pytree_dataclass
class Diagonal(NoiseModel):
    """Constant diagonal noise `C = diag(σ_j)`; `σ` an array or a pytree like the state."""

    variances: Any
    constant = True
    _state_params = ("variances",)

    def variance(self, w: Any) -> Any:
        return leafwise(
            lambda x, v: jnp.broadcast_to(v, jnp.shape(x)).astype(_dtype(x)), w, v=self.variances
        )


def diagonal(variances: Any) -> Diagonal:
    """Constant anisotropic noise with diagonal covariance `C = diag(σ_1, …, σ_d)`.

    Args:
      variances: per-coordinate variances `σ_j ≥ 0`, broadcastable to the state, or a
        pytree shaped like a pytree state (e.g. like the params, in the optimizer).

    >>> import jax.numpy as jnp
    >>> diagonal(jnp.array([1.0, 4.0])).std(jnp.zeros(2))
    Array([1., 2.], dtype=float32)
    """
    _check_tree("variances", variances)
    return Diagonal(_as_float_tree(variances))


@pytree_dataclass
class Full(NoiseModel):
    """Constant noise with a full covariance matrix and its symmetric square root."""

    covariance_: Array
    factor: Array
    diagonal = False
    constant = True

    def variance(self, w: Array) -> Array:
        return jnp.diag(self.covariance_).astype(jnp.result_type(w))

    def covariance(self, w: Array) -> Array:
        return self.covariance_

    def diffusion(self, w: Array, dw: Array) -> Array:
        """`Σ^½ dw`: with two-point `dw`, one sign per column of the square root."""
        return (dw @ self.factor.T).astype(jnp.result_type(w))

    def check_state(self, w: Array) -> None:
        d = self.covariance_.shape[0]
        if jnp.shape(w) != (d,):
            raise ValueError(
                f"w0 must have shape ({d},) to match covariance of shape {self.covariance_.shape}, "
                f"got {jnp.shape(w)}"
            )


def full(covariance: Array) -> Full:
    """Constant noise with a full covariance `C = Σ` (e.g. `Σ ∝ H`, Hessian-aligned).

    `Σ` must be symmetric positive semi-definite; its symmetric square root is computed
    once here by an eigendecomposition. The state is a flat vector of shape `(d,)`.

    Args:
      covariance: `(d, d)` matrix.

    >>> import jax.numpy as jnp
    >>> full(jnp.array([[2.0, 1.0], [1.0, 2.0]])).factor.shape
    (2, 2)
    """
    cov = _as_float(covariance)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"covariance must be a square matrix, got shape {cov.shape}")
    if is_concrete(cov):
        check_finite("covariance", cov)
        c = np.asarray(cov, dtype=np.float64)
        if not np.allclose(c, c.T, rtol=1e-5, atol=1e-8 * max(1.0, np.abs(c).max())):
            raise ValueError("covariance must be symmetric")
        lam = np.linalg.eigvalsh(c)
        if lam.min() < -1e-6 * max(1.0, abs(lam.max())):
            raise ValueError(
                f"covariance must be positive semi-definite, its smallest eigenvalue is "
                f"{lam.min():.4g}"
            )
    lam, vec = jnp.linalg.eigh((cov + cov.T) / 2)
    factor = (vec * jnp.sqrt(jnp.clip(lam, 0.0))) @ vec.T
    return Full(cov, factor)
