"""Noise models: the gradient-noise covariance `C(w)` and the law of its increments.

This module is the shared core of `sdn`. The SDE integrators (`sdn.solvers`,
`sdn.ensemble`) and the optimizer transform (`sdn.optim`) both call these functions;
neither has a copy of its own.

Every model is a frozen dataclass registered as a JAX pytree (its numbers are leaves, so
a model can be built inside `jit`/`vmap` from traced parameters) and offers

- ``variance(w)``: the diagonal of `C(w)`, elementwise, shape of `w`;
- ``covariance(w)``: the full matrix `C(w)` for a flat `w` of shape `(d,)`;
- ``increments(key, w, dt, n)``: `n` independent increments for one path, leading axis `n`
  (Brownian increments `N(0, dt I)` for the Gaussian models);
- ``diffusion(w, dw)``: the noise term for one step, whose covariance is `C(w) dt`
  (`sqrt(C(w)) dw` for the Gaussian models).

The notation follows docs/theory.md §1–2: the SDE of SGD is
`dw = −∇L(w) dt + sqrt(η C(w) / b) dB`, and the factor `η / b` is the SDE's `scale`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import (
    check_broadcastable,
    check_finite,
    check_int,
    check_positive,
    is_concrete,
    pytree_dataclass,
    static_field,
)

Array = jax.Array


class NoiseModel:
    """Base of the noise models; see the module docstring for the interface.

    ``diagonal`` is True when `sqrt(C(w))` acts coordinate by coordinate and each
    coordinate's variance depends only on that coordinate (the case Milstein's scheme
    covers). ``gaussian`` is True when increments are Brownian. ``constant`` is True
    when `C` does not depend on `w`.
    """

    diagonal: bool = True
    gaussian: bool = True
    constant: bool = False

    def variance(self, w: Array) -> Array:
        raise NotImplementedError

    def covariance(self, w: Array) -> Array:
        """Full `C(w)` for a flat `w` of shape `(d,)` (diagonal models: `diag(variance)`)."""
        return jnp.diag(jnp.ravel(self.variance(w)))

    def increments(self, key: Array, w: Array, dt: Array | float, n: int) -> Any:
        """`n` Brownian increments `N(0, dt I)` shaped like `w`, stacked on axis 0."""
        z = jax.random.normal(key, (n, *jnp.shape(w)), dtype=jnp.result_type(w))
        return jnp.sqrt(jnp.asarray(dt, z.dtype)) * z

    def diffusion(self, w: Array, dw: Any) -> Array:
        """`sqrt(C(w)) dw`, elementwise for diagonal models."""
        return self.std(w) * dw

    def std(self, w: Array) -> Array:
        """`sqrt` of the diagonal of `C(w)`, elementwise (diagonal models)."""
        return jnp.sqrt(self.variance(w))

    def check_state(self, w: Array) -> None:
        """Raise ValueError if the model's parameters do not fit a state shaped like `w`."""


def _as_float(x: Any) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


@pytree_dataclass
class Isotropic(NoiseModel):
    """Constant isotropic noise `C = σ I` (Langevin / SGLD)."""

    variance_: Array
    constant = True

    def variance(self, w: Array) -> Array:
        return jnp.broadcast_to(self.variance_, jnp.shape(w)).astype(jnp.result_type(w))

    def check_state(self, w: Array) -> None:
        check_broadcastable("variance", self.variance_, jnp.shape(w), "w0")


def isotropic(variance: float | Array) -> Isotropic:
    """Constant isotropic noise, `C(w) = σ I` (docs/theory.md §2, Langevin).

    Args:
      variance: `σ ≥ 0`, a scalar.

    >>> import jax.numpy as jnp
    >>> isotropic(0.5).variance(jnp.zeros(3))
    Array([0.5, 0.5, 0.5], dtype=float32)
    """
    check_positive("variance", variance, allow_zero=True)
    if is_concrete(variance) and np.ndim(variance) != 0:
        raise ValueError(f"variance must be a scalar, got shape {np.shape(variance)}")
    return Isotropic(_as_float(variance))


