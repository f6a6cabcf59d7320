"""Mean exit times of symmetric α-stable (Lévy-flight) dynamics (docs/theory.md §6.7).

The rival of the Gaussian escape laws in which the time is set by the basin's width, not
its height. `L` is the symmetric α-stable Lévy process with `E e^{iuL_t} = e^{−t|u|^α}`;
`c L` is what `sdn.noise.alpha_stable(α, c)` drives an SDE of scale 1 with (its
increment over `dt` is `c dt^{1/α} S`, `E e^{iuS} = e^{−|u|^α}`).

* `stable_exit_time`: the exact mean exit time of `X = x0 + c L` from `(−r, r)`
  (no drift), Getoor (1961).
* `stable_escape_time_asymptotic`: with a drift `dX = −U'(X) dt + c dL` whose minimum
  `x*` lies in the basin `(lo, hi)`, the small-noise law of Imkeller & Pavlyukevich
  (2006): the exit is one large jump, at rate the Lévy measure of the jumps that leave
  the basin from `x*`.
* `stable_levy_density`, `stable_levy_tail`: that Lévy measure,
  `ν(dy) = C_α |y|^{−1−α} dy` with `C_α = Γ(1+α) sin(πα/2)/π`, and its tail
  `ν(|y| > u) = 2 C_α u^{−α} / α`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from sdn._checks import check_positive, is_concrete
from sdn.theory._common import Array, ArrayLike, _float


def _check_alpha(alpha: ArrayLike, upper_open: bool) -> None:
    if not is_concrete(alpha):
        return
    a = np.asarray(alpha, dtype=float)
    bad = ~np.isfinite(a) | (a <= 0) | ((a >= 2) if upper_open else (a > 2))
    if np.any(bad):
        interval = "(0, 2)" if upper_open else "(0, 2]"
        raise ValueError(f"alpha must lie in {interval}, got alpha={alpha}")


def stable_levy_density(y: ArrayLike, alpha: ArrayLike) -> Array:
    """Lévy density `C_α |y|^{−1−α}` of `L` with `E e^{iuL_t} = e^{−t|u|^α}`, `0 < α < 2`.

    `C_α = Γ(1+α) sin(πα/2) / π` follows from `|u|^α = ∫ (1 − cos uy) ν(dy)` and
    `∫_0^∞ (1 − cos z) z^{−1−α} dz = π / (2 Γ(1+α) sin(πα/2))`. For `c L` the density is
    `c^α` times this.

    Example (α = 1, the Cauchy process: `1/(π y²)`):
      >>> round(float(stable_levy_density(2.0, 1.0) * jnp.pi * 4), 6)
      1.0
    """
    _check_alpha(alpha, upper_open=True)
    a, y = _float(alpha), jnp.abs(_float(y))
    log_c = gammaln(1.0 + a) + jnp.log(jnp.sin(0.5 * jnp.pi * a)) - jnp.log(jnp.pi)
    return jnp.exp(log_c - (1.0 + a) * jnp.log(y))


def stable_levy_tail(u: ArrayLike, alpha: ArrayLike) -> Array:
    """`ν(|y| > u) = 2 C_α u^{−α} / α`: the rate of jumps of `L` longer than `u > 0`.

    Example (α = 1: `2/(π u)`):
      >>> round(float(stable_levy_tail(2.0, 1.0) * jnp.pi), 6)
      1.0
    """
    check_positive("u", u)
    a, u = _float(alpha), _float(u)
    return 2.0 * u * stable_levy_density(u, alpha) / a


def stable_exit_time(x0: ArrayLike, half_width: ArrayLike, alpha: ArrayLike, c: ArrayLike) -> Array:
    """Exact mean exit time of `X = x0 + c L` from `(−r, r)`: `(r² − x0²)^{α/2} / (c^α Γ(1+α))`.

    Getoor (1961): for the symmetric α-stable process with `E e^{iuL_t} = e^{−t|u|^α}`,
    `0 < α ≤ 2`, no drift, started at `x0` in `[−r, r]`. At `α = 2`, `c L` is a Brownian
    motion of variance `2c²` per unit time, and the formula is `(r² − x0²)/(2c²)`. This is
    the process `sdn.noise.alpha_stable(alpha, c)` drives an `sdn.SDE` of drift 0 and
    scale 1 with. Pure, jittable, elementwise over broadcast arguments.

    Args:
      x0: start, in `[−r, r]`.
      half_width: `r > 0`, the interval is `(−r, r)`.
      alpha: the stable index, `0 < α ≤ 2`.
      c: `c > 0`, the scale of `sdn.noise.alpha_stable`.

    Returns:
      `E τ`, of the default float dtype.

    Example (α = 2, c = 1/√2: Brownian motion of unit variance, `T = r² − x0²`):
      >>> round(float(stable_exit_time(0.5, 1.0, 2.0, 2**-0.5)), 6)
      0.75
    """
    _check_alpha(alpha, upper_open=False)
    check_positive("half_width", half_width)
    check_positive("c", c)
    if is_concrete(x0, half_width):
        x_, r_ = np.asarray(x0, dtype=float), np.asarray(half_width, dtype=float)
        if np.any(np.abs(x_) > r_) or not np.all(np.isfinite(x_)):
            raise ValueError(f"x0 must lie in [−half_width, half_width], got x0={x0}")
    x, r, a, c = (_float(v) for v in (x0, half_width, alpha, c))
    log_t = 0.5 * a * jnp.log((r - x) * (r + x)) - a * jnp.log(c) - gammaln(1.0 + a)
    return jnp.exp(log_t)


def stable_escape_time_asymptotic(
    lo: ArrayLike,
    hi: ArrayLike,
    minimum: ArrayLike,
    alpha: ArrayLike,
    c: ArrayLike,
) -> Array:
    """Small-noise mean escape time of `dX = −U'(X) dt + c dL` from the basin `(lo, hi)`.

    Imkeller & Pavlyukevich (2006): for a potential with one minimum `x*` in `(lo, hi)`
    and noise `c L` with `c → 0`, the process stays near `x*` and leaves in one jump
    longer than the distance to the basin's edge, so the exit time is asymptotically
    exponential with mean `1 / λ`,

        λ = c^α ν((−∞, lo − x*) ∪ (hi − x*, ∞)) = (c^α C_α / α) ((x* − lo)^{−α} + (hi − x*)^{−α}),

    `C_α = Γ(1+α) sin(πα/2)/π` for `E e^{iuL_t} = e^{−t|u|^α}` (`stable_levy_density`). For
    the symmetric walled basin `(−r, r)`, `x* = 0`: `E τ ≈ α r^α / (2 C_α c^α)`, set by the
    width alone; the curvature of `U` enters only the correction, whose relative size
    vanishes as `c → 0`. Both this and the drift-free `stable_exit_time` grow like
    `(r/c)^α`; the drift lengthens the time from the minimum by the factor
    `απ / (2 sin(πα/2))` (2.22 at α = 1.2, 3.33 at α = 1.5), since only jumps past the
    edge leave.

    Args:
      lo, hi: the basin's edges, `lo < minimum < hi`.
      minimum: `x*`, the potential's minimum.
      alpha: the stable index, `0 < α < 2`.
      c: `c > 0`, the noise scale of `sdn.noise.alpha_stable` (the `ε` of the paper).

    Returns:
      `1 / λ`, of the default float dtype.

    Example (α = 1.5, basin (−1, 1), c = 0.1):
      >>> round(float(stable_escape_time_asymptotic(-1.0, 1.0, 0.0, 1.5, 0.1)), 2)
      79.27
    """
    _check_alpha(alpha, upper_open=True)
    check_positive("c", c)
    if is_concrete(lo, hi, minimum):
        lo_, hi_, m_ = (np.asarray(v, dtype=float) for v in (lo, hi, minimum))
        if not np.all((lo_ < m_) & (m_ < hi_)):
            raise ValueError(f"need lo < minimum < hi, got lo={lo}, minimum={minimum}, hi={hi}")
    lo, hi, m, a, c = (_float(v) for v in (lo, hi, minimum, alpha, c))
    jumps_out = 0.5 * (stable_levy_tail(m - lo, a) + stable_levy_tail(hi - m, a))
    return 1.0 / (c**a * jumps_out)
