"""Escape asymptotics and the exact walled-basin escape times (docs/theory.md §4).

* `kramers_escape_time`, `power_law_escape_time`: Laplace asymptotics for the
  landscapes of `sdn.landscapes` (Kramers for constant noise; polynomial in the barrier
  for the power-law dynamic).
* `walled_basin_escape_times`: exact "sharp versus flat" escape times by quadrature.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from sdn._checks import check_positive
from sdn.landscapes import DoubleWell, QuadraticBasin
from sdn.theory._common import Array, ArrayLike, _float
from sdn.theory.quadrature import _check_result, _log_mfpt_with_error, _validate_interval


def _diffusion(learning_rate, batch_size, c):
    """`D = (η / 2b) C`."""
    return 0.5 * _float(learning_rate) / _float(batch_size) * c


def kramers_escape_time(
    landscape: QuadraticBasin | DoubleWell,
    learning_rate: ArrayLike,
    batch_size: ArrayLike,
    sigma_g: ArrayLike,
    *,
    log: bool = False,
) -> Array:
    """Kramers asymptotics for constant noise `C = σ_g`, `D = η σ_g / (2b)` (docs/theory.md §4).

    * `DoubleWell` (time from one minimum to the other, across the smooth saddle):
      `τ ≈ 2π / sqrt(h_a h_s) · exp(ΔL / D)`.
    * `QuadraticBasin` (time from the minimum to either absorbing wall; Laplace's method
      at the wall, where `s(y) = exp(h y²/2D)` peaks, instead of at a saddle):
      `τ ≈ (1 / 2h) sqrt(π D / ΔL) · exp(ΔL / D)`.

    Regime of validity: `ΔL / D ≫ 1`; the relative error is `O(D / ΔL)` (for the walled
    basin `≈ D / 2ΔL`). Strongly anharmonic wells (e.g. `double_well` with `h_s > h_a`)
    reach that regime only at larger `ΔL / D`. `log=True` returns `log τ` (no overflow).

    Example:
      >>> from sdn.landscapes import quadratic_basin
      >>> round(float(kramers_escape_time(quadratic_basin(1.0, 1.0), 0.1, 1, 1.0)))
      6173
    """
    check_positive("learning_rate", learning_rate)
    check_positive("batch_size", batch_size)
    check_positive("sigma_g", sigma_g)
    d = _diffusion(learning_rate, batch_size, _float(sigma_g))
    dl = landscape.barrier
    if isinstance(landscape, DoubleWell):
        pref = 2.0 * jnp.pi / jnp.sqrt(landscape.curvature_min * landscape.curvature_saddle)
    elif isinstance(landscape, QuadraticBasin):
        pref = jnp.sqrt(jnp.pi * d / dl) / (2.0 * landscape.curvature)
    else:
        raise TypeError(
            f"landscape must be a QuadraticBasin or DoubleWell, got {type(landscape).__name__}"
        )
    log_tau = jnp.log(pref) + dl / d
    return log_tau if log else jnp.exp(log_tau)


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(96)


def _power_law_exponent_double_well(well: DoubleWell, kappa_scaled, sg_scaled):
    """`ΔΨ = ∫_a^s L'(x)/D(x) dx` by 96-point Gauss–Legendre (integrand is smooth)."""
    a, s = well.minimum, well.saddle
    x = 0.5 * (s - a) * jnp.asarray(_GL_NODES) + 0.5 * (s + a)
    dx = x - a
    integrand = well.grad(x) / (sg_scaled * (1.0 + kappa_scaled * dx * dx))
    return 0.5 * (s - a) * jnp.sum(jnp.asarray(_GL_WEIGHTS) * integrand)


def power_law_escape_time(
    landscape: QuadraticBasin | DoubleWell,
    learning_rate: ArrayLike,
    batch_size: ArrayLike,
    sigma_g: ArrayLike,
    sigma_h: ArrayLike,
    *,
    log: bool = False,
) -> Array:
    """Laplace asymptotics of the power-law dynamic's escape time (docs/theory.md §4).

    Noise `C(x) = σ_g + σ_H (x − a)²` around the starting minimum `a`,
    `D = (η/2b) C`, `κ = σ_H/σ_g`, `β = b h_a / (η σ_H)`; the PLD law is
    `τ ≈ prefactor · (1 + 2κΔL/h_a)^β`, polynomial in `ΔL`.

    * `QuadraticBasin` (absorbing walls at `±x_b`, `q = κ x_b² = 2κΔL/h`): exactly
      `τ = M · ∫_0^{x_b} (1 + κ y²)^β dy` with `M = ∫_0^∞ m = (2b/ησ_g) sqrt(π/κ)
      Γ(β + ½) / (2 Γ(β + 1))` up to the mass beyond the wall; Laplace's method at the
      wall in the variable `ln(1 + κ y²)` gives
      `τ ≈ M x_b (1 + q)^(β+1) / ((2β + 1) q − 1)`.
      Valid when `(2β + 1) q ≫ 1` (a high effective barrier `β ln(1 + q)`); the error
      vanishes both as `β → ∞` at fixed `q` and as `q → ∞` at fixed `β`. As `σ_H → 0` it
      becomes `kramers_escape_time` times `1/(1 − D/2ΔL)` (Kramers with its first
      correction).
    * `DoubleWell` (minimum `a = −d` to the other minimum across the saddle `s = 0`):
      `τ ≈ 2π sqrt(D(s)/D(a)) / sqrt(h_a h_s) · exp(ΔΨ)`, `ΔΨ = ∫_a^s L'/D`, computed by
      Gauss–Legendre. Were `L = h_a (x − a)²/2` up to the saddle, `exp ΔΨ` would be
      `(1 + κ (s − a)²)^β = (1 + 2κΔL/h_a)^β`; the double well is not quadratic that far, so
      the exact `ΔΨ` is used. Valid when `β ≫ 1` and `ΔΨ ≫ 1` (Gaussian Laplace
      approximations at `a` and `s`); relative error `O(1/β + 1/ΔΨ)`.

    `log=True` returns `log τ`.

    Example:
      >>> from sdn.landscapes import quadratic_basin
      >>> round(float(power_law_escape_time(quadratic_basin(1.0, 1.0), 0.1, 1, 1.0, 2.0)))
      190
    """
    for name, value in [
        ("learning_rate", learning_rate),
        ("batch_size", batch_size),
        ("sigma_g", sigma_g),
        ("sigma_h", sigma_h),
    ]:
        check_positive(name, value)
    eta, b, sg, sh = (_float(v) for v in (learning_rate, batch_size, sigma_g, sigma_h))
    kappa = sh / sg
    if isinstance(landscape, QuadraticBasin):
        h, xb = landscape.curvature, landscape.wall
        beta = b * h / (eta * sh)
        q = kappa * xb**2
        log_m = (
            jnp.log(2.0 * b / (eta * sg))
            + 0.5 * jnp.log(jnp.pi / kappa)
            + gammaln(beta + 0.5)
            - gammaln(beta + 1.0)
            - jnp.log(2.0)
        )
        log_outer = (
            jnp.log(xb) + (beta + 1.0) * jnp.log1p(q) - jnp.log((2.0 * beta + 1.0) * q - 1.0)
        )
        log_tau = log_m + log_outer
        return log_tau if log else jnp.exp(log_tau)
    if isinstance(landscape, DoubleWell):
        scale = 0.5 * eta / b
        d_a = scale * sg
        d_s = scale * (sg + sh * landscape.half_width**2)
        d_psi = _power_law_exponent_double_well(landscape, kappa, scale * sg)
        pref = (
            2.0
            * jnp.pi
            * jnp.sqrt(d_s / d_a)
            / jnp.sqrt(landscape.curvature_min * landscape.curvature_saddle)
        )
        log_tau = jnp.log(pref) + d_psi
        return log_tau if log else jnp.exp(log_tau)
    raise TypeError(
        f"landscape must be a QuadraticBasin or DoubleWell, got {type(landscape).__name__}"
    )


# ---------------------------------------------------------------------------------------
# Sharp versus flat (docs/theory.md §4)
# ---------------------------------------------------------------------------------------


class WalledBasinEscapeTimes(NamedTuple):
    """Exact mean escape times from the walled basin; fields broadcast like the inputs."""

    power_law: Array
    langevin: Array


def walled_basin_escape_times(
    curvature: ArrayLike,
    barrier: ArrayLike,
    learning_rate: ArrayLike,
    batch_size: ArrayLike,
    sigma_g: ArrayLike,
    var_u: ArrayLike,
    *,
    n_grid: int = 2049,
) -> WalledBasinEscapeTimes:
    """Exact escape times from `L = h x²/2` with walls at `±x_b`, `x_b = sqrt(2ΔL/h)`.

    docs/theory.md §4, "sharp versus flat": the finite-sum family `h_i = h u_i` has
    `σ_H = h² Var(u)`; `σ_g` is held fixed. PLD: `σ² = (η/b)(σ_g + σ_H x²)`;
    Langevin: `σ² = η σ_g / b`; both start at the minimum, both walls absorbing. Computed
    by `mean_first_passage_time`'s quadrature (reflecting at 0 by symmetry), vectorised
    over the broadcast inputs; jittable (the grid check is skipped when traced).

    Example:
      >>> t = walled_basin_escape_times(1.0, 0.5, 0.1, 1, 1.0, 2.0)
      >>> round(float(t.power_law)), round(float(t.langevin))
      (192, 6546)
    """
    for name, value in [
        ("curvature", curvature),
        ("barrier", barrier),
        ("learning_rate", learning_rate),
        ("batch_size", batch_size),
        ("sigma_g", sigma_g),
    ]:
        check_positive(name, value)
    check_positive("var_u", var_u, allow_zero=True)

    def one(h, dl, eta, b, sg, vu):
        xb = jnp.sqrt(2.0 * dl / h)
        sh = h * h * vu
        pld = _log_mfpt_with_error(
            lambda x: -h * x, lambda x: eta / b * (sg + sh * x * x), 0.0, 0.0, xb, True, n_grid
        )[:2]
        lan = _log_mfpt_with_error(
            lambda x: -h * x, lambda x: eta / b * sg + 0.0 * x, 0.0, 0.0, xb, True, n_grid
        )[:2]
        return pld, lan

    n_grid = _validate_interval(0.0, 0.0, 1.0, n_grid)
    args = jnp.broadcast_arrays(
        *(_float(v) for v in (curvature, barrier, learning_rate, batch_size, sigma_g, var_u))
    )
    shape = args[0].shape
    (log_pld, err_pld), (log_lan, err_lan) = jax.vmap(one)(*(a.reshape(-1) for a in args))
    for log_t, err in [(log_pld, err_pld), (log_lan, err_lan)]:
        _check_result(log_t, err, (jnp.zeros(1), jnp.zeros(1), jnp.ones(1)), None, n_grid)
    return WalledBasinEscapeTimes(jnp.exp(log_pld).reshape(shape), jnp.exp(log_lan).reshape(shape))
