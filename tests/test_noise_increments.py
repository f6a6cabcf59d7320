"""`sdn.noise.increments`, the one place keys become numbers, against its formulas.

Monte Carlo checks allow `Z = 5` standard errors (every key is fixed, so a pass is
reproducible); each is paired with the nearest wrong answer, which the same tolerance
must reject.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

from sdn.noise import increments as inc

Z = 5.0


def _engine_two_point_block(key, n_words, shape, root):
    """The engine's two-point block as written in its scan (before it calls this module):
    ``words = bits(k, (n_words, *shape))``, step `32 m + b` is `±root` by bit `b` of word
    `m`."""
    words = jax.random.bits(key, (n_words, *shape), jnp.uint32)
    steps = []
    for m in range(n_words):
        for b in jnp.arange(32, dtype=jnp.uint32):
            steps.append(jnp.where(((words[m] >> b) & 1) == 1, root, -root))
    return np.stack([np.asarray(s) for s in steps])


@pytest.mark.parametrize("shape", [(), (3,), (2, 5)])
def test_words_and_signs_are_the_engines_two_point_block(shape):
    key, n_words, root = jax.random.key(11), 2, jnp.sqrt(jnp.float32(0.01))
    words = inc.two_point_words(key, n_words, shape)
    assert words.shape == (n_words, *shape) and words.dtype == jnp.uint32
    bits = jnp.arange(inc.BITS_PER_WORD, dtype=jnp.uint32)
    got = np.stack(
        [np.asarray(inc.word_signs(words[m], b, root)) for m in range(n_words) for b in bits]
    )
    want = _engine_two_point_block(key, n_words, shape, root)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_rademacher_element_32m_plus_b_is_bit_b_of_word_m():
    key, shape = jax.random.key(3), (7, 11)  # 77 signs: three words, the last one partly
    words = np.asarray(jax.random.bits(key, (3,), jnp.uint32))
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    want = (2.0 * bits.reshape(-1)[:77] - 1).reshape(shape)
    got = inc.rademacher(key, shape, jnp.float32)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, want)


def test_bridge_uniforms_are_the_first_exit_drivers_stream():
    block_key = jax.random.fold_in(jax.random.key(5), 7)
    want = jax.random.uniform(jax.random.fold_in(block_key, 1 << 30), (64,), dtype=jnp.float32)
    np.testing.assert_array_equal(inc.bridge_uniforms(block_key, 64, jnp.float32), want)
    u = np.asarray(inc.bridge_uniforms(block_key, 64, jnp.float32))
    assert np.all((u >= 0) & (u < 1))


@pytest.mark.parametrize("law", ["gaussian", "two_point"])
def test_standard_increments_have_mean_0_and_variance_dt(law):
    n, dt = 200_000, 0.04
    z = np.asarray(inc.standard_increments(jax.random.key(1), (n,), jnp.float32, dt, law), float)
    se_mean = np.sqrt(dt / n)
    assert abs(z.mean()) < Z * se_mean
    if law == "two_point":
        np.testing.assert_allclose(np.abs(z), np.sqrt(dt), rtol=1e-6)
        # the nearest wrong answer, a sign bias (bits read as p = 0.51: mean 0.02 sqrt(dt)),
        # is rejected
        assert 0.02 * np.sqrt(dt) > Z * se_mean
        return
    se_var = dt * np.sqrt(2.0 / n)  # standard error of the sample variance of a normal
    assert abs(z.var() - dt) < Z * se_var
    # a dropped or doubled factor: variance dt/2 or 2 dt would be rejected by far
    assert abs(z.var() - dt / 2) > Z * se_var and abs(z.var() - 2 * dt) > Z * se_var


@pytest.mark.parametrize("alpha", [0.8, 1.0, 1.5, 2.0])
def test_symmetric_stable_has_characteristic_function_exp_minus_abs_u_to_alpha(alpha):
    """`E cos(uS) = exp(−|u|^α)` at a few `u`: the standard law (`c = 1`), whose variance at
    `α = 2` is 2 — not the unit normal, the nearest wrong convention (`exp(−u²/2)`) — and
    not the index off by 0.1."""
    n = 1_000_000
    s = np.asarray(inc.symmetric_stable(jax.random.key(8), alpha, (n,), jnp.float32), float)
    for u in (0.3, 1.0, 2.0):
        c = np.cos(u * s)
        se = c.std() / np.sqrt(n)
        assert abs(c.mean() - np.exp(-(u**alpha))) < Z * se, (u, c.mean())
        # the rival scale: the law of 2^(1/α) S, whose ch. f. is exp(−2|u|^α) (or, at
        # α = 2, the unit normal's exp(−u²/2), the same distance the other way)
        rival = np.exp(-2 * u**alpha) if alpha != 2.0 else np.exp(-(u**2) / 2)
        assert abs(c.mean() - rival) > Z * se
    # the rival index, α off by 0.1, is rejected at u = 1.5
    c, rival_alpha = np.cos(1.5 * s), alpha - 0.1 if alpha == 2.0 else alpha + 0.1
    assert abs(c.mean() - np.exp(-(1.5**rival_alpha))) > Z * c.std() / np.sqrt(n)


def _stable_reference(alpha, n, seed):
    """`n` standard symmetric α-stable draws by numpy in float64 (Chambers, Mallows & Stuck)."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(-np.pi / 2, np.pi / 2, n)
    e = rng.exponential(size=n)
    return (
        np.sin(alpha * v)
        / np.cos(v) ** (1 / alpha)
        * (np.cos(v - alpha * v) / e) ** ((1 - alpha) / alpha)
    )