@pytree_dataclass
class Diagonal(NoiseModel):
    """Constant diagonal noise `C = diag(σ_j)`."""

    variances: Array
    constant = True

    def variance(self, w: Array) -> Array:
        return jnp.broadcast_to(self.variances, jnp.shape(w)).astype(jnp.result_type(w))

    def check_state(self, w: Array) -> None:
        check_broadcastable("variances", self.variances, jnp.shape(w), "w0")


def diagonal(variances: Array) -> Diagonal:
    """Constant anisotropic noise with diagonal covariance `C = diag(σ_1, …, σ_d)`.

    Args:
      variances: per-coordinate variances `σ_j ≥ 0`, broadcastable to the state.

    >>> import jax.numpy as jnp
    >>> diagonal(jnp.array([1.0, 4.0])).std(jnp.zeros(2))
    Array([1., 2.], dtype=float32)
    """
    check_positive("variances", variances, allow_zero=True)
    return Diagonal(_as_float(variances))


@pytree_dataclass
class Full(NoiseModel):
    """Constant noise with a full covariance matrix and its symmetric square root."""

    covariance_: Array
    factor: Array
    diagonal = False
    constant = True

    def variance(self, w: Array) -> Array:
        return jnp.diag(self.covariance_).astype(jnp.result_type(w))

    def covariance(self, w: Array) -> Array:
        return self.covariance_

    def diffusion(self, w: Array, dw: Array) -> Array:
        return (self.factor @ dw).astype(jnp.result_type(w))

    def check_state(self, w: Array) -> None:
        d = self.covariance_.shape[0]
        if jnp.shape(w) != (d,):
            raise ValueError(
                f"w0 must have shape ({d},) to match covariance of shape {self.covariance_.shape}, "
                f"got {jnp.shape(w)}"
            )


def full(covariance: Array) -> Full:
    """Constant noise with a full covariance `C = Σ` (e.g. `Σ ∝ H`, Hessian-aligned).

    `Σ` must be symmetric positive semi-definite; its symmetric square root is computed
    once here by an eigendecomposition.

    Args:
      covariance: `(d, d)` matrix.

    >>> import jax.numpy as jnp
    >>> full(jnp.array([[2.0, 1.0], [1.0, 2.0]])).factor.shape
    (2, 2)
    """
    cov = _as_float(covariance)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"covariance must be a square matrix, got shape {cov.shape}")
    if is_concrete(cov):
        check_finite("covariance", cov)
        c = np.asarray(cov, dtype=np.float64)
        if not np.allclose(c, c.T, rtol=1e-5, atol=1e-8 * max(1.0, np.abs(c).max())):
            raise ValueError("covariance must be symmetric")
        lam = np.linalg.eigvalsh(c)
        if lam.min() < -1e-6 * max(1.0, abs(lam.max())):
            raise ValueError(
                f"covariance must be positive semi-definite, its smallest eigenvalue is "
                f"{lam.min():.4g}"
            )
    lam, vec = jnp.linalg.eigh((cov + cov.T) / 2)
    factor = (vec * jnp.sqrt(jnp.clip(lam, 0.0))) @ vec.T
    return Full(cov, factor)


def power_law_variance(x: Array, sigma_g: Array, sigma_h: Array, sigma_gh: Array = 0.0) -> Array:
    """The quadratic covariance `σ_g + 2 σ_gH x + σ_H x²` elementwise (docs/theory.md §1).

    Clipped at zero so that rounding never hands a negative variance to a square root.

    >>> float(power_law_variance(2.0, 1.0, 0.5))
    3.0
    """
    return jnp.maximum(sigma_g + 2.0 * sigma_gh * x + sigma_h * jnp.square(x), 0.0)


