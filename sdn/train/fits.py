"""Fitted noise models: the measured gradient noise as an `sdn.noise` model with its errors.

- `power_law_fit`: the one least-squares fit of a variance profile to the power law
  `σ_g + 2σ_gH t + σ_H t²` of docs/theory.md §6.1 (with the constant and linear rivals);
- `fit_power_law`, `fit_network_power_law`: the per-coordinate power law, measured on
  batches at displaced points;
- `fit_noise_along`: the power law along a direction, from a `NoiseProfile`;
- `fit_empirical`, `fit_network_empirical`: the structured (low-rank empirical)
  covariance at one point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from flax import nnx
from numpy.typing import ArrayLike

from sdn import noise, stats
from sdn._checks import check_int
from sdn._deprecation import key_first
from sdn.train.gradstats import batch_gradient_statistics, cross_entropy_losses
from sdn.train.persample import Params, SampleLoss, _n_samples, gradient_moments, per_sample_grads
from sdn.train.profiles import NoiseProfile, _axpy, _split_network, random_direction


class PowerLawFit(NamedTuple):
    """The power law `y(t) ≈ σ_g + 2σ_gH t + σ_H t²` fitted to a variance profile.

    Attributes:
      fits: for a single profile, the unconstrained constant, linear and quadratic fits
        (``{"constant", "linear", "quadratic"}`` → `sdn.stats.PolynomialFit`), for
        judging its shape; empty for several columns.
      sigma_g, sigma_gh, sigma_h: the power law's coefficients (floats for one profile,
        `(P,)` arrays for `P` columns).
      stderr: standard errors of `(σ_g, σ_gH, σ_H)`, shaped alike.
    """

    fits: dict
    sigma_g: Any
    sigma_gh: Any
    sigma_h: Any
    stderr: tuple[Any, Any, Any]

    @property
    def r_squared(self) -> dict[str, float]:
        """`R²` of the constant, linear and quadratic fits of a single profile."""
        return {k: float(f.r_squared) for k, f in self.fits.items()}


def power_law_fit(
    t: ArrayLike,
    y: ArrayLike,
    *,
    stderr: ArrayLike | None = None,
    sigma_g: ArrayLike | None = None,
) -> PowerLawFit:
    """Least-squares fit of a variance profile to the power law of docs/theory.md §1, §6.1.

    `y(t) = σ_g + 2σ_gH t + σ_H t²`: the per-sample gradient variance at `w* + t v`. The
    package's one power-law fit: the profiles of `noise_along`, the per-coordinate fits
    of `fit_power_law` and `fit_noise_along` all go through it.

    Args:
      t: `(T,)` the grid.
      y: `(T,)` one profile, or `(T, P)` columns fitted independently.
      stderr: the standard errors of `y` (same shape; independent points), e.g. the
        Monte Carlo errors of measured variances: propagated through the fit,
        `Var β_a = Σ_k A_ak² se_k²` with `β = A y`. Default: the regression's own
        errors, `σ̂² (XᵀX)⁻¹` with `σ̂² = RSS/(T − p)` (needs `T > p` points for `p`
        fitted coefficients).
      sigma_g: hold the intercept at this value (e.g. the variance measured at `w*`
        itself) and fit `σ_gH`, `σ_H` to `y − σ_g`; its standard error is reported
        as 0. Default: fitted.

    Returns:
      A `PowerLawFit`. For a single profile, its `fits` (and `r_squared`) are the
      unconstrained constant, linear and quadratic fits whatever the options.

    Example:
      >>> import numpy as np
      >>> t = np.linspace(-1, 1, 9)
      >>> fit = power_law_fit(t, 0.5 + 0.2 * t + 3.0 * t**2)
      >>> round(fit.sigma_g, 6), round(fit.sigma_gh, 6), round(fit.sigma_h, 6)
      (0.5, 0.1, 3.0)
      >>> round(power_law_fit(t, 0.5 + 3.0 * t**2, sigma_g=0.5).sigma_h, 6)
      3.0
    """
    t = np.asarray(t, np.float64)
    y = np.asarray(y, np.float64)
    if t.ndim != 1 or not np.all(np.isfinite(t)):
        raise ValueError(f"t must be a 1-D grid of finite numbers, got {t!r}")
    if y.ndim not in (1, 2) or y.shape[0] != t.size:
        raise ValueError(f"y must have shape ({t.size},) or ({t.size}, P), got {y.shape}")
    p = 3 if sigma_g is None else 2
    if t.size < p + (stderr is None):
        need = p + (stderr is None)
        raise ValueError(f"t must have at least {need} points for this fit, got {t.size}")
    if stderr is not None:
        stderr = np.asarray(stderr, np.float64)
        if stderr.shape != y.shape:
            raise ValueError(f"stderr must have the shape of y {y.shape}, got {stderr.shape}")
    single = y.ndim == 1
    fits = stats.fit_constant_linear_quadratic(t, y) if single and t.size >= 4 else {}
    if single and stderr is None and sigma_g is None:
        q = fits["quadratic"]  # the quadratic in (1, t, t²): σ_gH is half its slope
        coef, se = q.coef * [1.0, 0.5, 1.0], q.stderr * [1.0, 0.5, 1.0]
        return PowerLawFit(fits, *(float(c) for c in coef), tuple(float(e) for e in se))
    cols = y.reshape(t.size, -1)
    design = np.stack([np.ones_like(t), 2 * t, t**2], 1)
    if sigma_g is not None:
        g0 = np.broadcast_to(np.asarray(sigma_g, np.float64), cols.shape[1:])
        cols, design = cols - g0, design[:, 1:]
    a = np.linalg.pinv(design)  # (p, T): β = A y
    beta = a @ cols
    if stderr is not None:
        beta_se = np.sqrt(np.square(a) @ np.square(stderr.reshape(cols.shape)))
    else:
        rss = np.sum(np.square(cols - design @ beta), 0)
        cov = np.linalg.pinv(design.T @ design)
        beta_se = np.sqrt(np.outer(np.diag(cov), rss / (t.size - p)))
    if sigma_g is not None:
        beta = np.concatenate([g0[None], beta])
        beta_se = np.concatenate([np.zeros((1, cols.shape[1])), beta_se])

    def out(v):
        return float(v[0]) if single else v

    return PowerLawFit(fits, *(out(b) for b in beta), tuple(out(e) for e in beta_se))


class NoiseFit(NamedTuple):
    """A noise model fitted to measured gradient noise, with its uncertainty.

    The power-law fits (`fit_power_law`, `fit_network_power_law`, `fit_noise_along`)
    model `C_jj(w* + x) = σ_g,j + 2 σ_gH,j x_j + σ_H,j x_j²` (docs/theory.md §1); the
    empirical fits (`fit_empirical`, `fit_network_empirical`) the whole covariance
    `C(w*)` at one point. Either is the per-sample gradient covariance, not yet divided
    by a batch size.

    Attributes:
      model: the fitted ``sdn.noise`` model. Power law: ``sdn.noise.power_law``
        (estimates clipped to a valid model: `σ_g, σ_H ≥ 0`, `σ_gH² ≤ σ_g σ_H`), centred
        at `w*`; for parameters with more than one leaf it acts on the flat vector
        ``jax.flatten_util.ravel_pytree(w)[0]``. Empirical: ``sdn.noise.empirical``,
        on the params' own pytree.
      sigma_g, sigma_gh, sigma_h: the raw least-squares estimates, shaped like the
        parameters (scalars for a fit along a direction). Empirical: `sigma_g` is the
        estimated diagonal `C_jj(w*)`, `sigma_gh` and `sigma_h` are None.
      stderr: standard errors of `(σ_g, σ_gH, σ_H)`, shaped alike (None where the
        estimate is None).
      center: `w*`.
      directions: empirical fits only, the directions `v` (pytrees like the params)
        along which `directional` was measured; else None.
      directional: `(K,)` the fitted model's `vᵀ C(w*) v` along each direction.
      directional_stderr: `(K,)` their standard errors.
    """

    model: Any
    sigma_g: Any
    sigma_gh: Any
    sigma_h: Any
    stderr: tuple[Any, Any, Any]
    center: Any
    directions: list | None = None
    directional: np.ndarray | None = None
    directional_stderr: np.ndarray | None = None


def _valid_power_law(center, sg, sgh, sh):
    sg, sh = np.maximum(sg, 0.0), np.maximum(sh, 0.0)
    bound = np.sqrt(sg * sh)
    return noise.power_law(
        jnp.asarray(sg, jnp.float32),
        jnp.asarray(sh, jnp.float32),
        center=jnp.asarray(center, jnp.float32),
        sigma_gh=jnp.asarray(np.clip(sgh, -bound, bound), jnp.float32),
    )


def _flat(tree: Any) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])


def _fit_per_coordinate(variance_of, params, displacement, ts, n, batch_size, groups, key):
    """Least-squares fit of `C_jj` measured on `groups` batches at each `w* + t d`."""
    ts = np.asarray(ts, np.float64)
    if ts.ndim != 1 or ts.size < 3 or not np.all(np.isfinite(ts)):
        raise ValueError(f"ts must be a 1-D grid of at least 3 finite numbers, got {ts!r}")
    groups = check_int("groups", groups)
    if groups < 2:
        raise ValueError(f"groups must be >= 2 (their spread is the error), got {groups}")
    batch_size = n if batch_size is None else check_int("batch_size", batch_size)
    m = batch_size // groups
    if m < 2:
        raise ValueError(f"batch_size={batch_size} must give groups={groups} at least 2 each")
    d = _flat(displacement)
    if d.shape != _flat(params).shape:
        raise ValueError("displacement must have the structure and shapes of params")
    if np.any(d == 0):
        raise ValueError("displacement must be non-zero in every coordinate")
    means, errs = [], []
    for t, k in zip(ts, jax.random.split(key, ts.size)):
        idx = jax.random.randint(k, (groups, m), 0, n)
        w = _axpy(jnp.float32(t), displacement, params)
        v = np.stack([_flat(variance_of(w, idx[g])) for g in range(groups)]) * (m / (m - 1))
        means.append(v.mean(0))
        errs.append(v.std(0, ddof=1) / np.sqrt(groups))
    fit = power_law_fit(ts, np.stack(means), stderr=np.stack(errs))  # in t; x_j = t d_j
    beta = np.stack([fit.sigma_g, fit.sigma_gh, fit.sigma_h])
    beta_se = np.stack(fit.stderr)
    scale = np.stack([np.ones_like(d), d, d**2])
    est, est_se = beta / scale, beta_se / np.abs(scale)
    unravel = jax.flatten_util.ravel_pytree(params)[1]
    leaves = jax.tree.leaves(params)

    def tree(a):
        if len(leaves) == 1 and not isinstance(params, dict):
            return np.reshape(a, np.shape(leaves[0]))
        return jax.tree.map(np.asarray, unravel(jnp.asarray(a, jnp.float32)))

    center = _flat(params)
    if len(leaves) == 1 and not isinstance(params, dict):
        center = np.reshape(center, np.shape(leaves[0]))
    model = _valid_power_law(center, *(np.reshape(e, np.shape(center)) for e in est))
    return NoiseFit(
        model,
        tree(est[0]),
        tree(est[1]),
        tree(est[2]),
        (tree(est_se[0]), tree(est_se[1]), tree(est_se[2])),
        params,
    )


@key_first("fit_power_law", new="fit_power_law(key, sample_loss, params, data, displacement)")
def fit_power_law(
    key: jax.Array,
    sample_loss: SampleLoss,
    params: Params,
    data: Any,
    displacement: Params,
    *,
    ts: Sequence[float] | np.ndarray = (-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0),
    batch_size: int | None = None,
    groups: int = 16,
    chunk_size: int | None = None,
) -> NoiseFit:
    """Fit the per-coordinate power law `C_jj(w) ≈ σ_g,j + 2σ_gH,j x_j + σ_H,j x_j²`.

    At each displaced point `w* + t d` (`t` in `ts`, `x = t d`), `groups` independent
    batches of `batch_size // groups` samples (drawn with replacement) give unbiased
    estimates of the per-sample variances `C_jj` (`gradient_moments`); their mean is
    fitted by least squares per coordinate, and their spread — the Monte Carlo error of
    the measurement — is propagated through the fit into the standard errors. The
    diagonal model assumes `C_jj` depends on `x_j` alone; for a network, whose
    per-sample Hessians couple coordinates, the fitted `σ_H,j` also carries the other
    coordinates' share along `d` (docs/theory.md §1).

    Calibrating docs/theory.md §5's noise from the fit: fitted at the large-batch
    minimum, the noise that gives batch-`b_l` SGD the noise of batch `b_s` has
    `α = σ (1/b_s − 1/b_l)` per coordinate (`α_g = σ_g r`, `α_H = σ_H r`,
    `r = 1/b_s − 1/b_l`), i.e. ``sdn.optim.from_moments(key, b_s, b_l,
    sigma_g=fit.sigma_g, sigma_h=fit.sigma_h)`` with the estimates
    clipped at zero, anchored at the minimum.

    Args:
      sample_loss: ``(params, datum) -> scalar``.
      params: `w*`, any pytree.
      data: pytree with leading sample axis `n`.
      displacement: `d`, shaped like `params`, non-zero in every coordinate.
      key: PRNG key of the batches (first; ``key=`` after the other arguments is the
        old spelling, kept for one release with a `DeprecationWarning`).
      ts: at least 3 points `t`.
      batch_size: samples per point (default `n`), split into `groups`.
      groups: `≥ 2` batches per point; their spread gives the errors.
      chunk_size: as in `gradient_moments`.

    Returns:
      A `NoiseFit`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sdn import landscapes
      >>> prob = landscapes.finite_sum_quadratic(jax.random.key(0), n=400, dim=2)
      >>> fit = fit_power_law(jax.random.key(1), prob.sample_loss, prob.minimum, prob.data,
      ...                     jnp.ones(2), groups=4)
      >>> fit.sigma_h.shape, fit.model.variance(prob.minimum).shape
      ((2,), (2,))
    """
    n = _n_samples(data)

    @jax.jit
    def variance_of(w, idx):
        batch = jax.tree.map(lambda a: a[idx], data)
        return gradient_moments(sample_loss, w, batch, chunk_size=chunk_size).variance

    return _fit_per_coordinate(variance_of, params, displacement, ts, n, batch_size, groups, key)


@key_first("fit_network_power_law", new="fit_network_power_law(key, model, x, y, displacement)")
def fit_network_power_law(
    key: jax.Array,
    model: nnx.Module,
    x: jax.Array,
    y: jax.Array,
    displacement: Params,
    *,
    loss: Callable | None = None,
    ts: Sequence[float] | np.ndarray = (-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0),
    batch_size: int | None = None,
    groups: int = 16,
) -> NoiseFit:
    """`fit_power_law` for a Flax NNX network, its variances from `gradient_statistics`.

    The model's ``nnx.Param`` state is `w*`; `displacement` is an ``nnx.State`` like it
    or its pure dict, and the fit's trees are pure dicts. See `fit_power_law` for the
    measurement, the errors and how to calibrate docs/theory.md §5's noise from it.
    """
    graphdef, pure, rest, d = _split_network(model, displacement)
    x, y = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def variance_of(w, idx):
        return batch_gradient_statistics(graphdef, w, x[idx], y[idx], rest=rest, loss=loss).variance

    return _fit_per_coordinate(variance_of, pure, d, ts, x.shape[0], batch_size, groups, key)


def fit_noise_along(profile: NoiseProfile) -> NoiseFit:
    """The power law along a direction, `vᵀC(w* + t v)v ≈ σ_g + 2σ_gH t + σ_H t²`.

    Fitted to a `noise_along` / `network_noise_along` profile by least squares
    (`power_law_fit`); the standard errors are those of the regression (the profile is
    exact over its samples, so they measure how far the profile is from a quadratic).
    The model acts on the scalar coordinate `t` along `v`, centred at 0.

    Example:
      >>> import numpy as np
      >>> t = np.linspace(-1, 1, 9)
      >>> prof = NoiseProfile(t, 0.5 + 3.0 * t**2, t * np.nan, None, t * 0)
      >>> fit = fit_noise_along(prof)
      >>> round(fit.sigma_h, 6), float(fit.model.variance(jnp.float32(1.0)))
      (3.0, 3.5)
    """
    fit = power_law_fit(profile.t, profile.directional)
    return NoiseFit(
        _valid_power_law(0.0, fit.sigma_g, fit.sigma_gh, fit.sigma_h),
        fit.sigma_g,
        fit.sigma_gh,
        fit.sigma_h,
        fit.stderr,
        0.0,
    )


def _variance_and_stderr(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased sample variance over axis 0 and its standard error.

    `Var s² = (μ₄ − σ⁴ (m − 3)/(m − 1)) / m` for `m` independent samples, with the
    sample fourth central moment for `μ₄` and `s²` for `σ²`.
    """
    m = a.shape[0]
    c = a - a.mean(axis=0)
    s2 = np.sum(c**2, axis=0) / (m - 1)
    mu4 = np.mean(c**4, axis=0)
    return s2, np.sqrt(np.maximum(mu4 - s2**2 * (m - 3) / (m - 1), 0.0) / m)