def _ks_bound(n, m, p=1e-6):
    """The two-sample Kolmogorov–Smirnov distance exceeded with probability `p` (asymptotic)."""
    return np.sqrt(-np.log(p / 2) / 2) * np.sqrt((n + m) / (n * m))


@pytest.mark.parametrize("alpha", [0.8, 1.0, 1.5, 1.9, 2.0])
def test_symmetric_stable_has_the_law_of_an_independent_float64_sampler(alpha):
    """Two-sample KS against numpy's float64 Chambers–Mallows–Stuck draws: the distance
    stays under the bound a true null exceeds with probability 10⁻⁶, and the rivals — a
    scale `2^(1/α)` (the law's `c^α` taken for `c`) and the index off by 0.1 — exceed it."""
    n = 1_000_000
    s = np.asarray(inc.symmetric_stable(jax.random.key(9), alpha, (n,), jnp.float32), float)
    ref = _stable_reference(alpha, n, 1)
    bound = _ks_bound(n, n)
    assert sps.ks_2samp(s, ref).statistic < bound
    assert sps.ks_2samp(s, 2 ** (1 / alpha) * ref).statistic > bound
    rival = _stable_reference(alpha - 0.1 if alpha == 2.0 else alpha + 0.1, n, 1)
    assert sps.ks_2samp(s, rival).statistic > bound