@pytree_dataclass
class PowerLaw(NoiseModel):
    """State-dependent noise `C_jj(w) = σ_g + 2σ_gH x_j + σ_H x_j²`, `x = w − center`."""

    sigma_g: Array
    sigma_h: Array
    center: Array
    sigma_gh: Array

    def variance(self, w: Array) -> Array:
        x = w - self.center
        return power_law_variance(x, self.sigma_g, self.sigma_h, self.sigma_gh).astype(
            jnp.result_type(w)
        )

    def check_state(self, w: Array) -> None:
        for name in ("sigma_g", "sigma_h", "center", "sigma_gh"):
            check_broadcastable(name, getattr(self, name), jnp.shape(w), "w0")


def power_law(
    sigma_g: Array | float,
    sigma_h: Array | float,
    center: Array | float = 0.0,
    sigma_gh: Array | float = 0.0,
) -> PowerLaw:
    """Power-law (state-dependent) noise, `C(w) = σ_g + 2 σ_gH x + σ_H x²`, `x = w − w*`.

    The covariance of SGD near a minimum `w*` is quadratic in `x` (docs/theory.md §1); taken
    diagonal, it is the noise of the power-law dynamic, whose stationary law is a
    Student-t (§3). Every parameter is a scalar or an array per coordinate.

    Args:
      sigma_g: `σ_g ≥ 0`, the gradient-noise variance at the minimum.
      sigma_h: `σ_H ≥ 0`, the variance of the per-sample curvatures.
      center: the minimum `w*`.
      sigma_gh: `σ_gH`, the covariance of per-sample gradients and curvatures; must obey
        `σ_gH² ≤ σ_g σ_H` so that `C(w) ≥ 0` everywhere.

    >>> import jax.numpy as jnp
    >>> power_law(1.0, 2.0).variance(jnp.array([0.0, 1.0]))
    Array([1., 3.], dtype=float32)
    """
    check_positive("sigma_g", sigma_g, allow_zero=True)
    check_positive("sigma_h", sigma_h, allow_zero=True)
    check_finite("center", center)
    check_finite("sigma_gh", sigma_gh)
    if is_concrete(sigma_g, sigma_h, sigma_gh):
        excess = np.square(np.asarray(sigma_gh)) - np.asarray(sigma_g) * np.asarray(sigma_h)
        if np.any(excess > 1e-6 * (1.0 + np.abs(np.asarray(sigma_g) * np.asarray(sigma_h)))):
            raise ValueError(
                f"sigma_gh must satisfy sigma_gh**2 <= sigma_g * sigma_h (else C(w) < 0 "
                f"somewhere), got sigma_gh={sigma_gh}, sigma_g={sigma_g}, sigma_h={sigma_h}"
            )
    return PowerLaw(*(_as_float(v) for v in (sigma_g, sigma_h, center, sigma_gh)))


class MinibatchDraw(NamedTuple):
    """The increment of the minibatch model: which samples, and `sqrt(dt)`."""

    indices: Array
    sqrt_dt: Array


