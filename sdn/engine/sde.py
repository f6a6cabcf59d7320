"""Stochastic differential equations `dw = drift(w) dt + sqrt(scale · C(w)) dB`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from sdn._checks import check_int, check_positive, is_concrete, pytree_dataclass
from sdn.noise import NoiseModel

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SDE:
    """The Itô SDE `dw = drift(w) dt + sqrt(scale · C(w)) dB` (docs/theory.md §2).

    `C(w)` comes from `noise`, one of the models of `sdn.noise`. All three fields are
    pytree children, so an SDE built inside `jit` or `vmap` from traced parameters works;
    to vmap over the parameters of the drift, make the drift a pytree callable (for
    example `jax.tree_util.Partial(fn, h)`). A plain Python function is fine too.

    Attributes:
      drift: `w -> drift(w)`, shaped like `w` (a `TypeError` if not callable).
      noise: the noise model giving `C(w)` and its increments, an `sdn.noise` model (a
        `TypeError` otherwise).
      scale: the factor in front of `C(w)`, `η / b` for SGD.

    >>> import jax.numpy as jnp
    >>> from sdn import noise
    >>> sde = SDE(lambda w: -w, noise.isotropic(1.0), 0.5)
    >>> sde.variance(jnp.zeros(2))
    Array([0.5, 0.5], dtype=float32)
    """

    drift: Callable[[Array], Array]
    noise: NoiseModel
    scale: Array | float = 1.0

    def __post_init__(self):
        if not callable(self.drift):
            raise TypeError(
                f"drift must be callable (w -> drift(w)), got {type(self.drift).__name__} "
                f"{self.drift!r}"
            )
        if not isinstance(self.noise, NoiseModel):
            raise TypeError(
                f"noise must be an sdn.noise model (e.g. sdn.noise.isotropic(1.0)), got "
                f"{type(self.noise).__name__} {self.noise!r}"
            )

    def _scale(self, w: Array, power: Any) -> Array:
        dtype = jnp.result_type(w)
        return jnp.asarray(self.scale, dtype) ** jnp.asarray(power, dtype)

    def diffusion(self, w: Array, dw: Any) -> Array:
        """The noise term of one step, `scale^p · noise.diffusion(w, dw)`.

        `p = noise.scale_exponent`: `½` for Gaussian noise (`sqrt(scale) sqrt(C(w)) dw`),
        `1 − 1/α` for α-stable noise, so that with `scale = η/b` and `dt = η` the term is
        SGD's jump `η ξ` in both (docs/theory.md §2).
        """
        return self._scale(w, self.noise.scale_exponent) * self.noise.diffusion(w, dw)

    def std(self, w: Array) -> Array:
        """Elementwise `sqrt(scale · C_jj(w))`, the diagonal diffusion coefficient."""
        return jnp.sqrt(self.variance(w))

    def variance(self, w: Array) -> Array:
        """Elementwise `scale · C_jj(w)`: the variance per unit time of each coordinate."""
        return jnp.asarray(self.scale, jnp.result_type(w)) * self.noise.variance(w)

    def g_dg(self, w: Array) -> Array:
        """`g g' = ½ scale ∂C_jj/∂w_j` with `g = sqrt(scale C_jj)` (diagonal noise).

        From `C` directly, so finite where `C(w) = 0` (Milstein, Heun).
        """
        return jnp.asarray(self.scale, jnp.result_type(w)) * self.noise.g_dg(w)


_FIELDS = ("drift", "noise", "scale")


def _flatten_with_keys(sde: SDE):
    return tuple((jax.tree_util.GetAttrKey(n), getattr(sde, n)) for n in _FIELDS), None


def _unflatten(_, children) -> SDE:
    # Not through `__init__`: JAX rebuilds trees with placeholder leaves (vmap's axes,
    # tree_map's sentinels), which the constructor's checks would reject.
    sde = object.__new__(SDE)
    for name, value in zip(_FIELDS, children):
        object.__setattr__(sde, name, value)
    return sde


jax.tree_util.register_pytree_with_keys(SDE, _flatten_with_keys, _unflatten)


@pytree_dataclass
class _NegativeGradient:
    """`w -> −grad_fn(w)`, hashable by `grad_fn` so jit caches are reused across calls."""

    grad_fn: Callable[[Array], Array]

    def __call__(self, w: Array) -> Array:
        return -self.grad_fn(w)


def sgd_sde(
    grad_fn: Callable[[Array], Array],
    noise: NoiseModel,
    learning_rate: float | Array,
    batch_size: int,
) -> SDE:
    """The SDE of SGD: `dw = −∇L(w) dt + sqrt(η C(w) / b) dB` (docs/theory.md §2).

    With time `t = k η`, one step of length `dt = learning_rate` is one SGD step: the
    Euler–Maruyama step is `w − η ∇L(w) − η ξ` with `Cov ξ = C(w)/b`, and with a
    `noise.minibatch` model and the `"sgd"` solver it is SGD itself.

    Args:
      grad_fn: `∇L`, the full-batch gradient.
      noise: the noise model `C(w)` (per-sample gradient covariance).
      learning_rate: `η > 0`.
      batch_size: `b ≥ 1`.

    >>> from sdn import noise
    >>> sde = sgd_sde(lambda w: w, noise.power_law(1.0, 2.0), 0.1, 4)
    >>> round(float(sde.scale), 6)
    0.025
    """
    if not callable(grad_fn):
        raise TypeError(f"grad_fn must be callable, got {type(grad_fn).__name__}")
    check_positive("learning_rate", learning_rate)
    if is_concrete(batch_size):
        check_int("batch_size", batch_size)
    return SDE(_NegativeGradient(grad_fn), noise, learning_rate / batch_size)
