"""Stationary laws of the power-law dynamic and of Langevin (docs/theory.md §3).

* `power_law_stationary`: a scaled Student-t (`StudentTStationary`).
* `gaussian_stationary`: constant-noise Langevin's Gaussian (`GaussianStationary`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, gammaln

from sdn._checks import check_positive
from sdn.theory._common import Array, ArrayLike, _float


class StudentTStationary(NamedTuple):
    """Scaled Student-t `p(x) ∝ (1 + x²/(ν s²))^(−(ν+1)/2)`, elementwise over `df, scale`.

    A NamedTuple, hence a pytree: it can be returned from `jit` and `vmap`. `pdf`,
    `logpdf`, `cdf` and `sf` are jittable (`cdf` through the regularised incomplete beta);
    `ppf` calls `scipy.stats.t.ppf` on concrete numpy values and is not traceable.
    """

    df: Array
    scale: Array

    def logpdf(self, x: ArrayLike) -> Array:
        nu, s = self.df, self.scale
        z = jnp.asarray(x) / s
        return (
            gammaln(0.5 * (nu + 1.0))
            - gammaln(0.5 * nu)
            - 0.5 * jnp.log(nu * jnp.pi)
            - jnp.log(s)
            - 0.5 * (nu + 1.0) * jnp.log1p(z * z / nu)
        )

    def pdf(self, x: ArrayLike) -> Array:
        return jnp.exp(self.logpdf(x))

    def sf(self, x: ArrayLike) -> Array:
        """`P(X > x)`, accurate in the upper tail: `½ I_{ν/(ν+z²)}(ν/2, ½)` for `z > 0`."""
        nu = self.df
        z = jnp.asarray(x) / self.scale
        tail = 0.5 * betainc(0.5 * nu, 0.5, nu / (nu + z * z))
        return jnp.where(z > 0, tail, 1.0 - tail)

    def cdf(self, x: ArrayLike) -> Array:
        nu = self.df
        z = jnp.asarray(x) / self.scale
        tail = 0.5 * betainc(0.5 * nu, 0.5, nu / (nu + z * z))
        return jnp.where(z > 0, 1.0 - tail, tail)

    def ppf(self, q: ArrayLike) -> np.ndarray:
        """Quantiles via `scipy.stats.t.ppf` (numpy, not traceable)."""
        from scipy import stats

        df, scale = np.asarray(self.df, dtype=float), np.asarray(self.scale, dtype=float)
        return stats.t.ppf(np.asarray(q, dtype=float), df, scale=scale)

    def moment_exists(self, order: ArrayLike) -> Array:
        """True where `E|X|^order < ∞`, i.e. `order < ν` (tail `|x|^−(ν+1)`)."""
        return jnp.asarray(order) < self.df

    @property
    def tail_index(self) -> Array:
        """`α = ν`: `P(|X| > x) ∝ x^−ν`."""
        return self.df

    @property
    def mean(self) -> Array:
        """0 where `ν > 1`, NaN where the mean does not exist."""
        return jnp.where(self.df > 1.0, 0.0, jnp.nan) * jnp.ones_like(self.scale)

    @property
    def variance(self) -> Array:
        """`ν s² / (ν − 2)`, and `inf` where `ν ≤ 2` (the variance does not exist)."""
        nu = self.df
        safe = jnp.where(nu > 2.0, nu - 2.0, 1.0)
        return jnp.where(nu > 2.0, nu * self.scale**2 / safe, jnp.inf)


class GaussianStationary(NamedTuple):
    """Centred Gaussian of standard deviation `scale`, with `StudentTStationary`'s interface."""

    scale: Array

    @property
    def df(self) -> Array:
        return jnp.full_like(self.scale, jnp.inf)

    def logpdf(self, x: ArrayLike) -> Array:
        z = jnp.asarray(x) / self.scale
        return -0.5 * z * z - jnp.log(self.scale) - 0.5 * jnp.log(2.0 * jnp.pi)

    def pdf(self, x: ArrayLike) -> Array:
        return jnp.exp(self.logpdf(x))

    def cdf(self, x: ArrayLike) -> Array:
        return jax.scipy.special.ndtr(jnp.asarray(x) / self.scale)

    def sf(self, x: ArrayLike) -> Array:
        return jax.scipy.special.ndtr(-jnp.asarray(x) / self.scale)

    def ppf(self, q: ArrayLike) -> Array:
        return self.scale * jax.scipy.special.ndtri(jnp.asarray(q))

    def moment_exists(self, order: ArrayLike) -> Array:
        return jnp.isfinite(jnp.asarray(order)) & jnp.ones_like(self.scale, dtype=bool)

    @property
    def tail_index(self) -> Array:
        return self.df

    @property
    def mean(self) -> Array:
        return jnp.zeros_like(self.scale)

    @property
    def variance(self) -> Array:
        return self.scale**2


def power_law_stationary(
    curvature: ArrayLike,
    learning_rate: ArrayLike,
    batch_size: ArrayLike,
    sigma_g: ArrayLike,
    sigma_h: ArrayLike,
) -> StudentTStationary:
    """Stationary law of the power-law dynamic on `L = h x²/2` (docs/theory.md §3).

    For `dx = −h x dt + sqrt(2 D) dB`, `D = (η/2b)(σ_g + σ_H x²)`, the density is
    `p ∝ (1 + κ x²)^−(1 + b h/(η σ_H))`, `κ = σ_H/σ_g`: a Student-t with
    `ν = 1 + 2 b h/(η σ_H)` degrees of freedom and scale `s = sqrt(σ_g / (σ_H ν))`.
    Moments of order `≥ ν` do not exist. All arguments broadcast (diagonal `d`-D models:
    one independent Student-t per coordinate).

    Example:
      >>> law = power_law_stationary(1.0, 0.1, 1, 1.0, 2.0)
      >>> float(law.df), bool(law.moment_exists(2)), round(float(law.cdf(0.0)), 6)
      (11.0, True, 0.5)
    """
    for name, value in [
        ("curvature", curvature),
        ("learning_rate", learning_rate),
        ("batch_size", batch_size),
        ("sigma_g", sigma_g),
        ("sigma_h", sigma_h),
    ]:
        check_positive(name, value)
    h, eta, b, sg, sh = (
        _float(v) for v in (curvature, learning_rate, batch_size, sigma_g, sigma_h)
    )
    h, eta, b, sg, sh = jnp.broadcast_arrays(h, eta, b, sg, sh)
    nu = 1.0 + 2.0 * b * h / (eta * sh)
    return StudentTStationary(df=nu, scale=jnp.sqrt(sg / (sh * nu)))


def gaussian_stationary(
    curvature: ArrayLike, learning_rate: ArrayLike, batch_size: ArrayLike, sigma_g: ArrayLike
) -> GaussianStationary:
    """Stationary law of constant-noise Langevin on `L = h x²/2`: variance `η σ_g / (2 b h)`.

    docs/theory.md §3, the `σ_H = 0` limit of `power_law_stationary`. Arguments broadcast.

    Example:
      >>> round(float(gaussian_stationary(1.0, 0.1, 1, 1.0).variance), 6)
      0.05
    """
    for name, value in [
        ("curvature", curvature),
        ("learning_rate", learning_rate),
        ("batch_size", batch_size),
        ("sigma_g", sigma_g),
    ]:
        check_positive(name, value)
    h, eta, b, sg = (_float(v) for v in (curvature, learning_rate, batch_size, sigma_g))
    return GaussianStationary(scale=jnp.sqrt(eta * sg / (2.0 * b * h)))