def _empirical_fit(grads: Params, params: Params, directions, n_directions, key) -> NoiseFit:
    """The `NoiseFit` of `noise.empirical(grads)`: diagonal and `vᵀCv` with their errors."""
    if directions is None:
        n_directions = check_int("n_directions", n_directions, minimum=0)
        keys = jax.random.split(key, n_directions) if n_directions else []
        directions = [random_direction(k, params) for k in keys]
    else:
        directions = list(directions)
        struct = jax.tree.structure(params)
        for v in directions:
            if jax.tree.structure(v) != struct or any(
                np.shape(a) != np.shape(b)
                for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(params))
            ):
                raise ValueError("every direction must have the structure and shapes of params")
    leaves = [np.asarray(g, np.float64) for g in jax.tree.leaves(grads)]
    m = leaves[0].shape[0]
    flat = np.concatenate([g.reshape(m, -1) for g in leaves], axis=1)  # (m, P)
    diag, diag_se = _variance_and_stderr(flat)
    if directions:
        proj = flat @ np.stack([_flat(v) for v in directions], axis=1)  # (m, K) of v·g_i
        directional, directional_se = _variance_and_stderr(proj)
    else:
        directional = directional_se = np.zeros(0)
    unravel = jax.flatten_util.ravel_pytree(params)[1]

    def tree(a):
        return jax.tree.map(np.asarray, unravel(jnp.asarray(a, jnp.float32)))

    return NoiseFit(
        noise.empirical(grads, center=params),
        tree(diag),
        None,
        None,
        (tree(diag_se), None, None),
        params,
        directions,
        directional,
        directional_se,
    )


