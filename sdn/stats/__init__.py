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
* `rank_escape_laws`: which escape law (Kramers, power law, Lévy) mean escape times over
  barriers and curvatures follow (docs/theory.md §6.7).
* `fit_critical_batch`: McCandlish et al.'s steps–examples trade-off fitted to steps to a
  target over batch sizes, with the critical batch size `B_crit` and its interval
  (docs/theory.md §6.8).
"""

from sdn.stats.critical_batch import CriticalBatchFit, fit_critical_batch
from sdn.stats.escape_laws import EscapeLaw, EscapeLawFit, EscapeLawRanking, rank_escape_laws
from sdn.stats.estimators import (
    BlockTailIndex,
    BootstrapInterval,
    HillEstimate,
    KSResult,
    PolynomialFit,
    QuantileTable,
    StableIndexEstimate,
    block_tail_index,
    bootstrap_ci,
    fit_constant_linear_quadratic,
    hill_estimator,
    ks_test,
    polynomial_fit,
    quantile_table,
    stable_index,
)

__all__ = [
    "BlockTailIndex",
    "BootstrapInterval",
    "CriticalBatchFit",
    "EscapeLaw",
    "EscapeLawFit",
    "EscapeLawRanking",
    "HillEstimate",
    "KSResult",
    "PolynomialFit",
    "QuantileTable",
    "StableIndexEstimate",
    "block_tail_index",
    "bootstrap_ci",
    "fit_constant_linear_quadratic",
    "fit_critical_batch",
    "hill_estimator",
    "ks_test",
    "polynomial_fit",
    "quantile_table",
    "rank_escape_laws",
    "stable_index",
]
