"""The block-sum tail-index estimator on samples of known index (docs/theory.md §6.6)."""

import numpy as np
import pytest
from scipy import special, stats

from sdn.stats import block_tail_index

N = 40_000  # m = 200 blocks of 200
Z = 4.0  # two-sided Z allowance on the estimator's own standard error


def _z(est, inverse_expected):
    return (est.inverse - inverse_expected) / est.stderr


@pytest.mark.parametrize("alpha", [1.2, 1.5, 1.8])
def test_stable_samples_recover_their_index(alpha):
    x = stats.levy_stable.rvs(alpha, 0.0, size=N, random_state=int(alpha * 10))
    est = block_tail_index(x)
    assert est.block_size == 200 and est.n_blocks == 200
    assert abs(_z(est, 1 / alpha)) < Z
    assert est.low < est.index < est.high


def test_gaussian_gives_two():
    x = np.random.default_rng(3).normal(size=N)
    est = block_tail_index(x)
    assert abs(_z(est, 0.5)) < Z


def test_interval_covers_at_its_level():
    # 200 replicates of α = 1.5 at N = 4900: the 90% interval covers 1.5 in 180 ± 4.2·3 cases
    rng = np.random.default_rng(7)
    x = stats.levy_stable.rvs(1.5, 0.0, size=(200, 4900), random_state=rng)
    est = block_tail_index(x.T, axis=0, confidence=0.9)
    covered = np.sum((est.low < 1.5) & (1.5 < est.high))
    assert abs(covered - 180) < 3 * np.sqrt(200 * 0.9 * 0.1)


def _student_t_inverse(nu, m):
    """Leading-order `1/α̂` for Student-t samples: the block sums are nearly Gaussian."""
    e_log_x = 0.5 * (special.digamma(0.5) - special.digamma(nu / 2) + np.log(nu))
    e_log_y = 0.5 * (special.digamma(0.5) + np.log(2)) + 0.5 * np.log(m * nu / (nu - 2))
    return (e_log_y - e_log_x) / np.log(m)


@pytest.mark.parametrize("nu", [3.0, 5.0])
def test_student_t_bias_is_the_documented_one(nu):
    # 8 independent columns of N samples, pooled: the bias (0.03-0.07 in 1/α) is then
    # several standard errors, so the test sees it and checks its size
    x = np.random.default_rng(int(nu)).standard_t(nu, size=(N, 8))
    est = block_tail_index(x, axis=0)
    inverse, stderr = est.inverse.mean(), np.sqrt(np.sum(est.stderr**2)) / 8
    expected = _student_t_inverse(nu, 200)
    assert abs(inverse - expected) < Z * stderr
    assert (inverse - 0.5) > Z * stderr  # the true index 2 is not what the estimator sees


def test_per_column_equals_one_column_at_a_time():
    x = np.random.default_rng(0).standard_cauchy((2500, 3))
    per = block_tail_index(x, axis=0)
    for j in range(3):
        one = block_tail_index(x[:, j])
        assert np.isclose(per.index[j], one.index) and np.isclose(per.stderr[j], one.stderr)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(samples=np.ones(3)), "samples"),
        (dict(samples=np.ones(100), block_size=60), "block_size"),
        (dict(samples=np.ones(100), block_size=1), "block_size"),
        (dict(samples=np.ones(100), confidence=1.0), "confidence"),
        (dict(samples=np.zeros(100)), "zeros"),
        (dict(samples=np.ones((10, 10, 2)), axis=0), "axis"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        block_tail_index(**kwargs)