@key_first("fit_empirical", new="fit_empirical(key, sample_loss, params, data)")
def fit_empirical(
    key: jax.Array,
    sample_loss: SampleLoss,
    params: Params,
    data: Any,
    *,
    batch_size: int = 256,
    directions: Sequence[Params] | None = None,
    n_directions: int = 8,
    chunk_size: int | None = None,
) -> NoiseFit:
    """Fit the structured (low-rank empirical) noise model `C(w*) ≈ S` at one point.

    `batch_size` samples are drawn with replacement; their per-sample gradients
    `∇ℓ_i(w*)` (`per_sample_grads`) are the factors of ``sdn.noise.empirical``, whose
    covariance `S` is their unbiased sample covariance: an estimate of the per-sample
    covariance `C(w*)` with its full (non-diagonal) structure, of rank below
    `batch_size` (docs/theory.md §1, §5). The fit holds `batch_size × P` numbers; the
    model never forms a `P × P` matrix.

    Uncertainty: the estimates of the diagonal `C_jj` and of `vᵀCv` along each
    direction `v` are sample variances of `m` independent values (`∂_j ℓ_i` and
    `v·∇ℓ_i`), with standard errors from the sample-variance formula
    `Var s² = (μ₄ − σ⁴ (m − 3)/(m − 1))/m` (fourth moments estimated from the same
    samples). `fit.directional` equals `vᵀ fit.model.covariance(w*) v` exactly. These
    errors hold when the `m` samples show the tails of the per-sample gradients (on a
    finite sum of `sdn.landscapes`, 40 fits of 128 samples gave mean `Z²` = 1.36 against
    1 ± 0.22). At a trained
    network's minimum a few samples can carry most of a coordinate's variance, and a
    batch that misses them reports too small a `C_jj` with too small an error: on a
    digits MLP at training loss 0.011 (`n` = 1437), `vᵀCv` along 6 random directions
    was within 2.5 SE of the exact value at `m` = 256 and 1.3 SE at `m` = 1024, but
    30% (`m` = 256) and 13% (`m` = 1024) of the 9 098 diagonal entries were more than
    3 SE off. For the exact diagonal over all samples use `gradient_statistics`.

    Simulating and injecting it: ``sdn.sgd_sde(grad, fit.model, η, b)`` simulates SGD
    with this noise (`C/b`; for params with several leaves use ``fit.model.ravel()`` on
    the flat vector, as `sdn.simulate` takes array states); ``fit.model.scaled(1/b_s −
    1/b_l)`` is the noise that gives batch-`b_l` SGD the noise of batch `b_s` in
    ``sdn.optim.add_state_dependent_noise`` (docs/theory.md §5; it depends on the state
    only through `α_H`, so it needs no anchor).

    Args:
      sample_loss: ``(params, datum) -> scalar``.
      params: `w*`, any pytree.
      data: pytree with leading sample axis `n`.
      key: PRNG key of the batch and of the random directions (first; ``key=`` after
        the other arguments is the old spelling, kept for one release with a
        `DeprecationWarning`).
      batch_size: `m ≥ 2` samples (with replacement), the model's factors.
      directions: directions `v` (pytrees like `params`, not normalized) to report
        `vᵀCv` along; default `n_directions` random unit vectors.
      n_directions: the number of random directions when `directions` is None.
      chunk_size: as in `per_sample_grads`.

    Returns:
      A `NoiseFit` whose ``model`` is an ``sdn.noise.Empirical``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sdn import landscapes
      >>> prob = landscapes.finite_sum_quadratic(jax.random.key(0), n=400, dim=3)
      >>> fit = fit_empirical(jax.random.key(1), prob.sample_loss, prob.minimum, prob.data,
      ...                     batch_size=64, n_directions=2)
      >>> fit.model.rank, fit.directional.shape, fit.sigma_g.shape
      (64, (2,), (3,))
    """
    n = _n_samples(data)
    m = check_int("batch_size", batch_size, minimum=2)
    k_batch, k_dirs = jax.random.split(key)
    idx = jax.random.randint(k_batch, (m,), 0, n)
    batch = jax.tree.map(lambda a: jnp.asarray(a)[idx], data)
    grads = per_sample_grads(sample_loss, params, batch, chunk_size=chunk_size)
    return _empirical_fit(grads, params, directions, n_directions, k_dirs)


