"""Which escape law the measured times follow: Kramers, power law or Lévy (docs/theory.md §6.7).

`rank_escape_laws` fits each law's form `log τ = a + c log h + k F(ΔL, h)` by weighted
least squares and says which fits best, or that the data cannot tell.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

ArrayLike = Any

__all__ = ["EscapeLaw", "EscapeLawFit", "EscapeLawRanking", "rank_escape_laws"]

# A rival is "within the noise" of the best law when its excess χ², divided by the best
# law's χ²/dof where that exceeds 1, is below this: Δχ² = 2 Δlog-likelihood for laws with
# the same number of free parameters, and 4 is an evidence ratio exp(2) ≈ 7.4 — the usual
# "2 σ" level.
UNDECIDED_DELTA_CHI2 = 4.0


class EscapeLaw(enum.StrEnum):
    """The verdict of `rank_escape_laws`."""

    KRAMERS = "kramers"
    POWER_LAW = "power_law"
    LEVY = "levy"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class EscapeLawFit:
    """One law's fit `log τ = a + c log h + k F`: estimates, standard errors, quality.

    `chi2_per_dof` is `χ²/(n − 3)` with the weights `1/se(log τ)²`; `rms` the unweighted
    root-mean-square residual of `log τ`. Standard errors are scaled by
    `sqrt(max(1, χ²/dof))`, so a misfit widens them.
    """

    k: float
    k_se: float
    a: float
    a_se: float
    c: float
    c_se: float
    chi2: float
    dof: int
    chi2_per_dof: float
    rms: float


@dataclass(frozen=True)
class EscapeLawRanking:
    """`best`: the law that fits best, or `UNDECIDED`; `fits`: each law's `EscapeLawFit`.

    `delta_chi2[name]` is each law's excess over the best one, divided by the best
    law's `χ²/dof` where that exceeds 1 (the criterion of `rank_escape_laws`).
    """

    best: EscapeLaw
    fits: dict[str, EscapeLawFit]
    delta_chi2: dict[str, float]


def _vector(name: str, value: ArrayLike, n: int | None = None) -> np.ndarray:
    x = np.asarray(value, dtype=float).reshape(-1)
    if n is not None and x.size == 1:
        x = np.full(n, float(x[0]))
    if n is not None and x.size != n:
        raise ValueError(f"{name} must have {n} values (one per measurement), got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def _weighted_fit(f: np.ndarray, log_h: np.ndarray, y: np.ndarray, se: np.ndarray):
    design = np.stack([np.ones_like(y), log_h, f], axis=1)
    w = 1.0 / se
    coef, *_ = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)
    resid = y - design @ coef
    chi2 = float(np.sum((resid * w) ** 2))
    dof = y.size - 3
    cov = np.linalg.pinv((design * w[:, None]).T @ (design * w[:, None]))
    inflate = max(1.0, chi2 / dof)
    err = np.sqrt(np.diag(cov) * inflate)
    return EscapeLawFit(
        k=float(coef[2]),
        k_se=float(err[2]),
        a=float(coef[0]),
        a_se=float(err[0]),
        c=float(coef[1]),
        c_se=float(err[1]),
        chi2=chi2,
        dof=dof,
        chi2_per_dof=chi2 / dof,
        rms=float(np.sqrt(np.mean(resid**2))),
    )


def rank_escape_laws(
    barrier: ArrayLike,
    curvature: ArrayLike,
    mean_time: ArrayLike,
    sem: ArrayLike,
    *,
    lr: float,
    batch_size: float,
    sigma_g: ArrayLike,
    sigma_h: ArrayLike,
    alpha: float | None = None,
) -> EscapeLawRanking:
    """Fit the rival escape laws to mean escape times over barriers `ΔL` and curvatures `h`.

    Each law's form, with a free prefactor `a + c log h` and a free multiplier `k`
    (`k ≈ 1` where the law's exponent holds), docs/theory.md §6.7:

    * Kramers: `F = 2 b ΔL / (η σ_g)`, exponential in the barrier;
    * power law: `F = (b h / (η σ_H)) log(1 + 2 σ_H ΔL / (h σ_g))`, polynomial in it;
    * Lévy (only if `alpha` is given): `F = (α/2) log(2ΔL/h)`, the width alone.

    `log τ` is fitted by weighted least squares with `se(log τ) = sem / mean_time`.
    Choosing: the law of least `χ²` is the best; a rival whose `χ²` exceeds it by less than
    4 (after dividing by the best law's `χ²/dof` where that exceeds 1, so that a form that
    is only asymptotically right, or errors that are underestimated, do not make every
    small difference decisive) is within the noise, and the verdict is `UNDECIDED`.
    Where `σ_H = 0` everywhere the power law is Kramers' law: it is not fitted, and a
    Kramers-like verdict reads `KRAMERS`.

    Args:
      barrier: `ΔL > 0` per measurement.
      curvature: `h > 0` per measurement.
      mean_time: mean escape times `τ > 0`.
      sem: their standard errors `> 0`.
      lr: the learning rate `η`.
      batch_size: `b`.
      sigma_g: the gradient-noise variance `σ_g` at the minimum (scalar or per point).
      sigma_h: the curvature-noise variance `σ_H ≥ 0` (scalar or per point).
      alpha: the stable index of the noise, `0 < α ≤ 2`; `None` leaves the Lévy law out.

    Returns:
      An `EscapeLawRanking`.

    Example:
      >>> import numpy as np
      >>> dl = np.tile([0.5, 1.0, 1.5, 2.0], 2); h = np.repeat([1.0, 2.0], 4)
      >>> t = np.exp(1.0 - np.log(h) + 20 * dl)  # exactly Kramers' law at η = 0.1
      >>> r = rank_escape_laws(dl, h, t, 0.02 * t, lr=0.1, batch_size=1, sigma_g=1.0,
      ...                      sigma_h=h**2, alpha=1.5)
      >>> r.best.value, round(r.fits["kramers"].k, 3)
      ('kramers', 1.0)
    """
    dl = _vector("barrier", barrier)
    n = dl.size
    if n < 4:
        raise ValueError(f"need at least 4 measurements for 3 free parameters, got {n}")
    h = _vector("curvature", curvature, n)
    tau = _vector("mean_time", mean_time, n)
    se = _vector("sem", sem, n)
    sg = _vector("sigma_g", sigma_g, n)
    sh = _vector("sigma_h", sigma_h, n)
    for name, v in [("barrier", dl), ("curvature", h), ("mean_time", tau), ("sem", se)]:
        if np.any(v <= 0):
            raise ValueError(f"{name} must be positive, got {v}")
    if np.any(sg <= 0) or np.any(sh < 0):
        raise ValueError(f"need sigma_g > 0 and sigma_h >= 0, got {sg}, {sh}")
    if lr <= 0 or batch_size <= 0:
        raise ValueError(f"lr and batch_size must be positive, got {lr}, {batch_size}")
    if alpha is not None and not 0 < alpha <= 2:
        raise ValueError(f"alpha must lie in (0, 2], got {alpha}")
    y, se_y, log_h = np.log(tau), se / tau, np.log(h)
    forms = {"kramers": 2 * batch_size * dl / (lr * sg)}
    if np.any(sh > 0):
        safe = np.where(sh > 0, sh, 1.0)
        pl = batch_size * h / (lr * safe) * np.log1p(2 * safe * dl / (h * sg))
        forms["power_law"] = np.where(sh > 0, pl, forms["kramers"])
    if alpha is not None:
        forms["levy"] = 0.5 * alpha * np.log(2 * dl / h)
    fits = {name: _weighted_fit(f, log_h, y, se_y) for name, f in forms.items()}
    best_name = min(fits, key=lambda k: fits[k].chi2)
    scale = max(1.0, fits[best_name].chi2_per_dof) if n > 3 else 1.0
    delta = {name: (fit.chi2 - fits[best_name].chi2) / scale for name, fit in fits.items()}
    close = [name for name in fits if name != best_name and delta[name] < UNDECIDED_DELTA_CHI2]
    best = EscapeLaw.UNDECIDED if close else EscapeLaw(best_name)
    return EscapeLawRanking(best=best, fits=fits, delta_chi2=delta)
