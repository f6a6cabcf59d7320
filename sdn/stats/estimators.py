"""Statistics for the measurements of docs/theory.md §6: tails, goodness of fit, intervals, fits.

* `hill_estimator`: tail index `α` of `P(|X| > x) ∝ x^−α` from the top order statistics.
* `stable_index`: index `α` of an α-stable law by regression on the empirical
  characteristic function (Koutrouvelis' method).
* `block_tail_index`: the block-sum estimator of the stable index (Mohammadi et al. 2015,
  as Şimşekli et al. 2019 apply it to gradient noise), with a confidence interval.
* `ks_test`, `quantile_table`: samples against a theoretical law (e.g. the Student-t of
  `sdn.theory.power_law_stationary`).
* `bootstrap_ci`: percentile bootstrap interval for any statistic (mean exit times).
* `polynomial_fit`, `fit_constant_linear_quadratic`: least squares with standard errors
  and `R²` (docs/theory.md §6.1: the covariance is quadratic in the state).

These are analysis tools on concrete samples: estimators take numpy or JAX arrays and
return NamedTuples of numpy floats/arrays, except `bootstrap_ci`, which resamples with an
explicit JAX key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_int

Array = jax.Array
ArrayLike = Any

__all__ = [
    "BlockTailIndex",
    "BootstrapInterval",
    "HillEstimate",
    "KSResult",
    "PolynomialFit",
    "QuantileTable",
    "StableIndexEstimate",
    "block_tail_index",
    "bootstrap_ci",
    "fit_constant_linear_quadratic",
    "hill_estimator",
    "ks_test",
    "polynomial_fit",
    "quantile_table",
    "stable_index",
]


def _sample_vector(name: str, samples: ArrayLike, minimum: int) -> np.ndarray:
    x = np.asarray(samples, dtype=float).reshape(-1)
    if x.size < minimum:
        raise ValueError(f"{name} needs at least {minimum} values, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite, got {np.sum(~np.isfinite(x))} non-finite values")
    return x


# ---------------------------------------------------------------------------------------
# Tail indices
# ---------------------------------------------------------------------------------------


class HillEstimate(NamedTuple):
    """Hill estimate `index` of the tail index, its asymptotic standard error `index/√k`."""

    index: float
    stderr: float
    k: int


def hill_estimator(
    samples: ArrayLike, k: int | float | None = None, *, two_sided: bool = True
) -> HillEstimate:
    """Hill estimator of the tail index `α` of `P(X > x) ∝ x^−α` (docs/theory.md §6.2).

    With `X_(1) ≥ X_(2) ≥ …` the order statistics (of `|x|` if `two_sided`),
    `α̂ = k / Σ_{i=1}^{k} ln(X_(i) / X_(k+1))`; asymptotically `α̂ ~ N(α, α²/k)` when
    `k → ∞`, `k/n → 0`. Its bias comes from deviations from an exact power law (for a
    Student-t, relative order `(k/n)^(2/ν)`), so `k` trades bias against variance.

    Args:
      samples: values, any shape (flattened).
      k: number of top order statistics: an int, a fraction of `n` in `(0, 1)`, or
        `None` for `round(sqrt(n))`.
      two_sided: estimate from `|x|` (symmetric laws); else from the positive upper tail.

    Returns:
      `HillEstimate(index, stderr, k)`; for a Student-t with `ν` degrees of freedom the
      index estimates `ν` (docs/theory.md §3).

    Example:
      >>> x = np.random.default_rng(0).pareto(3.0, 100_000) + 1.0
      >>> est = hill_estimator(x, k=2000)
      >>> abs(est.index - 3.0) < 4 * est.stderr
      True
    """
    x = _sample_vector("samples", samples, 3)
    x = np.abs(x) if two_sided else x[x > 0]
    n = x.size
    if k is None:
        k = int(round(np.sqrt(n)))
    elif isinstance(k, float) and not k.is_integer():
        if not 0.0 < k < 1.0:
            raise ValueError(f"k as a fraction must lie in (0, 1), got {k}")
        k = int(round(k * n))
    k = int(k)
    if not 2 <= k < n:
        raise ValueError(f"k must satisfy 2 <= k < n={n} (positive samples), got k={k}")
    top = np.sort(x)[::-1][: k + 1]
    if top[k] <= 0:
        raise ValueError(f"k={k} reaches non-positive samples; use a smaller k")
    index = k / np.sum(np.log(top[:k] / top[k]))
    return HillEstimate(float(index), float(index / np.sqrt(k)), k)


class StableIndexEstimate(NamedTuple):
    """Characteristic-function estimate of the stable index `alpha` and scale `scale`."""

    alpha: float
    scale: float
    stderr: float


def stable_index(
    samples: ArrayLike, *, n_points: int = 10, t_range: tuple[float, float] = (0.1, 1.0)
) -> StableIndexEstimate:
    """Index `α` of an α-stable law, by regression on the empirical characteristic function.

    For any stable law `|φ(t)| = exp(−|c t|^α)` whatever its skewness and location, so
    `ln(−ln|φ(t)|²) = ln 2 + α ln c + α ln|t|` is linear in `ln|t|` with slope `α`
    (Koutrouvelis 1980). The samples are first centred by the median and scaled by a
    robust scale `c₀` (half the interquartile range); the slope is fitted by least squares
    at `n_points` values `t` in `t_range / c₀`, where `|φ|²` lies between about `e^−2`
    and 1 and is estimated well. `stderr` is the regression standard error (it ignores the
    correlation between the points, so use Monte Carlo replicates for a real interval).
    α is defined on `(0, 2]`; a Gaussian gives `α ≈ 2`.

    Example:
      >>> from scipy import stats
      >>> x = stats.levy_stable.rvs(1.5, 0.0, size=20_000, random_state=1)
      >>> abs(stable_index(x).alpha - 1.5) < 0.1
      True
    """
    x = _sample_vector("samples", samples, 10)
    n_points = check_int("n_points", n_points, minimum=3)
    lo, hi = t_range
    if not 0 < lo < hi:
        raise ValueError(f"t_range must satisfy 0 < lo < hi, got {t_range}")
    q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    c0 = 0.5 * (q75 - q25)
    if c0 <= 0:
        raise ValueError(f"samples have zero interquartile range, got IQR={2 * c0}")
    z = (x - q50) / c0
    t = np.linspace(lo, hi, n_points)
    phi = np.mean(np.exp(1j * np.outer(t, z)), axis=1)
    mod2 = np.abs(phi) ** 2
    if np.any(mod2 >= 1) or np.any(mod2 <= 0):
        raise ValueError("empirical |φ(t)|² outside (0, 1); widen t_range or give more samples")
    y = np.log(-np.log(mod2))
    design = np.stack([np.ones_like(t), np.log(t)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    cov = np.sum(resid**2) / (n_points - 2) * np.linalg.inv(design.T @ design)
    alpha = float(coef[1])
    scale = float(c0 * np.exp((coef[0] - np.log(2.0)) / alpha))
    return StableIndexEstimate(alpha, scale, float(np.sqrt(cov[1, 1])))


class BlockTailIndex(NamedTuple):
    """Block-sum estimate `index` of the stable index `α`, with a confidence interval.

    `inverse` is the estimate of `1/α` and `stderr` its standard error; `low`/`high` bound
    `α` at the requested confidence (the interval of `1/α` inverted). Array-valued when
    the estimator ran per column.
    """

    index: Any
    low: Any
    high: Any
    inverse: Any
    stderr: Any
    block_size: int
    n_blocks: int


def block_tail_index(
    samples: ArrayLike,
    block_size: int | None = None,
    *,
    axis: int | None = None,
    confidence: float = 0.95,
) -> BlockTailIndex:
    """Stable index `α` from block sums (Mohammadi, Mohammadpour and Ogata 2015).

    Split the `N = K m` samples `X_i` into `K` blocks of `m` and let `Y_k` be the block
    sums. For a symmetric α-stable law `Y_k` has the law of `m^{1/α} X`, so

        1/α̂ = (mean_k log|Y_k| − mean_i log|X_i|) / log m,

    the estimator Şimşekli, Sagun and Gürbüzbalaban (2019, "A tail-index analysis of
    stochastic gradient noise") apply to gradient noise (docs/theory.md §6.6). It is
    unbiased for exactly stable samples and gives `α̂ ≈ 2` for Gaussian ones. Writing
    `1/α̂ = mean_k Z_k / log m` with `Z_k = log|Y_k| − mean_{i∈k} log|X_i|` (the blocks are
    independent) gives the standard error `sd(Z)/(√K log m)` and the interval.

    For laws only in the domain of attraction of a stable law the estimate is biased at
    finite `m`: a Student-t with `ν > 2` (finite variance, true index 2) gives, to leading
    order in the Gaussian limit of the block sums,
    `1/α̂ ≈ 1/2 + [log 2 + ψ(ν/2) − log(ν − 2)] / (2 log m)` (ψ the digamma function), e.g.
    `α̂ ≈ 1.89` for `ν = 5` and `m = 200`: finite samples of light-tailed noise read as
    mildly heavy-tailed.

    Args:
      samples: centred noise samples (zero median: the estimator does not centre them,
        since a sample mean is no centre for `α ≤ 1`). Flattened when `axis` is None.
      block_size: `m`; default `round(sqrt(N))`. Trailing samples beyond `K m` are dropped.
      axis: estimate along this axis of a 2-D array, one estimate per column (per
        coordinate), instead of pooling every value.
      confidence: level of the interval, in `(0, 1)`.

    Returns:
      `BlockTailIndex(index, low, high, inverse, stderr, block_size, n_blocks)`.

    Example:
      >>> from scipy import stats
      >>> x = stats.levy_stable.rvs(1.5, 0.0, size=40_000, random_state=0)
      >>> est = block_tail_index(x)
      >>> bool(est.low < 1.5 < est.high)
      True
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x = np.asarray(samples, dtype=float)
    if axis is None:
        x = _sample_vector("samples", x, 4)[:, None]
    else:
        if x.ndim != 2 or axis not in (0, 1, -1, -2):
            raise ValueError(f"axis={axis} needs 2-D samples with axis 0 or 1, got shape {x.shape}")
        x = np.moveaxis(x, axis, 0)
        if not np.all(np.isfinite(x)):
            raise ValueError("samples must be finite")
    n = x.shape[0]
    m = int(round(np.sqrt(n))) if block_size is None else block_size
    check_int("block_size", m, minimum=2)
    k = n // m
    if k < 2:
        raise ValueError(f"block_size={m} leaves {k} block(s) of {n} samples; need at least 2")
    if np.any(x[: k * m] == 0):
        raise ValueError("samples contain exact zeros; log|X| is undefined there")
    blocks = x[: k * m].reshape(k, m, -1)
    z = np.log(np.abs(blocks.sum(axis=1))) - np.log(np.abs(blocks)).mean(axis=1)
    log_m = np.log(m)
    inverse = z.mean(axis=0) / log_m
    stderr = z.std(axis=0, ddof=1) / (np.sqrt(k) * log_m)
    from scipy.special import ndtri

    q = float(ndtri(0.5 + confidence / 2))
    lo_inv = inverse - q * stderr
    hi_inv = inverse + q * stderr
    with np.errstate(divide="ignore"):
        low = 1.0 / hi_inv
        high = np.where(lo_inv > 0, 1.0 / np.maximum(lo_inv, 1e-300), np.inf)
    out = (1.0 / inverse, low, high, inverse, stderr)
    if axis is None:
        out = tuple(float(v[0]) for v in out)
    return BlockTailIndex(*out, block_size=m, n_blocks=k)


# ---------------------------------------------------------------------------------------
# Samples against a law
# ---------------------------------------------------------------------------------------


class KSResult(NamedTuple):
    statistic: float
    pvalue: float


def ks_test(samples: ArrayLike, cdf: Callable[[Any], Any]) -> KSResult:
    """One-sample Kolmogorov–Smirnov test of `samples` against a continuous `cdf`.

    `cdf` is any callable on arrays (e.g. `power_law_stationary(...).cdf`, a JAX
    function); it is evaluated on the sorted samples as numpy. Wraps
    `scipy.stats.kstest` (exact p-values for small `n`, asymptotic for large).

    Example:
      >>> from sdn.theory import gaussian_stationary
      >>> law = gaussian_stationary(1.0, 0.1, 1, 1.0)
      >>> x = law.scale * np.random.default_rng(0).standard_normal(1000)
      >>> ks_test(x, law.cdf).pvalue > 0.01
      True
    """
    from scipy import stats

    x = _sample_vector("samples", samples, 1)
    res = stats.kstest(x, lambda v: np.asarray(cdf(v), dtype=float))
    return KSResult(float(res.statistic), float(res.pvalue))


class QuantileTable(NamedTuple):
    """Measured against theoretical quantiles, with distribution-free confidence bounds.

    `lower, upper` are order statistics whose ranks bracket the `p`-quantile with
    probability about `level` (normal approximation to the binomial count below it).
    """

    probs: np.ndarray
    measured: np.ndarray
    theoretical: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def quantile_table(
    samples: ArrayLike,
    ppf: Callable[[Any], Any],
    probs: Sequence[float] = (0.5, 0.75, 0.9, 0.99, 0.999),
    *,
    level: float = 0.95,
) -> QuantileTable:
    """Quantiles of `samples` beside a law's quantile function `ppf` (docs/theory.md §3, §6.2).

    Example:
      >>> from sdn.theory import power_law_stationary
      >>> law = power_law_stationary(1.0, 0.1, 1, 1.0, 2.0)
      >>> x = law.scale * np.random.default_rng(0).standard_t(law.df, 10_000)
      >>> tab = quantile_table(x, law.ppf, probs=(0.9,))
      >>> bool(tab.lower[0] <= tab.theoretical[0] <= tab.upper[0])
      True
    """
    from scipy import stats

    x = np.sort(_sample_vector("samples", samples, 2))
    p = np.asarray(probs, dtype=float)
    if np.any((p <= 0) | (p >= 1)):
        raise ValueError(f"probs must lie in (0, 1), got {p}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    n = x.size
    z = stats.norm.ppf(0.5 + 0.5 * level)
    half = z * np.sqrt(n * p * (1 - p))
    lo = np.clip(np.floor(n * p - half).astype(int) - 1, 0, n - 1)
    hi = np.clip(np.ceil(n * p + half).astype(int), 0, n - 1)
    return QuantileTable(
        p, np.quantile(x, p), np.asarray(ppf(p), dtype=float).reshape(p.shape), x[lo], x[hi]
    )


# ---------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------


class BootstrapInterval(NamedTuple):
    estimate: Array
    low: Array
    high: Array


def bootstrap_ci(
    key: Array,
    samples: ArrayLike,
    statistic: Callable[[Array], Array] = jnp.mean,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    batch_size: int = 256,
) -> BootstrapInterval:
    """Percentile bootstrap confidence interval for `statistic(samples)`.

    Resamples the leading axis of `samples` with replacement `n_resamples` times and
    returns the `(1 ∓ level)/2` quantiles of the statistic. `statistic` must be a JAX
    function of the resampled array; resamples are evaluated `batch_size` at a time
    (`lax.map`), so memory stays at `batch_size · n`. Pure and jittable in
    `key, samples` (e.g. vmapped over independent data sets).

    Example:
      >>> x = jnp.arange(100.0)
      >>> ci = bootstrap_ci(jax.random.key(0), x)
      >>> bool(ci.low < 49.5 < ci.high)
      True
    """
    n_resamples = check_int("n_resamples", n_resamples, minimum=2)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x = jnp.asarray(samples)
    n = x.shape[0]

    def one(k):
        idx = jax.random.randint(k, (n,), 0, n)
        return statistic(x[idx])

    stats_ = jax.lax.map(one, jax.random.split(key, n_resamples), batch_size=batch_size)
    tail = 0.5 * (1.0 - level)
    low, high = jnp.quantile(stats_, jnp.array([tail, 1.0 - tail]), axis=0)
    return BootstrapInterval(statistic(x), low, high)


# ---------------------------------------------------------------------------------------
# Least squares
# ---------------------------------------------------------------------------------------


class PolynomialFit(NamedTuple):
    """`y ≈ Σ_k coef[k] x^k` with standard errors `stderr`, `r_squared` and residual sd."""

    coef: np.ndarray
    stderr: np.ndarray
    r_squared: float
    residual_std: float

    def __call__(self, x: ArrayLike) -> np.ndarray:
        return np.polynomial.polynomial.polyval(np.asarray(x, dtype=float), self.coef)


def polynomial_fit(x: ArrayLike, y: ArrayLike, degree: int) -> PolynomialFit:
    """Ordinary least-squares polynomial fit of degree `degree` (docs/theory.md §6.1).

    Coefficients in increasing order; `stderr = sqrt(diag(σ̂² (XᵀX)⁻¹))` with
    `σ̂² = RSS/(n − degree − 1)` (homoscedastic errors); `R² = 1 − RSS/TSS` (0 for the
    constant fit).

    Example:
      >>> x = np.linspace(-1, 1, 21)
      >>> fit = polynomial_fit(x, 1 + 2 * x + 3 * x**2, 2)
      >>> np.round(fit.coef, 6).tolist(), round(fit.r_squared, 6)
      ([1.0, 2.0, 3.0], 1.0)
    """
    degree = check_int("degree", degree, minimum=0)
    xv = _sample_vector("x", x, degree + 2)
    yv = _sample_vector("y", y, degree + 2)
    if xv.shape != yv.shape:
        raise ValueError(f"x and y must have the same size, got {xv.size} and {yv.size}")
    design = np.vander(xv, degree + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(design, yv, rcond=None)
    resid = yv - design @ coef
    rss = float(resid @ resid)
    dof = xv.size - degree - 1
    sigma2 = rss / dof
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    tss = float(np.sum((yv - yv.mean()) ** 2))
    r2 = 0.0 if degree == 0 else (1.0 - rss / tss if tss > 0 else 1.0)
    return PolynomialFit(coef, np.sqrt(np.diag(cov)), r2, float(np.sqrt(sigma2)))


def fit_constant_linear_quadratic(x: ArrayLike, y: ArrayLike) -> dict[str, PolynomialFit]:
    """The constant, linear and quadratic fits of docs/theory.md §6.1, keyed by name.

    Example:
      >>> x = np.linspace(-1, 1, 21)
      >>> fits = fit_constant_linear_quadratic(x, 1 + x + x**2)
      >>> [round(f.r_squared, 3) for f in fits.values()]
      [0.0, 0.774, 1.0]
    """
    return {
        name: polynomial_fit(x, y, degree)
        for name, degree in [("constant", 0), ("linear", 1), ("quadratic", 2)]
    }
