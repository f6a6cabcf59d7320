"""Noise models: the gradient-noise covariance `C(w)` and the law of its increments.

This module is the shared core of `sdn`. The SDE integrators (`sdn.sde`, `sdn.solvers`,
`sdn.ensemble`) and the optimizer transform (`sdn.optim`) both call these methods and
nothing else; neither has sampling code of its own.

Every model is a frozen dataclass registered as a JAX pytree (its numbers are leaves, so
a model can be built inside `jit`/`vmap` from traced parameters) and offers

- ``variance(w)``: the diagonal of `C(w)`, elementwise, shaped like `w` (a pytree of
  states gives a pytree of variances; parameters may be scalars, arrays broadcastable
  to each leaf, or pytrees matching `w`);
- ``covariance(w)``: the full matrix `C(w)` for a flat `w` of shape `(d,)`;
- ``sample(key, w, dt=None, increments="gaussian")``: one draw of the noise term
  `sqrt(C(w)) dW` over a step `dt` (`dt=None`: unit), shaped like the pytree `w`;
- ``increments(key, w, dt, n, increments="gaussian")``: `n` standard increments for one
  path, leading axis `n`, and ``diffusion(w, dw)``: the noise term for one of them, whose
  covariance is `C(w) dt` (`sqrt(C(w)) dw` for the Gaussian models);
- ``g_dg(w)``: `g g' = ½ ∂C_jj/∂w_j` for diagonal models (Milstein, Heun), computed from
  `C` itself so that it stays finite where `C(w) = 0`.

``increments="two_point"`` replaces each `N(0, dt)` by `±sqrt(dt)` with equal
probability (one random bit): the same covariance, so weak (in law) results keep their
order, but the noise is no longer Gaussian. Gaussian models only.

Attributes say what a model is, and solvers state what they need in those terms
(``gaussian``, ``diagonal``, ``constant``, ``stratonovich_convertible``); see
`sdn.solvers`. The notation follows docs/theory.md §1–2: the SDE of SGD is
`dw = −∇L(w) dt + sqrt(η C(w) / b) dB`, and the factor `η / b` is the SDE's `scale`.

Names: `σ_g`, `σ_H`, `σ_gH` (``sigma_*``) are always the coefficients of the modelled
covariance `C(w)`. The multipliers `α_g`, `α_H` (``alpha_*``) of the two *measured*
models (`gradient_variance`, `fluctuation`) scale a gradient statistic the training loop
measures; they are not moments of anything.
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

INCREMENTS = ("gaussian", "two_point")
"""The laws of the standard increment: Brownian `N(0, dt)`, or `±sqrt(dt)` (weak)."""


def check_increments(increments: str) -> str:
    """Return `increments` if it names a law of `INCREMENTS`, else raise ValueError."""
    if increments not in INCREMENTS:
        raise ValueError(f"increments must be one of {INCREMENTS}, got {increments!r}")
    return increments


def rademacher(key: Array, shape: tuple[int, ...], dtype: Any) -> Array:
    """Independent `±1` with equal probability, from one random bit each.

    The bits come 32 to a `uint32` word, so the generator makes `1/32` of the words a
    normal draw of the same shape needs (the normal draw is the cost of a noise step on
    the CPU).

    >>> import jax
    >>> rademacher(jax.random.key(0), (2, 3), jnp.float32).shape
    (2, 3)
    """
    n = math.prod(shape)
    words = jax.random.bits(key, (max(1, -(-n // 32)),), jnp.uint32)
    bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    signs = 2 * bits.reshape(-1)[:n].astype(dtype) - 1
    return signs.reshape(shape)


def standard_increments(
    key: Array,
    shape: tuple[int, ...],
    dtype: Any,
    dt: Array | float | None = None,
    increments: str = "gaussian",
) -> Array:
    """Independent standard increments: `N(0, dt)` or `±sqrt(dt)` (``"two_point"``).

    Both have mean 0 and variance `dt` (`dt=None`: 1); the two-point law matches the
    Gaussian's first three moments, which is what weak order 1 needs.
    """
    if increments == "gaussian":
        z = jax.random.normal(key, shape, dtype)
    elif increments == "two_point":
        z = rademacher(key, shape, dtype)
    else:
        check_increments(increments)
    return z if dt is None else jnp.sqrt(jnp.asarray(dt, dtype)) * z


def _per_leaf(name: str, value: Any, treedef: Any) -> list:
    """A model parameter as one entry per leaf of the state: repeat an array, flatten a tree."""
    n = treedef.num_leaves
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(value)):
        return [value] * n
    try:
        return treedef.flatten_up_to(value)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{name} is a pytree that does not match the state's structure {treedef}"
        ) from err


def leafwise(fn: Callable, w: Any, **params: Any) -> Any:
    """`fn(leaf, **params_of_that_leaf)` over the leaves of the state `w`, as a tree like `w`.

    Each parameter is either one array (used for every leaf, broadcast) or a pytree with
    `w`'s structure.
    """
    leaves, treedef = jax.tree.flatten(w)
    cols = {k: _per_leaf(k, v, treedef) for k, v in params.items()}
    out = [fn(x, **{k: c[i] for k, c in cols.items()}) for i, x in enumerate(leaves)]
    return jax.tree.unflatten(treedef, out)


def _dtype(x: Any) -> Any:
    return jnp.result_type(x)


class NoiseModel:
    """Base of the noise models; see the module docstring for the interface.

    Attributes (what a model is; solvers list the ones they need):
      gaussian: increments are Brownian (so ``increments="two_point"`` is allowed).
      diagonal: `sqrt(C(w))` acts coordinate by coordinate and `C_jj` depends on `w_j`
        only (Milstein's case).
      constant: `C` does not depend on `w` (known at trace time).
      stratonovich_convertible: the Itô–Stratonovich drift correction `½ g g'` is known
        (diagonal or constant noise; Heun's case).
      scale_exponent: the SDE multiplies the noise term by `scale ** scale_exponent`:
        `½` for Gaussian noise (`sqrt(η/b)`), `1 − 1/α` for α-stable noise, so that a
        step of length `η` is SGD's jump `η ξ` in both.
      extra_arg: for the measured models, the name of the gradient statistic the
        optimizer passes them each step (``"grad_variance"``, ``"grad_fluctuation"``).
    """

    diagonal: bool = True
    gaussian: bool = True
    constant: bool = False
    scale_exponent: Any = 0.5
    extra_arg: str | None = None
    _state_params: tuple[str, ...] = ()

    @property
    def stratonovich_convertible(self) -> bool:
        return bool(self.diagonal or self.constant)

    def variance(self, w: Any) -> Any:
        raise NotImplementedError

    def covariance(self, w: Array) -> Array:
        """Full `C(w)` for a flat `w` of shape `(d,)` (diagonal models: `diag(variance)`)."""
        return jnp.diag(jnp.ravel(self.variance(w)))

    def std(self, w: Any) -> Any:
        """`sqrt` of the diagonal of `C(w)`, elementwise, so that `std² = variance`."""
        return jax.tree.map(jnp.sqrt, self.variance(w))

    def g_dg(self, w: Array) -> Array:
        """`g g' = ½ ∂C_jj/∂w_j` with `g = sqrt(C_jj)` (diagonal models).

        Computed from `C` directly (a jvp with a vector of ones, which for diagonal noise
        is the diagonal derivative), not by differentiating `sqrt(C)`: finite where
        `C(w) = 0`.
        """
        _, dc = jax.jvp(self.variance, (w,), (jnp.ones_like(w),))
        return 0.5 * dc

    def standard(self, key: Array, w: Any, dt: Any = None, increments: str = "gaussian") -> Any:
        """Standard increments shaped like the pytree `w` (one key per leaf)."""
        if increments != "gaussian" and not self.gaussian:
            check_increments(increments)
            raise ValueError(
                f"increments={increments!r} needs a Gaussian noise model, got {type(self).__name__}"
            )
        leaves, treedef = jax.tree.flatten(w)
        keys = jax.random.split(key, len(leaves)) if len(leaves) > 1 else [key]
        out = [
            standard_increments(k, jnp.shape(x), _dtype(x), dt, increments)
            for k, x in zip(keys, leaves)
        ]
        return jax.tree.unflatten(treedef, out)

    def sample(self, key: Array, w: Any, dt: Any = None, increments: str = "gaussian") -> Any:
        """One draw of the noise term `sqrt(C(w)) dW`, shaped like the pytree `w`.

        Its covariance is `C(w) dt` (`dt=None`: `C(w)`). With ``increments="two_point"``
        each standard normal is a random sign: same covariance, not Gaussian.
        """
        return self.diffusion(w, self.standard(key, w, dt, increments))

    def increments(
        self, key: Array, w: Array, dt: Array | float, n: int, increments: str = "gaussian"
    ) -> Any:
        """`n` standard increments (`N(0, dt I)` or `±sqrt(dt)`) shaped like `w`, on axis 0."""
        return self.standard(key, jnp.zeros((n, *jnp.shape(w)), _dtype(w)), dt, increments)

    def diffusion(self, w: Any, dw: Any) -> Any:
        """`sqrt(C(w)) dw`, elementwise for diagonal models."""
        return jax.tree.map(jnp.multiply, self.std(w), dw)

    def check_state(self, w: Any) -> None:
        """Raise ValueError if the model's parameters do not fit a state shaped like `w`."""
        leaves, treedef = jax.tree.flatten(w)
        for name in self._state_params:
            for value, x in zip(_per_leaf(name, getattr(self, name), treedef), leaves):
                check_broadcastable(name, value, jnp.shape(x), "w0")


def _check_tree(name: str, value: Any, *, allow_zero: bool = True) -> None:
    for leaf in jax.tree.leaves(value):
        check_positive(name, leaf, allow_zero=allow_zero)


def _as_float_tree(x: Any) -> Any:
    return jax.tree.map(_as_float, x)


def _as_float(x: Any) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


@pytree_dataclass
class Isotropic(NoiseModel):
    """Constant isotropic noise `C = σ I` (Langevin / SGLD)."""

    variance_: Array
    constant = True
    _state_params = ("variance_",)

    def variance(self, w: Any) -> Any:
        return leafwise(
            lambda x, v: jnp.broadcast_to(v, jnp.shape(x)).astype(_dtype(x)), w, v=self.variance_
        )

    def diffusion(self, w: Any, dw: Any) -> Any:
        return jax.tree.map(lambda d: (jnp.sqrt(self.variance_) * d).astype(_dtype(d)), dw)


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
    """Constant diagonal noise `C = diag(σ_j)`; `σ` an array or a pytree like the state."""

    variances: Any
    constant = True
    _state_params = ("variances",)

    def variance(self, w: Any) -> Any:
        return leafwise(
            lambda x, v: jnp.broadcast_to(v, jnp.shape(x)).astype(_dtype(x)), w, v=self.variances
        )


def diagonal(variances: Any) -> Diagonal:
    """Constant anisotropic noise with diagonal covariance `C = diag(σ_1, …, σ_d)`.

    Args:
      variances: per-coordinate variances `σ_j ≥ 0`, broadcastable to the state, or a
        pytree shaped like a pytree state (e.g. like the params, in the optimizer).

    >>> import jax.numpy as jnp
    >>> diagonal(jnp.array([1.0, 4.0])).std(jnp.zeros(2))
    Array([1., 2.], dtype=float32)
    """
    _check_tree("variances", variances)
    return Diagonal(_as_float_tree(variances))


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
        """`Σ^½ dw`: with two-point `dw`, one sign per column of the square root."""
        return (dw @ self.factor.T).astype(jnp.result_type(w))

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
    once here by an eigendecomposition. The state is a flat vector of shape `(d,)`.

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


def _static_zero(*values: Any) -> bool:
    """True if every leaf is a Python or NumPy number (or array) equal to 0.

    Decided from the arguments a model is built from, never from JAX arrays: a model
    built from traced (or injected) parameters is state-dependent, whatever their value,
    so that `init` and a jitted `update` agree on the state they carry.
    """
    leaves = jax.tree.leaves(values)
    return all(
        isinstance(v, int | float | np.number | np.ndarray)
        and not isinstance(v, bool)
        and not np.any(np.asarray(v))
        for v in leaves
    )


@pytree_dataclass
class PowerLaw(NoiseModel):
    """State-dependent noise `C_jj(w) = σ_g + 2σ_gH x_j + σ_H x_j²`, `x = w − center`."""

    sigma_g: Any
    sigma_h: Any
    center: Any
    sigma_gh: Any
    constant: bool = static_field(default=False)
    _state_params = ("sigma_g", "sigma_h", "center", "sigma_gh")

    def variance(self, w: Any) -> Any:
        def one(x, sg, sh, c, sgh):
            return power_law_variance(x - c, sg, sh, sgh).astype(_dtype(x))

        return leafwise(one, w, sg=self.sigma_g, sh=self.sigma_h, c=self.center, sgh=self.sigma_gh)


def power_law(
    sigma_g: Any,
    sigma_h: Any,
    center: Any = 0.0,
    sigma_gh: Any = 0.0,
) -> PowerLaw:
    """Power-law (state-dependent) noise, `C(w) = σ_g + 2 σ_gH x + σ_H x²`, `x = w − w*`.

    The covariance of SGD near a minimum `w*` is quadratic in `x` (docs/theory.md §1); taken
    diagonal, it is the noise of the power-law dynamic, whose stationary law is a
    Student-t (§3). Every parameter is a scalar, an array per coordinate, or a pytree
    like a pytree state. In the optimizer (`sdn.optim`) the model is evaluated at
    `x = w − w̄` and `C` is the covariance of the added noise itself.

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
    _check_tree("sigma_g", sigma_g)
    _check_tree("sigma_h", sigma_h)
    check_finite("center", center)
    check_finite("sigma_gh", sigma_gh)
    leaves = [
        jax.tree_util.treedef_is_leaf(jax.tree.structure(v)) for v in (sigma_g, sigma_h, sigma_gh)
    ]
    if all(leaves) and is_concrete(sigma_g, sigma_h, sigma_gh):
        excess = np.square(np.asarray(sigma_gh)) - np.asarray(sigma_g) * np.asarray(sigma_h)
        if np.any(excess > 1e-6 * (1.0 + np.abs(np.asarray(sigma_g) * np.asarray(sigma_h)))):
            raise ValueError(
                f"sigma_gh must satisfy sigma_gh**2 <= sigma_g * sigma_h (else C(w) < 0 "
                f"somewhere), got sigma_gh={sigma_gh}, sigma_g={sigma_g}, sigma_h={sigma_h}"
            )
    return PowerLaw(
        *(_as_float_tree(v) for v in (sigma_g, sigma_h, center, sigma_gh)),
        constant=_static_zero(sigma_h, sigma_gh),
    )


@pytree_dataclass
class GradientVariance(NoiseModel):
    """Measured diagonal noise: `C_jj = v_j (α_g + α_H x_j²)` with `v` given every step.

    `v` is a per-coordinate gradient variance the training loop measures (the extra
    argument ``grad_variance``); `α_g`, `α_H` multiply it. ``with_data(v)`` returns the
    power-law model `σ_g = α_g v`, `σ_H = α_H v` for that step.
    """

    alpha_g: Any
    alpha_h: Any
    constant: bool = static_field(default=False)
    extra_arg = "grad_variance"
    _state_params = ("alpha_g", "alpha_h")

    def with_data(self, v: Any) -> PowerLaw:
        v = jax.tree.map(lambda a: jnp.maximum(a, 0), v)  # negative estimates count as 0
        scaled = [
            jax.tree.map(lambda vi, a: vi * a, v, _broadcast_like(a, v))
            for a in (self.alpha_g, self.alpha_h)
        ]
        return PowerLaw(scaled[0], scaled[1], jnp.zeros(()), jnp.zeros(()), self.constant)

    def variance(self, w: Any) -> Any:
        raise ValueError(
            "gradient_variance needs the measured variance: use with_data(grad_variance)"
        )


def _broadcast_like(value: Any, tree: Any) -> Any:
    """`value` as a pytree like `tree`: one array repeated, or the pytree itself."""
    treedef = jax.tree.structure(tree)
    return jax.tree.unflatten(treedef, _per_leaf("alpha", value, treedef))


def gradient_variance(alpha_g: Any, alpha_h: Any = 0.0) -> GradientVariance:
    """Gaussian noise of a measured per-coordinate variance `v`: `C = diag(v (α_g + α_H x²))`.

    For the optimizer's ``grad_variance`` extra argument (docs/theory.md §5): `v` is the
    per-sample gradient variance `C_jj(w)` estimated from microbatches, `α_g` the factor
    that multiplies it (`1/b_small − 1/b_large` to restore a small batch's noise) and
    `α_H` an optional state dependence. `α` are multipliers, not moments.

    >>> import jax.numpy as jnp
    >>> gradient_variance(0.5).with_data(jnp.array([2.0])).variance(jnp.zeros(1))
    Array([1.], dtype=float32)
    """
    _check_tree("alpha_g", alpha_g)
    _check_tree("alpha_h", alpha_h)
    return GradientVariance(
        _as_float_tree(alpha_g), _as_float_tree(alpha_h), constant=_static_zero(alpha_h)
    )


@pytree_dataclass
class Fluctuation(NoiseModel):
    """The structured noise of a gradient fluctuation: `ζ = sqrt(α_g + α_H x²) ⊙ f/2`.

    `f = g_A − g_B` is the difference of two gradients the training loop measures (the
    extra argument ``grad_fluctuation``). ``with_data(f)`` binds one step's `f`; then
    ``sample`` returns `ζ` (no random draw) and ``variance`` its conditional second
    moment `(α_g + α_H x²) (f/2)²`. Over batches, `Cov(f/2) = C(w)/B` with the full
    covariance structure of the per-sample gradients.
    """

    alpha_g: Any
    alpha_h: Any
    fluctuation: Any = None
    constant: bool = static_field(default=False)
    extra_arg = "grad_fluctuation"
    gaussian = False
    diagonal = False
    _state_params = ("alpha_g", "alpha_h")

    def with_data(self, f: Any) -> Fluctuation:
        return Fluctuation(self.alpha_g, self.alpha_h, f, self.constant)

    def _factor(self, w: Any) -> Any:
        return leafwise(
            lambda x, ag, ah: (ag + ah * jnp.square(x)).astype(_dtype(x)),
            w,
            ag=self.alpha_g,
            ah=self.alpha_h,
        )

    def _half(self) -> Any:
        if self.fluctuation is None:
            raise ValueError(
                "the fluctuation model needs its data: use with_data(grad_fluctuation)"
            )
        return jax.tree.map(lambda f: 0.5 * f, self.fluctuation)

    def variance(self, w: Any) -> Any:
        return jax.tree.map(
            lambda a, h: a * jnp.square(h.astype(a.dtype)), self._factor(w), self._half()
        )

    def sample(self, key: Array, w: Any, dt: Any = None, increments: str = "gaussian") -> Any:
        if increments != "gaussian":
            check_increments(increments)
            raise ValueError(
                f"increments={increments!r} needs a Gaussian noise model; the fluctuation "
                "model draws nothing (its noise is the given g_A − g_B)"
            )
        half = self._half()
        if dt is not None:
            half = jax.tree.map(lambda h: jnp.sqrt(jnp.asarray(dt, h.dtype)) * h, half)
        return jax.tree.map(lambda a, h: jnp.sqrt(a) * h.astype(a.dtype), self._factor(w), half)

    def increments(self, key, w, dt, n, increments="gaussian"):
        raise ValueError(
            "the fluctuation model takes its noise from the training loop's gradients "
            "(grad_fluctuation=g_A − g_B); it has no law of its own to simulate — use "
            "noise.minibatch for SGD's exact noise"
        )


def fluctuation(alpha_g: Any, alpha_h: Any = 0.0) -> Fluctuation:
    """Noise from gradient fluctuations `f = g_A − g_B`: `ζ = sqrt(α_g + α_H x²) f/2`.

    With `g_A`, `g_B` the means over two independent halves of a batch of size `B`,
    `Cov(f/2) = C(w)/B` with the real (full) covariance structure, at no extra gradient
    cost (docs/theory.md §5). `α_g = k²` is the squared multiplier of that fluctuation
    (`k² = B/b_small − B/b_large` gives a batch-`B` step the noise of batch `b_small`);
    `α_H` adds a state dependence. `α` are multipliers, not moments.

    >>> import jax, jax.numpy as jnp
    >>> m = fluctuation(4.0).with_data(jnp.array([1.0, -1.0]))
    >>> m.sample(jax.random.key(0), jnp.zeros(2))
    Array([ 1., -1.], dtype=float32)
    """
    _check_tree("alpha_g", alpha_g)
    _check_tree("alpha_h", alpha_h)
    return Fluctuation(
        _as_float_tree(alpha_g), _as_float_tree(alpha_h), constant=_static_zero(alpha_h)
    )


@pytree_dataclass
class Empirical(NoiseModel):
    """Gaussian noise of a sample covariance: `ζ = sqrt(α_g + α_H x²) ⊙ Fᵀz/√m`.

    `F` (``factors``) holds `m` centred gradient samples, a pytree like the state whose
    leaves have a leading axis `m`; `z ~ N(0, I_m)` is one draw per factor, shared by
    every leaf, so the cross-coordinate (and cross-leaf) structure of `FᵀF/m` is kept and
    no `P × P` matrix is ever formed. With `D(x) = diag(sqrt(α_g + α_H x²))`, `x = w −
    center`, the covariance is `C(w) = D (FᵀF/m) D`; ``variance(w)`` is its diagonal.
    """

    factors: Any
    alpha_g: Any
    alpha_h: Any
    center: Any
    constant: bool = static_field(default=False)
    diagonal = False
    _state_params = ("alpha_g", "alpha_h", "center")

    @property
    def rank(self) -> int:
        """`m`, the number of factors (the covariance has rank at most `m`)."""
        return jax.tree.leaves(self.factors)[0].shape[0]

    def scaled(self, factor: Any) -> Empirical:
        """The same model with `C` multiplied by `factor` (e.g. `1/b_s − 1/b_l`, §5)."""
        check_positive("factor", factor, allow_zero=True)
        return Empirical(
            self.factors,
            jax.tree.map(lambda a: factor * a, self.alpha_g),
            jax.tree.map(lambda a: factor * a, self.alpha_h),
            self.center,
            self.constant,
        )

    def ravel(self) -> Empirical:
        """The same model on the flat state ``jax.flatten_util.ravel_pytree(w)[0]``.

        `sdn.simulate` takes array states; a model fitted on a pytree of params (as
        `sdn.train.fit_network_empirical` returns it) is simulated on the flat vector.
        """
        m = self.rank
        leaves = jax.tree.leaves(self.factors)
        treedef = jax.tree.structure(self.factors)

        def flat(name, value):
            if jax.tree_util.treedef_is_leaf(jax.tree.structure(value)) and np.ndim(value) == 0:
                return value
            per = _per_leaf(name, value, treedef)
            return jnp.concatenate(
                [jnp.ravel(jnp.broadcast_to(v, f.shape[1:])) for v, f in zip(per, leaves)]
            )

        return Empirical(
            jnp.concatenate([jnp.reshape(f, (m, -1)) for f in leaves], axis=1),
            flat("alpha_g", self.alpha_g),
            flat("alpha_h", self.alpha_h),
            flat("center", self.center),
            self.constant,
        )

    def _dtype(self) -> Any:
        return _dtype(jax.tree.leaves(self.factors)[0])

    def _scale2(self, w: Any) -> Any:
        """`α_g + α_H x²` per coordinate, shaped like `w`."""
        if self.constant:
            return leafwise(
                lambda x, ag: jnp.broadcast_to(ag, jnp.shape(x)).astype(_dtype(x)),
                w,
                ag=self.alpha_g,
            )
        return leafwise(
            lambda x, ag, ah, c: (ag + ah * jnp.square(x - c)).astype(_dtype(x)),
            w,
            ag=self.alpha_g,
            ah=self.alpha_h,
            c=self.center,
        )

    def _factor_leaves(self, w: Any) -> list:
        leaves, treedef = jax.tree.flatten(w)
        try:
            return treedef.flatten_up_to(self.factors)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"the empirical model's factors do not match the state's structure {treedef}"
            ) from err

    def variance(self, w: Any) -> Any:
        """`(α_g + α_H x_j²) (FᵀF/m)_jj`: the diagonal of `C(w)`, shaped like `w`."""
        m = self.rank
        diag = [jnp.sum(jnp.square(f), axis=0) / m for f in self._factor_leaves(w)]
        diag = jax.tree.unflatten(jax.tree.structure(w), diag)
        return jax.tree.map(lambda s, d: s * d.astype(s.dtype), self._scale2(w), diag)

    def covariance(self, w: Array) -> Array:
        """`D (FᵀF/m) D` on the flat state (the leaves raveled and concatenated)."""
        flat = jnp.concatenate(
            [jnp.reshape(f, (self.rank, -1)) for f in self._factor_leaves(w)], axis=1
        )
        d = jnp.sqrt(jnp.concatenate([jnp.ravel(s) for s in jax.tree.leaves(self._scale2(w))]))
        root = flat * d
        return (root.T @ root / self.rank).astype(jnp.result_type(jax.tree.leaves(w)[0]))

    def standard(self, key: Array, w: Any, dt: Any = None, increments: str = "gaussian") -> Array:
        """`m` standard increments, one per factor (not shaped like `w`)."""
        return standard_increments(key, (self.rank,), self._dtype(), dt, increments)

    def increments(
        self, key: Array, w: Any, dt: Array | float, n: int, increments: str = "gaussian"
    ) -> Array:
        """`n` draws of the `m` standard increments, shape `(n, m)`."""
        return standard_increments(key, (n, self.rank), self._dtype(), dt, increments)

    def diffusion(self, w: Any, dw: Array) -> Any:
        """`D(x) Fᵀ dw / √m` for `m` standard increments `dw` (covariance `C(w) dt`)."""
        m = self.rank
        if jnp.shape(dw) != (m,):
            raise ValueError(
                f"the empirical model takes one increment per factor, shape ({m},), got "
                f"shape {jnp.shape(dw)} (draw them with its `standard` or `increments`)"
            )
        inv = 1.0 / math.sqrt(m)
        leaves = self._factor_leaves(w)
        noise = [jnp.tensordot(dw.astype(f.dtype), f, axes=1) * inv for f in leaves]
        noise = jax.tree.unflatten(jax.tree.structure(w), noise)
        return jax.tree.map(
            lambda s, z: (jnp.sqrt(s) * z.astype(s.dtype)).astype(s.dtype),
            self._scale2(w),
            noise,
        )

    def check_state(self, w: Any) -> None:
        super().check_state(w)
        m = self.rank
        for f, x in zip(self._factor_leaves(w), jax.tree.leaves(w)):
            if jnp.shape(f) != (m, *jnp.shape(x)):
                raise ValueError(
                    f"factors must have shape (m, *state_shape) = {(m, *jnp.shape(x))} per "
                    f"leaf of w0, got {jnp.shape(f)}"
                )


def empirical(
    gradients: Any, alpha_g: Any = 1.0, alpha_h: Any = 0.0, center: Any = 0.0
) -> Empirical:
    """The noise of `m` gradient samples: `C = S`, their sample covariance (low rank).

    `gradients` are `m ≥ 2` samples of the gradient at one point (e.g. per-sample
    gradients `∇ℓ_i(w)` of a batch, `sdn.train.per_sample_grads`), a pytree like the
    state with a leading axis `m`. They are centred and scaled by `sqrt(m/(m − 1))`, so
    that with these factors `F`, `FᵀF/m = S` is the unbiased sample covariance, an
    estimate of the per-sample covariance `C(w)` with its full structure (docs/theory.md
    §1, §5). A draw is `Fᵀz/√m` with `z ~ N(0, I_m)`: `O(m P)` work, never a `P × P`
    matrix. `α_g`, `α_H` multiply it, `C(w) = D S D` with `D = diag(sqrt(α_g + α_H x²))`,
    `x = w − center` (the same state dependence as `fluctuation`); the defaults give
    `C = S`. `sdn.train.fit_empirical` measures one with its uncertainty.

    Args:
      gradients: `m ≥ 2` gradient samples, leaves `(m, *leaf_shape)`.
      alpha_g: multiplier of `S` (scalar, array or pytree like the state), `≥ 0`.
      alpha_h: state dependence, `≥ 0`; the Python number 0 makes the noise constant.
      center: the point `x` is measured from.

    >>> import jax, jax.numpy as jnp
    >>> m = empirical(jnp.array([[1.0, 1.0], [-1.0, -1.0]]))  # perfectly correlated
    >>> m.covariance(jnp.zeros(2)).round(4)
    Array([[2., 2.],
           [2., 2.]], dtype=float32)
    >>> z = m.sample(jax.random.key(0), jnp.zeros(2))
    >>> bool(z[0] == z[1])
    True
    """
    leaves = jax.tree.leaves(gradients)
    if not leaves or any(np.ndim(g) < 1 for g in leaves):
        raise ValueError("gradients must be a pytree of arrays with a leading sample axis")
    m = {np.shape(g)[0] for g in leaves}
    if len(m) != 1:
        raise ValueError(f"every leaf of gradients needs the same leading axis, got {sorted(m)}")
    m = m.pop()
    if m < 2:
        raise ValueError(f"gradients needs at least 2 samples on its leading axis, got {m}")
    for g in leaves:
        check_finite("gradients", g)
    _check_tree("alpha_g", alpha_g)
    _check_tree("alpha_h", alpha_h)
    check_finite("center", center)
    root = math.sqrt(m / (m - 1))

    def factor(g):
        g = _as_float(g)
        return (g - jnp.mean(g, axis=0)) * jnp.asarray(root, g.dtype)

    return Empirical(
        jax.tree.map(factor, gradients),
        _as_float_tree(alpha_g),
        _as_float_tree(alpha_h),
        _as_float_tree(center),
        constant=_static_zero(alpha_h),
    )


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

    def increments(
        self, key: Array, w: Array, dt: Array | float, n: int, increments: str = "gaussian"
    ) -> MinibatchDraw:
        if increments != "gaussian":
            check_increments(increments)
            raise ValueError(
                f"increments={increments!r} needs a Gaussian noise model, got Minibatch"
            )
        if self.replace:
            idx = jax.random.randint(key, (n, self.batch_size), 0, self.n)
        else:
            keys = jax.random.split(key, n)
            idx = jax.vmap(
                lambda k: jax.random.choice(k, self.n, (self.batch_size,), replace=False)
            )(keys)
        sqrt_dt = jnp.full((n,), jnp.sqrt(jnp.asarray(dt, jnp.result_type(w))))
        return MinibatchDraw(idx, sqrt_dt)

    def sample(self, key: Array, w: Array, dt: Any = None, increments: str = "gaussian") -> Array:
        """`−sqrt(b dt) (ĝ − ∇L)` for one fresh batch: covariance `C(w) dt`."""
        draw = self.increments(key, w, 1.0 if dt is None else dt, 1, increments)
        return self.diffusion(w, jax.tree.map(lambda a: a[0], draw))

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
    # S = sin(αV) / cos(V)^(1/α) · (cos(V − αV) / E)^((1 − α)/α), with the two powers
    # taken as one exp of a sum of logs: on the CPU a float power cost as much as eight
    # logs, and the powers were most of the draw's time (benchmarks/optim.py).
    inv = 1 / alpha
    sin_av, cos_v = jnp.sin(alpha * v), jnp.cos(v)
    log_rest = (inv - 1) * (jnp.log(jnp.cos(v - alpha * v)) - jnp.log(e)) - inv * jnp.log(cos_v)
    stable = sin_av * jnp.exp(log_rest)
    # α = 1 (Cauchy): S = tan V = sin(αV)/cos(V), from the same sin and cos.
    return jnp.where(jnp.abs(alpha - 1) < 1e-6, sin_av / cos_v, stable)


@pytree_dataclass
class AlphaStable(NoiseModel):
    """Symmetric α-stable (Lévy) noise of index `α` and scale `c`."""

    alpha: Array
    scale: Array
    gaussian = False
    constant = True
    _state_params = ("scale",)

    @property
    def scale_exponent(self) -> Array:
        """`1 − 1/α`: SGD's jump `η ξ` over a step `dt = η` (`½` at `α = 2`)."""
        return 1 - 1 / self.alpha

    def variance(self, w: Any) -> Any:
        """Infinite for `α < 2` (the law has no second moment); `2c²` at `α = 2`."""
        var = jnp.where(self.alpha < 2, jnp.inf, 2 * jnp.square(self.scale))
        return leafwise(lambda x, v: jnp.broadcast_to(v, jnp.shape(x)).astype(_dtype(x)), w, v=var)

    def diffusion(self, w: Any, dw: Any) -> Any:
        """`c · dw`, with `dw = dt^(1/α) S` (at `α = 2`, `Var S = 2`: variance `2c² dt`)."""
        return leafwise(lambda d, c: (c * d).astype(_dtype(d)), dw, c=self.scale)

    def standard(self, key: Array, w: Any, dt: Any = None, increments: str = "gaussian") -> Any:
        """`dt^(1/α) S` with `S` standard symmetric α-stable: self-similar Lévy increments."""
        if increments != "gaussian":
            check_increments(increments)
            raise ValueError(
                f"increments={increments!r} needs a Gaussian noise model, got AlphaStable"
            )
        leaves, treedef = jax.tree.flatten(w)
        keys = jax.random.split(key, len(leaves)) if len(leaves) > 1 else [key]
        out = []
        for k, x in zip(keys, leaves):
            dtype = _dtype(x)
            s = _symmetric_stable(k, self.alpha, jnp.shape(x), dtype)
            if dt is not None:
                s = jnp.asarray(dt, dtype) ** (1 / jnp.asarray(self.alpha, dtype)) * s
            out.append(s)
        return jax.tree.unflatten(treedef, out)


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
