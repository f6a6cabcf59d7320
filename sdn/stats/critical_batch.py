"""The steps–examples trade-off of large-batch training and its critical batch size.

McCandlish et al. (2018) find that the steps `S` and examples `E = B S` a run of batch
`B` needs to reach a given loss trade off as `(S/S_min − 1)(E/E_min − 1) = 1`, with the
critical batch size `B_crit = E_min/S_min` (docs/theory.md §6.8). With `E = B S` the law is

    S(B) = S_min (1 + B_crit/B) = S_min + E_min/B,

linear in `(S_min, E_min)` against `1/B`. `fit_critical_batch` fits it by weighted least
squares and gives `B_crit`, a ratio of the two coefficients, Fieller's interval.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as _sps

ArrayLike = Any

__all__ = ["CriticalBatchFit", "fit_critical_batch"]


class CriticalBatchFit(NamedTuple):
    """`S(B) = S_min + E_min/B` fitted to steps-to-target; `B_crit = E_min/S_min`.

    Attributes:
      s_min, e_min: the fitted minimum steps (infinite batch) and minimum examples
        (batch → 0); `*_ci` their confidence intervals at `level`.
      b_crit: `E_min/S_min` (infinite where `S_min ≤ 0`: no levelling-off was seen, the
        perfect-scaling law `S ∝ 1/B`); `b_crit_ci` Fieller's interval for the ratio,
        intersected with `B_crit ≥ 0` (its upper end infinite where `S_min` is not
        distinguishable from 0 at `level`).
      chi2, dof: the weighted residual sum of squares and `n − 2`; with errors given
        (`steps_sem`), `p_value` is `P(χ²_dof ≥ chi2)`, the law's goodness of fit; with
        errors estimated from the residuals it is NaN (there is nothing to test).
      rel_rms: the root-mean-square relative residual `(S − Ŝ)/Ŝ`.
      n, n_batch_sizes: points fitted and distinct batch sizes among them.
      level: the confidence level of the intervals.
    """

    s_min: float
    s_min_ci: tuple[float, float]
    e_min: float
    e_min_ci: tuple[float, float]
    b_crit: float
    b_crit_ci: tuple[float, float]
    chi2: float
    dof: int
    p_value: float
    rel_rms: float
    n: int
    n_batch_sizes: int
    level: float

    def steps_at(self, batch_size: ArrayLike) -> np.ndarray:
        """The fitted `S(B) = S_min + E_min/B`."""
        return self.s_min + self.e_min / np.asarray(batch_size, float)

    def examples_at(self, batch_size: ArrayLike) -> np.ndarray:
        """The fitted `E(B) = B S(B) = E_min + S_min B`."""
        b = np.asarray(batch_size, float)
        return self.e_min + self.s_min * b


def _positive_vector(name: str, value: ArrayLike) -> np.ndarray:
    x = np.asarray(value, dtype=float).reshape(-1)
    bad = ~np.isfinite(x) | (x <= 0)
    if np.any(bad):
        raise ValueError(f"{name} must be finite and positive, got {x[bad][:5].tolist()}")
    return x


def _fieller(a: float, c: float, vaa: float, vac: float, vcc: float, q: float):
    """The set of `ρ` with `(c − ρa)² ≤ q² Var(c − ρa)`, hulled and cut to `ρ ≥ 0`."""
    qa = a * a - q * q * vaa
    qb = a * c - q * q * vac
    qc = c * c - q * q * vcc
    disc = qb * qb - qa * qc
    if qa > 0:  # S_min is distinguishable from 0: a bounded interval
        root = math.sqrt(max(disc, 0.0))
        lo, hi = (qb - root) / qa, (qb + root) / qa
        return max(lo, 0.0), max(hi, 0.0)
    if disc <= 0 or qa == 0:
        return 0.0, math.inf
    # Downward parabola: the set is the outside of its roots r1 < r2.
    r1, r2 = sorted(((qb - math.sqrt(disc)) / qa, (qb + math.sqrt(disc)) / qa))
    return (max(r2, 0.0) if r1 < 0 else 0.0), math.inf


def fit_critical_batch(
    batch_size: ArrayLike,
    steps: ArrayLike,
    steps_sem: ArrayLike | None = None,
    *,
    level: float = 0.95,
) -> CriticalBatchFit:
    """Fit McCandlish et al.'s `S(B) = S_min (1 + B_crit/B)` to steps to a target.

    The law `(S/S_min − 1)(E/E_min − 1) = 1` (docs/theory.md §6.8) with `E = B S` is
    `S = S_min + E_min/B`, linear in `(S_min, E_min)`, fitted by weighted least squares
    against `1/B`:

    - with `steps_sem`, the weights are `1/sem²` and the errors are taken as known; the
      covariance is scaled by `max(1, χ²/dof)` (a misfit of the law widens the
      intervals, it never narrows them) and the intervals use the normal quantile;
    - without it, every point is given the same *relative* error (weights `1/Ŝ²`, `Ŝ`
      the fitted steps, by iterated reweighting), whose
      size is estimated from the residuals, and the intervals use Student's t with
      `n − 2` degrees of freedom. Pass one point per run (batch sizes repeated over
      seeds) to let the seed-to-seed spread set the errors.

    `B_crit = E_min/S_min` is a ratio of two correlated estimates; its interval is
    Fieller's (exact for jointly Gaussian estimates, and unbounded above where `S_min`
    is not distinguishable from zero), not the delta method's.

    Args:
      batch_size: `B > 0` per point (repeats allowed; at least 3 distinct values).
      steps: `S > 0`, the steps to the target at each point.
      steps_sem: optional standard errors `> 0` of `steps`.
      level: the confidence level of the intervals, in `(0, 1)`.

    Returns:
      A `CriticalBatchFit`.

    Example:
      >>> import numpy as np
      >>> b = 2.0 ** np.arange(4, 11)
      >>> fit = fit_critical_batch(b, 200 * (1 + 100 / b), np.full(7, 2.0))
      >>> round(fit.s_min, 6), round(fit.b_crit, 6), fit.b_crit_ci[0] < 100 < fit.b_crit_ci[1]
      (200.0, 100.0, True)
    """
    b = _positive_vector("batch_size", batch_size)
    s = _positive_vector("steps", steps)
    if s.size != b.size:
        raise ValueError(f"steps must have one value per batch size ({b.size}), got {s.size}")
    distinct = np.unique(b).size
    if distinct < 3:
        raise ValueError(
            f"batch_size needs at least 3 distinct values to fit S_min and E_min with a "
            f"residual, got {np.unique(b).tolist()}"
        )
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    n, dof = b.size, b.size - 2
    if steps_sem is not None:
        se = _positive_vector("steps_sem", steps_sem)
        if se.size != n:
            raise ValueError(f"steps_sem must have one value per batch size ({n}), got {se.size}")
    else:
        se = s  # relative errors: weights 1/S², the scale comes from the residuals
    design = np.stack([np.ones(n), 1.0 / b], axis=1)
    w = 1.0 / se
    coef, *_ = np.linalg.lstsq(design * w[:, None], s * w, rcond=None)
    if steps_sem is None:
        # Relative errors are relative to the law's S, not the noisy observed one:
        # reweight by the fitted values (a few rounds converge).
        for _ in range(3):
            fitted = design @ coef
            if np.any(fitted <= 0):
                break
            w = 1.0 / fitted
            coef, *_ = np.linalg.lstsq(design * w[:, None], s * w, rcond=None)
    fitted = design @ coef
    chi2 = float(np.sum(((s - fitted) * w) ** 2))
    cov = np.linalg.inv((design * w[:, None]).T @ (design * w[:, None]))
    if steps_sem is not None:
        cov = cov * max(1.0, chi2 / dof)
        q = float(_sps.norm.ppf(0.5 + level / 2))
        p_value = float(_sps.chi2.sf(chi2, dof))
    else:
        cov = cov * (chi2 / dof)
        q = float(_sps.t.ppf(0.5 + level / 2, dof))
        p_value = math.nan
    a, c = float(coef[0]), float(coef[1])
    sa, sc = math.sqrt(float(cov[0, 0])), math.sqrt(float(cov[1, 1]))
    b_crit = c / a if a > 0 else math.inf
    return CriticalBatchFit(
        s_min=a,
        s_min_ci=(a - q * sa, a + q * sa),
        e_min=c,
        e_min_ci=(c - q * sc, c + q * sc),
        b_crit=b_crit,
        b_crit_ci=_fieller(a, c, float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1]), q),
        chi2=chi2,
        dof=dof,
        p_value=p_value,
        rel_rms=float(np.sqrt(np.mean(((s - fitted) / fitted) ** 2))),
        n=n,
        n_batch_sizes=distinct,
        level=float(level),
    )
