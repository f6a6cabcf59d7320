"""Closed forms and exact quadratures for the dynamics of docs/theory.md §3–4.

* `power_law_stationary`, `gaussian_stationary`: stationary laws of the power-law dynamic
  (a scaled Student-t) and of constant-noise Langevin (a Gaussian), docs/theory.md §3.
* `mean_first_passage_time`: the exact mean exit time of a 1-D diffusion from an
  interval, by log-space quadrature on a grid; jittable and vmappable (docs/theory.md §4).
* `kramers_escape_time`, `power_law_escape_time`: the Laplace asymptotics of docs/theory.md §4
  for the landscapes of `sdn.landscapes`; `walled_basin_escape_times`: the exact
  "sharp versus flat" escape times.

Conventions: SGD with learning rate `η` and batch size `b` near a minimum is
`dx = −L'(x) dt + sqrt(2 D(x)) dB` with `D(x) = (η / 2b) C(x)` (docs/theory.md §2–3), so the
diffusion coefficient of the generator `σ² = 2 D = η C / b`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, gammaln

from sdn._checks import check_int, check_positive, is_concrete
from sdn.landscapes import DoubleWell, QuadraticBasin

Array = jax.Array
ArrayLike = Any

__all__ = [
    "GaussianStationary",
    "StudentTStationary",
    "WalledBasinEscapeTimes",
    "gaussian_stationary",
    "kramers_escape_time",
    "log_mean_first_passage_time",
    "mean_first_passage_time",
    "power_law_escape_time",
    "power_law_stationary",
    "walled_basin_escape_times",
]


def _float(x: ArrayLike) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


# ---------------------------------------------------------------------------------------
# Stationary laws (docs/theory.md §3)
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Exact mean first-passage time (docs/theory.md §4)
# ---------------------------------------------------------------------------------------

_MIN_GRID = 33


def _logaddexp(a: Array, b: Array) -> Array:
    """`jnp.logaddexp` whose gradient is 0, not NaN, where both arguments are −inf.

    Padded grid levels and empty prefix sums give `logaddexp(−inf, −inf)`; its value is
    right (−inf) but its derivative is 0/0, which would make `jax.grad` of the passage
    time NaN. The inner `where` keeps that point out of the backward pass.
    """
    both = (a == -jnp.inf) & (b == -jnp.inf)
    out = jnp.logaddexp(jnp.where(both, 0.0, a), jnp.where(both, 0.0, b))
    return jnp.where(both, -jnp.inf, out)


def _trapezoid_terms(log_f: Array, log_dx: Array) -> Array:
    """log of the trapezoid areas `dx (f_k + f_{k+1}) / 2` from `log f` and `log dx`."""
    return log_dx - jnp.log(2.0) + _logaddexp(log_f[:-1], log_f[1:])


def _cumulative(op, x: Array, fill: float) -> Array:
    """Inclusive prefix scan of a 1-D array (`op` = add or logaddexp).

    Two-level blocking: about `sqrt(n)` blocks of about `sqrt(n)` values; a sequential
    scan runs within all blocks at once, a second one over the block totals. Round-off
    grows like `n^(1/4)` (a plain sequential scan: `n^(1/2)`), and the compiled program
    stays small (a tree scan over thousands of nodes takes seconds to compile).
    """
    n = x.shape[0]
    m = max(1, int(np.ceil(np.sqrt(n))))
    n_blocks = -(-n // m)
    blocks = jnp.concatenate([x, jnp.full((n_blocks * m - n,), fill, x.dtype)])
    blocks = blocks.reshape(n_blocks, m)

    def step(carry, v):
        carry = op(carry, v)
        return carry, carry

    init = jnp.full((n_blocks,), fill, x.dtype)
    _, within = jax.lax.scan(step, init, blocks.T)  # (m, n_blocks)
    _, totals = jax.lax.scan(step, init[0], within[-1])
    before = jnp.concatenate([init[:1], totals[:-1]])
    return op(before[None, :], within).T.reshape(-1)[:n]


def _prepend(value: float, x: Array) -> Array:
    return jnp.concatenate([jnp.full((1,), value, x.dtype), x])


def _log_mfpt_one_level(y, mu, sig2, k, reflect_lo: bool) -> Array:
    """log MFPT from node `k` of the grid `y`, trapezoid quadrature in log space.

    Repeated end nodes (zero-width intervals) contribute nothing, so coarser grids can be
    padded to a common length and all levels computed by one `vmap`.
    """
    dx = jnp.diff(y)
    # Padding gives dx = 0, whose log is −inf; the inner `where` keeps that out of the
    # backward pass (d log(dx)/d dx at 0 would make every gradient NaN).
    pad = dx <= 0
    log_dx = jnp.where(pad, -jnp.inf, jnp.log(jnp.where(pad, 1.0, dx)))
    idx = jnp.arange(dx.shape[0])
    r = 2.0 * mu / sig2
    # φ = log s = −∫ 2μ/σ², the log of the scale density.
    phi = -_prepend(0.0, _cumulative(jnp.add, 0.5 * dx * (r[:-1] + r[1:]), 0.0))
    log_m = jnp.log(2.0) - jnp.log(sig2) - phi  # speed density m = 2/(σ² s)

    def cum(log_f):
        return _prepend(
            -jnp.inf, _cumulative(_logaddexp, _trapezoid_terms(log_f, log_dx), -jnp.inf)
        )

    def integral(log_f, mask):
        return jax.nn.logsumexp(jnp.where(mask, _trapezoid_terms(log_f, log_dx), -jnp.inf))

    if reflect_lo:
        # T(x0) = ∫_{x0}^{c} s(y) M(y) dy,  M(y) = ∫_a^y m.
        return integral(phi + cum(log_m), idx >= k)
    # Two absorbing ends: T(x) = u(x) ∫_x^c (S_c − S) m + (1 − u(x)) ∫_a^x S m,
    # S(y) = ∫_a^y s, S_c − S(y) = ∫_y^c s, u = S(x)/S_c.
    log_s_lo = cum(phi)
    rev = _trapezoid_terms(phi, log_dx)[::-1]
    log_s_hi = _prepend(-jnp.inf, _cumulative(_logaddexp, rev, -jnp.inf))[::-1]
    log_total = log_s_lo[-1]
    left = integral(log_s_lo + log_m, idx < k)
    right = integral(log_s_hi + log_m, idx >= k)
    return _logaddexp(log_s_hi[k] - log_total + left, log_s_lo[k] - log_total + right)


def _log_mfpt_levels(y, mu, sig2, j: int, reflect_lo: bool, strides=(1, 2, 4)) -> Array:
    """`_log_mfpt_one_level` on `y[::st]` for each stride, padded and vmapped."""
    n = y.shape[0]

    def level(v, st):
        v = v[::st]
        return jnp.concatenate([v, jnp.full((n - v.shape[0],), v[-1], v.dtype)])

    stack = [jnp.stack([level(v, st) for st in strides]) for v in (y, mu, sig2)]
    ks = jnp.array([j // st for st in strides])
    return jax.vmap(_log_mfpt_one_level, in_axes=(0, 0, 0, 0, None))(*stack, ks, reflect_lo)


def _richardson(log_fine: Array, log_coarse: Array) -> Array:
    """log of `(4 T_fine − T_coarse)/3` for trapezoid errors `∝ h²`."""
    ratio = jnp.exp(log_coarse - log_fine)
    out = log_fine + jnp.log((4.0 - ratio) / 3.0)
    return jnp.where(jnp.isfinite(log_fine), out, log_fine)


@jax.jit(static_argnames=("n_grid", "reflect_lo"))
def _log_mfpt_core(y, mu, sig2, n_grid, reflect_lo):
    logs = _log_mfpt_levels(y, mu, sig2, n_grid - 1, reflect_lo)
    r1 = _richardson(logs[0], logs[1])
    r2 = _richardson(logs[1], logs[2])
    # Richardson removes the h² term; the difference of two extrapolations (halving h)
    # over 3 bounds the error left in r1 (it is 15x that error for smooth integrands, 3x
    # where only the h² term converges).
    err = jnp.where(jnp.isfinite(r1), jnp.abs(jnp.expm1(r2 - r1)) / 3.0, 0.0)
    return r1, err


def _log_mfpt_with_error(drift, diffusion_sq, x0, lo, hi, reflect_lo, n_grid):
    dtype = jnp.result_type(float)
    x0, lo, hi = (jnp.asarray(v, dtype=dtype) for v in (x0, lo, hi))
    t = jnp.linspace(0.0, 1.0, n_grid, dtype=dtype)
    # x0 is a node: [lo, x0] and [x0, hi] each get n_grid nodes.
    y = jnp.concatenate([lo + (x0 - lo) * t, (x0 + (hi - x0) * t)[1:]])
    mu = jnp.broadcast_to(drift(y), y.shape).astype(dtype)
    sig2 = jnp.broadcast_to(diffusion_sq(y), y.shape).astype(dtype)
    r1, err = _log_mfpt_core(y, mu, sig2, n_grid, reflect_lo)
    return r1, err, (y, mu, sig2)


def _validate_interval(x0, lo, hi, n_grid):
    n_grid = check_int("n_grid", n_grid, minimum=_MIN_GRID)
    n_grid = 4 * ((n_grid - 1 + 3) // 4) + 1  # 4m + 1: the grid halves twice exactly
    if is_concrete(x0, lo, hi):
        lo_, hi_, x0_ = (np.asarray(v, dtype=float) for v in (lo, hi, x0))
        if not (np.all(np.isfinite(lo_)) and np.all(np.isfinite(hi_))):
            raise ValueError(f"lo and hi must be finite, got lo={lo_}, hi={hi_}")
        if np.any(lo_ >= hi_):
            raise ValueError(f"need lo < hi, got lo={lo_}, hi={hi_}")
        if np.any(x0_ < lo_) or np.any(x0_ > hi_) or not np.all(np.isfinite(x0_)):
            raise ValueError(f"x0 must lie in [lo, hi] = [{lo_}, {hi_}], got x0={x0_}")
    return n_grid


def _check_result(log_t, err, grid, rtol, n_grid):
    if not is_concrete(log_t, err, grid):
        return
    y, mu, sig2 = (np.asarray(v) for v in grid)
    if not np.all(sig2 > 0) or not np.all(np.isfinite(sig2)):
        bad = float(y[np.argmin(np.where(np.isfinite(sig2), sig2, -np.inf))])
        raise ValueError(f"diffusion_sq must be finite and positive on [lo, hi]; fails at x={bad}")
    if not np.all(np.isfinite(mu)):
        bad = float(y[np.argmax(~np.isfinite(mu))])
        raise ValueError(f"drift must be finite on [lo, hi]; fails at x={bad}")
    if np.any(np.isnan(np.asarray(log_t))) or np.any(np.isnan(np.asarray(err))):
        # Richardson's (4 T_h − T_2h)/3 needs T_2h/T_h < 4; past that the h² error model
        # does not hold on this grid.
        raise ValueError(
            f"n_grid={n_grid} is too coarse: the Richardson ratio check failed (the estimate "
            "on the grid halved is more than 4 times the fine one, so the h² error model "
            "does not hold); increase n_grid"
        )
    if rtol is None:
        rtol = 1e-7 if np.asarray(log_t).dtype == np.float64 else 1e-4
    e = float(np.max(np.asarray(err)))
    if e > rtol:
        raise ValueError(
            f"n_grid={n_grid} is too coarse: estimated relative error {e:.2e} exceeds "
            f"rtol={rtol:.1e}; increase n_grid"
        )


def log_mean_first_passage_time(
    drift: Callable[[Array], Array],
    diffusion_sq: Callable[[Array], Array],
    x0: ArrayLike,
    lo: ArrayLike,
    hi: ArrayLike,
    reflect_lo: bool = False,
    *,
    n_grid: int = 2049,
    rtol: float | None = None,
) -> Array:
    """`log T(x0)`, the log of `mean_first_passage_time`; finite even where `T` overflows.

    Same arguments as `mean_first_passage_time`. Use it for barriers with `log T` beyond
    the float range (about 88 in float32).

    Example:
      >>> float(log_mean_first_passage_time(lambda x: 0 * x, lambda x: 1 + 0 * x, 0.5, 0, 1))
      -1.386...
    """
    n_grid = _validate_interval(x0, lo, hi, n_grid)
    log_t, err, grid = _log_mfpt_with_error(
        drift, diffusion_sq, x0, lo, hi, bool(reflect_lo), n_grid
    )
    _check_result(log_t, err, grid, rtol, n_grid)
    return log_t


def mean_first_passage_time(
    drift: Callable[[Array], Array],
    diffusion_sq: Callable[[Array], Array],
    x0: ArrayLike,
    lo: ArrayLike,
    hi: ArrayLike,
    reflect_lo: bool = False,
    *,
    n_grid: int = 2049,
    rtol: float | None = None,
) -> Array:
    """Exact mean exit time of `dX = μ(X) dt + σ(X) dB` from `(lo, hi)` started at `x0`.

    docs/theory.md §4. With `s(y) = exp(−∫ 2μ/σ²)` and `m = 2/(σ² s)`:

    * `reflect_lo=True` (`lo` reflecting, `hi` absorbing):
      `T(x0) = ∫_{x0}^{hi} s(y) ∫_{lo}^{y} m(z) dz dy`;
    * `reflect_lo=False` (both absorbing), with `S(y) = ∫_{lo}^{y} s`, `u = S(x0)/S(hi)`:
      `T(x0) = u ∫_{x0}^{hi} (S(hi) − S) m + (1 − u) ∫_{lo}^{x0} S m`.

    Numerics: the trapezoid rule on `[lo, x0]` and `[x0, hi]` with `n_grid` nodes each,
    every integral summed in log space (`log s` is never exponentiated alone, so barriers
    `∫ 2μ/σ²` of several hundred do not overflow), then Richardson extrapolation over the
    grid halved. An error estimate compares two extrapolations (`n_grid` and `n_grid/2`).
    Pure and jittable; `drift` and `diffusion_sq` may close over traced parameters, so
    `vmap` gives whole parameter sweeps in one compiled call.

    Args:
      drift: `μ(x)`, elementwise on an array of positions.
      diffusion_sq: `σ²(x) > 0` (for SGD, `σ² = η C(x) / b`).
      x0: start, in `[lo, hi]`.
      lo, hi: interval ends, `lo < hi`.
      reflect_lo: whether `lo` is reflecting (else absorbing).
      n_grid: nodes per sub-interval, `>= 33` (rounded up to `4m + 1`).
      rtol: maximum estimated relative quadrature error, checked on concrete results
        only (default `1e-7` in float64, `1e-4` in float32); too coarse a grid raises.

    Returns:
      `T(x0)`, a scalar of the default float dtype.

    Raises:
      ValueError: `lo >= hi`, `x0` outside `[lo, hi]`, `n_grid` too small or too coarse
        for `rtol`, `σ² ≤ 0` on the grid (concrete inputs only; skipped under tracing).

    Example (Brownian motion with `σ² = 1` on `(0, 1)`: `T = x0 (1 − x0)`):
      >>> round(float(mean_first_passage_time(lambda x: 0 * x, lambda x: 1 + 0 * x, 0.5, 0, 1)), 5)
      0.25
    """
    return jnp.exp(
        log_mean_first_passage_time(
            drift, diffusion_sq, x0, lo, hi, reflect_lo, n_grid=n_grid, rtol=rtol
        )
    )


# ---------------------------------------------------------------------------------------
# Escape asymptotics (docs/theory.md §4)
# ---------------------------------------------------------------------------------------


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