@pytree_dataclass
class Minibatch(NoiseModel):
    """The exact noise of SGD on a finite sum: a real minibatch, drawn every step."""

    data: Any
    sample_grad: Callable = static_field()
    batch_size: int = static_field()
    replace: bool = static_field()
    gaussian = False
    diagonal = False

    @property
    def n(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]

    def _finite_population(self) -> float:
        if self.replace or self.n == 1:
            return 1.0
        return (self.n - self.batch_size) / (self.n - 1)

    def sample_grads(self, w: Array, data: Any = None) -> Array:
        """Per-sample gradients `∇ℓ_i(w)`, stacked on axis 0 (all samples by default)."""
        data = self.data if data is None else data
        return jax.vmap(self.sample_grad, in_axes=(None, 0))(w, data)

    def covariance(self, w: Array) -> Array:
        """`C(w)` of one sample's gradient, times `(n−b)/(n−1)` without replacement.

        With that factor, `C(w)/b` is the covariance of the minibatch gradient noise
        in both sampling schemes (docs/theory.md §1).
        """
        g = self.sample_grads(w).reshape(self.n, -1)
        dev = g - g.mean(axis=0)
        return (dev.T @ dev) / self.n * self._finite_population()

    def variance(self, w: Array) -> Array:
        g = self.sample_grads(w)
        return jnp.var(g, axis=0) * self._finite_population()

    def increments(self, key: Array, w: Array, dt: Array | float, n: int) -> MinibatchDraw:
        if self.replace:
            idx = jax.random.randint(key, (n, self.batch_size), 0, self.n)
        else:
            keys = jax.random.split(key, n)
            idx = jax.vmap(
                lambda k: jax.random.choice(k, self.n, (self.batch_size,), replace=False)
            )(keys)
        sqrt_dt = jnp.full((n,), jnp.sqrt(jnp.asarray(dt, jnp.result_type(w))))
        return MinibatchDraw(idx, sqrt_dt)

    def batch_gradient(self, w: Array, draw: MinibatchDraw) -> Array:
        """The minibatch gradient `ĝ = (1/b) Σ_{i∈B} ∇ℓ_i(w)` for the drawn batch."""
        batch = jax.tree.map(lambda d: d[draw.indices], self.data)
        return self.sample_grads(w, batch).mean(axis=0)

    def diffusion(self, w: Array, draw: MinibatchDraw) -> Array:
        """`−sqrt(b dt) (ĝ − ∇L)`: covariance `C(w) dt`, so `sqrt(η/b)·` this is `−η ξ`."""
        xi = self.batch_gradient(w, draw) - self.sample_grads(w).mean(axis=0)
        return -draw.sqrt_dt * math.sqrt(self.batch_size) * xi

    def check_state(self, w: Array) -> None:
        g = jax.eval_shape(self.sample_grad, w, jax.tree.map(lambda d: d[0], self.data))
        if g.shape != jnp.shape(w):
            raise ValueError(
                f"sample_grad returns shape {g.shape}, which does not match w0 of shape "
                f"{jnp.shape(w)}"
            )


def minibatch(
    sample_grad: Callable[[Array, Any], Array],
    data: Any,
    batch_size: int,
    *,
    replace: bool = True,
) -> Minibatch:
    """The exact gradient noise of minibatch SGD on `L(w) = (1/n) Σ_i ℓ_i(w)`.

    Each increment is a fresh batch of `b` sample indices. Its noise `ξ = ĝ − ∇L` has
    `Cov ξ = C(w)/b` with replacement and `C(w)/b · (n−b)/(n−1)` without (docs/theory.md §1);
    `covariance(w)` includes that factor. Inside `sdn.sgd_sde` with the `"sgd"` solver,
    a step is SGD itself, `w − η ĝ`.

    Args:
      sample_grad: `∇ℓ_i(w)` as a function `(w, datum) -> gradient shaped like w`.
      data: a pytree of arrays with a leading sample axis of length `n`.
      batch_size: `b`, with `1 ≤ b` (and `b ≤ n` without replacement).
      replace: sample with replacement (default) or without.

    >>> import jax.numpy as jnp
    >>> c = jnp.array([-1.0, 1.0])
    >>> model = minibatch(lambda w, ci: w - ci, c, batch_size=1)
    >>> model.variance(jnp.array(0.0))
    Array(1., dtype=float32)
    """
    if not callable(sample_grad):
        raise TypeError(f"sample_grad must be callable, got {type(sample_grad).__name__}")
    leaves = jax.tree.leaves(data)
    if not leaves or any(np.ndim(x) < 1 for x in leaves):
        raise ValueError("data must be a pytree of arrays with a leading sample axis")
    n = leaves[0].shape[0]
    if any(x.shape[0] != n for x in leaves):
        raise ValueError(
            f"every array in data needs the same leading sample axis, got "
            f"{[x.shape[0] for x in leaves]}"
        )
    b = check_int("batch_size", batch_size)
    if not replace and b > n:
        raise ValueError(f"batch_size={b} exceeds the n={n} samples (replace=False)")
    return Minibatch(jax.tree.map(jnp.asarray, data), sample_grad, b, bool(replace))