@key_first("fit_network_empirical", new="fit_network_empirical(key, model, x, y)")
def fit_network_empirical(
    key: jax.Array,
    model: nnx.Module,
    x: jax.Array,
    y: jax.Array,
    *,
    loss: Callable | None = None,
    batch_size: int = 256,
    directions: Sequence[Params] | None = None,
    n_directions: int = 8,
    chunk_size: int | None = None,
) -> NoiseFit:
    """`fit_empirical` for a Flax NNX network at its current ``nnx.Param`` state `w*`.

    The fit's trees, the model's factors and the directions are pure dicts like
    ``nnx.to_pure_dict(nnx.state(model, nnx.Param))``; `directions` may also be
    ``nnx.State``. `loss` is ``loss(outputs, y) -> (n,)`` (default: cross-entropy of
    integer labels). See `fit_empirical` for the estimate and its errors.
    """
    graphdef, pure, rest, _ = _split_network(model, None)
    if directions is not None:
        directions = [nnx.to_pure_dict(v) if isinstance(v, nnx.State) else v for v in directions]
    per_example = cross_entropy_losses if loss is None else loss

    def sample_loss(p, datum):
        xi, yi = datum
        out = nnx.merge(graphdef, p, rest)(xi[None])
        return per_example(out, yi[None])[0]

    return fit_empirical(
        key,
        sample_loss,
        pure,
        (jnp.asarray(x), jnp.asarray(y)),
        batch_size=batch_size,
        directions=directions,
        n_directions=n_directions,
        chunk_size=chunk_size,
    )