def test_symmetric_stable_is_a_function_of_its_key():
    """Same key, same draws; `vmap` over keys draws what each key draws alone; keys of
    other implementations and legacy raw keys work; half precision rounds the float32 draw."""
    key = jax.random.key(4)
    a = inc.symmetric_stable(key, 1.5, (3, 5), jnp.float32)
    np.testing.assert_array_equal(a, inc.symmetric_stable(key, 1.5, (3, 5), jnp.float32))
    np.testing.assert_array_equal(
        a,
        inc.symmetric_stable(
            jax.random.wrap_key_data(jax.random.key_data(key)), 1.5, (3, 5), jnp.float32
        ),
    )
    np.testing.assert_array_equal(
        a, inc.symmetric_stable(jax.random.key_data(key), 1.5, (3, 5), jnp.float32)
    )
    assert not np.allclose(a, inc.symmetric_stable(jax.random.key(5), 1.5, (3, 5), jnp.float32))
    keys = jax.random.split(key, 4)
    batched = jax.vmap(lambda k: inc.symmetric_stable(k, 1.5, (7,), jnp.float32))(keys)
    for k, row in zip(keys, batched):  # the same numbers, up to the compiler's rounding
        np.testing.assert_allclose(row, inc.symmetric_stable(k, 1.5, (7,), jnp.float32), 1e-6)
    np.testing.assert_array_equal(
        inc.symmetric_stable(key, 1.5, (3, 5), jnp.bfloat16), a.astype(jnp.bfloat16)
    )
    rbg = inc.symmetric_stable(jax.random.key(4, impl="rbg"), 1.0, (20_000,), jnp.float32)
    # Cauchy: P(|S| < 1) = 1/2
    assert abs(np.mean(np.abs(np.asarray(rbg)) < 1) - 0.5) < Z * 0.5 / np.sqrt(20_000)


def test_word_pairs_are_fair_independent_bits():
    """Both words of a pair: every bit set with frequency ½, and bit `b` of the first word
    uncorrelated with bit `b` of the second (a pair read twice from one word would be)."""
    n = 50_000
    words = np.asarray(inc._word_pairs(jax.random.key(2), (n,)))
    assert words.shape == (2, n) and words.dtype == np.uint32
    bits = (words[..., None] >> np.arange(32, dtype=np.uint32)) & 1
    se = 0.5 / np.sqrt(n)
    assert np.max(np.abs(bits.mean(1) - 0.5)) < Z * se
    agree = (bits[0] == bits[1]).mean(0)
    assert np.max(np.abs(agree - 0.5)) < Z * se


@pytest.mark.parametrize("replace", [True, False])
def test_batch_indices(replace):
    n_batches, b, n = 4000, 3, 5
    idx = np.asarray(inc.batch_indices(jax.random.key(2), n_batches, b, n, replace=replace))
    assert idx.shape == (n_batches, b) and idx.min() >= 0 and idx.max() < n
    if not replace:
        assert all(len(set(row)) == b for row in idx)
    counts = np.bincount(idx.ravel(), minlength=n) / idx.size
    se = np.sqrt((1 / n) * (1 - 1 / n) / idx.size)  # an upper bound without replacement
    np.testing.assert_array_less(np.abs(counts - 1 / n), Z * se)
    assert np.any(np.abs(counts - 1 / (n - 1) * (np.arange(n) < n - 1)) > Z * se)


def test_check_increments_and_leaf_keys():
    assert inc.check_increments("two_point") == "two_point"
    with pytest.raises(ValueError, match="increments must be one of"):
        inc.check_increments("rademacher")
    key = jax.random.key(0)
    assert inc.leaf_keys(key, 1) == [key]
    keys = inc.leaf_keys(key, 3)
    assert len(keys) == 3
    np.testing.assert_array_equal(
        jax.random.key_data(keys[1]), jax.random.key_data(jax.random.split(key, 3)[1])
    )


def test_sinpi_polynomial_is_within_a_few_float32_ulps():
    """The float32 `sin(πx)` on `[0, ½]` is within 3·10⁻⁷ relative of the float64 sine
    (about 2.5 ulps), down to `x → 0`; float64 arguments take the library sine."""
    x = np.concatenate([np.linspace(0, 0.5, 200_001)[1:], 2.0 ** -np.arange(1, 40)])
    x32 = jnp.asarray(x, jnp.float32)
    got = np.asarray(inc._sinpi(x32), np.float64)
    want = np.sin(np.pi * np.asarray(x32, np.float64))
    assert np.max(np.abs(got / want - 1)) < 3e-7
    with jax.enable_x64(True):
        got64 = np.asarray(inc._sinpi(jnp.asarray(x, jnp.float64)))
    np.testing.assert_allclose(got64, np.sin(np.pi * x), rtol=1e-15)
