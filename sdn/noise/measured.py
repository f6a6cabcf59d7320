"""Noise built from gradients the training loop measures (docs/theory.md §5).

`gradient_variance` scales a measured per-coordinate gradient variance, `fluctuation` the
difference of two half-batch gradients, and `empirical` keeps the sample covariance of
`m` gradient samples with its full structure. Their `α_g`, `α_H` are multipliers of the
measured statistic, not moments of anything.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_finite, check_positive, pytree_dataclass, static_field
from sdn.noise.base import (
    Array,
    NoiseModel,
    _as_float,
    _as_float_tree,
    _broadcast_like,
    _check_tree,
    _dtype,
    _per_leaf,
    is_static_zero,
    leafwise,
)
from sdn.noise.increments import check_increments, standard_increments
from sdn.noise.powerlaw import PowerLaw


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
        _as_float_tree(alpha_g), _as_float_tree(alpha_h), constant=is_static_zero(alpha_h)
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
    is_gaussian = False
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

    def block(self, key, w, dt, n, increments="gaussian"):
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
        _as_float_tree(alpha_g), _as_float_tree(alpha_h), constant=is_static_zero(alpha_h)
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

    def block(
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
                f"shape {jnp.shape(dw)} (draw them with its `standard` or `block`)"
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
        constant=is_static_zero(alpha_h),
    )
