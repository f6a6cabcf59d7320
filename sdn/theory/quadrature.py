"""Exact mean first-passage time of a 1-D diffusion from an interval (docs/theory.md §4).

`mean_first_passage_time` and `log_mean_first_passage_time`: log-space trapezoid
quadrature with Richardson extrapolation and an error estimate; jittable and vmappable.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_int, is_concrete
from sdn.theory._common import Array, ArrayLike

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