def _symmetric_stable(key: Array, alpha: Array, shape: tuple[int, ...], dtype) -> Array:
    """Standard symmetric α-stable draws by Chambers–Mallows–Stuck (β = 0)."""
    ku, ke = jax.random.split(key)
    half_pi = jnp.pi / 2
    v = jax.random.uniform(ku, shape, dtype, minval=-half_pi, maxval=half_pi)
    # Keep V away from ±π/2, where cos(V) → 0 overflows the float32 power below.
    eps = jnp.finfo(dtype).eps
    v = jnp.clip(v, -half_pi + eps, half_pi - eps)
    e = jax.random.exponential(ke, shape, dtype)
    alpha = jnp.asarray(alpha, dtype)
    stable = (
        jnp.sin(alpha * v)
        / jnp.cos(v) ** (1 / alpha)
        * (jnp.cos(v - alpha * v) / e) ** ((1 - alpha) / alpha)
    )
    return jnp.where(jnp.abs(alpha - 1) < 1e-6, jnp.tan(v), stable)


@pytree_dataclass
class AlphaStable(NoiseModel):
    """Symmetric α-stable (Lévy) noise of index `α` and scale `c`."""

    alpha: Array
    scale: Array
    gaussian = False
    constant = True

    def variance(self, w: Array) -> Array:
        """Infinite for `α < 2` (the law has no second moment); `2c²` at `α = 2`."""
        var = jnp.where(self.alpha < 2, jnp.inf, 2 * jnp.square(self.scale))
        return jnp.broadcast_to(var, jnp.shape(w)).astype(jnp.result_type(w))

    def std(self, w: Array) -> Array:
        return jnp.broadcast_to(self.scale, jnp.shape(w)).astype(jnp.result_type(w))

    def increments(self, key: Array, w: Array, dt: Array | float, n: int) -> Array:
        """`dt^(1/α) S` with `S` standard symmetric α-stable: self-similar Lévy increments."""
        dtype = jnp.result_type(w)
        s = _symmetric_stable(key, self.alpha, (n, *jnp.shape(w)), dtype)
        return jnp.asarray(dt, dtype) ** (1 / jnp.asarray(self.alpha, dtype)) * s

    def check_state(self, w: Array) -> None:
        check_broadcastable("scale", self.scale, jnp.shape(w), "w0")


def alpha_stable(alpha: float | Array, scale: float | Array = 1.0) -> AlphaStable:
    """Symmetric α-stable noise, for comparison with the α-stable models of SGD.

    The increment over a step `dt` is `c · dt^(1/α) · S`, `S` drawn by
    Chambers–Mallows–Stuck with characteristic function `exp(−|t|^α)`. At `α = 2` it is
    Gaussian with variance `2 c² dt`; for `α < 2` the variance is infinite.

    Args:
      alpha: the index, `0 < α ≤ 2` (a scalar).
      scale: `c > 0`, scalar or per coordinate.

    >>> import jax, jax.numpy as jnp
    >>> alpha_stable(1.5).increments(jax.random.key(0), jnp.zeros(2), 0.01, 3).shape
    (3, 2)
    """
    if is_concrete(alpha):
        a = np.asarray(alpha)
        if a.ndim != 0 or not (0 < float(a) <= 2):
            raise ValueError(f"alpha must be a scalar in (0, 2], got {alpha}")
    check_positive("scale", scale)
    return AlphaStable(_as_float(alpha), _as_float(scale))
