"""The exact noise of minibatch SGD: a real batch of sample indices drawn every step.

Inside `sdn.sgd_sde` with the `"sgd"` solver a step is SGD itself (docs/theory.md §1).
`minibatch_gaussian` is its Gaussian twin: noise of exactly the minibatch's covariance
`C(w)/b` at the current state, drawn from a normal, so that the two differ only in the
shape of the noise's law (docs/theory.md §6.7, swapping the parts of SGD's noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_int, pytree_dataclass, static_field
from sdn.noise.base import Array, NoiseModel
from sdn.noise.increments import batch_indices, check_increments, standard_increments


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
    is_gaussian = False
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

    def block(
        self, key: Array, w: Array, dt: Array | float, n: int, increments: str = "gaussian"
    ) -> MinibatchDraw:
        if increments != "gaussian":
            check_increments(increments)
            raise ValueError(
                f"increments={increments!r} needs a Gaussian noise model, got Minibatch"
            )
        idx = batch_indices(key, n, self.batch_size, self.n, replace=self.replace)
        sqrt_dt = jnp.full((n,), jnp.sqrt(jnp.asarray(dt, jnp.result_type(w))))
        return MinibatchDraw(idx, sqrt_dt)

    def sample(self, key: Array, w: Array, dt: Any = None, increments: str = "gaussian") -> Array:
        """`−sqrt(b dt) (ĝ − ∇L)` for one fresh batch: covariance `C(w) dt`."""
        draw = self.block(key, w, 1.0 if dt is None else dt, 1, increments)
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


@pytree_dataclass
class MinibatchGaussian(NoiseModel):
    """Gaussian noise of the minibatch's covariance at the current state.

    With the per-sample gradients `g_i(w)` of all `n` samples, centred (`J` their `n × d`
    matrix less the mean), a draw is `Jᵀ z /√n` with `z ~ N(0, dt I_n)`, one standard
    increment per sample: covariance `C(w) dt` exactly (times `(n−b)/(n−1)` without
    replacement), the covariance of `noise.minibatch` at every `w`, never a `d × d` matrix.
    """

    data: Any
    sample_grad: Callable = static_field()
    batch_size: int = static_field()
    replace: bool = static_field()
    diagonal = False

    n = Minibatch.n
    _finite_population = Minibatch._finite_population
    sample_grads = Minibatch.sample_grads
    covariance = Minibatch.covariance
    variance = Minibatch.variance
    check_state = Minibatch.check_state

    def _dtype(self) -> Any:
        return jnp.result_type(jax.tree.leaves(self.data)[0].dtype, float)

    def standard(self, key: Array, w: Any, dt: Any = None, increments: str = "gaussian") -> Array:
        """`n` standard increments, one per sample (not shaped like `w`)."""
        return standard_increments(key, (self.n,), jnp.result_type(w), dt, increments)

    def block(
        self, key: Array, w: Array, dt: Array | float, n: int, increments: str = "gaussian"
    ) -> Array:
        """`n` draws of the per-sample increments, shape `(n, n_samples)`."""
        return standard_increments(key, (n, self.n), jnp.result_type(w), dt, increments)

    def diffusion(self, w: Array, dw: Array) -> Array:
        """`Jᵀ dw / √n`, scaled by `sqrt((n−b)/(n−1))` without replacement."""
        if jnp.shape(dw) != (self.n,):
            raise ValueError(
                f"minibatch_gaussian takes one increment per sample, shape ({self.n},), got "
                f"shape {jnp.shape(dw)} (draw them with its `standard` or `block`)"
            )
        g = self.sample_grads(w)
        dev = g - g.mean(axis=0)
        scale = math.sqrt(self._finite_population() / self.n)
        return (jnp.tensordot(dw.astype(dev.dtype), dev, axes=1) * scale).astype(jnp.result_type(w))


def minibatch_gaussian(
    sample_grad: Callable[[Array, Any], Array],
    data: Any,
    batch_size: int,
    *,
    replace: bool = True,
) -> MinibatchGaussian:
    """Gaussian noise with the covariance of minibatch SGD's, `C(w)/b`, at every state.

    The same arguments as `minibatch`; the same `covariance(w)` and `variance(w)`. Where
    `minibatch` draws a real batch, this draws `Jᵀ z/√n` from the centred per-sample
    gradients `J` at the current `w` and one normal `z_i` per sample, so that SGD's noise
    and this one share their first two moments at every state and differ only in law (the
    minibatch's discreteness and tails against a normal). In `sdn.sgd_sde` with the `"sgd"`
    solver a step is `w − η (∇L(w) + ξ)`, `ξ ~ N(0, C(w)/b)`: SGD with its noise made
    Gaussian. Each step costs all `n` per-sample gradients, as `minibatch`'s does.

    >>> import jax, jax.numpy as jnp
    >>> c = jnp.array([-1.0, 1.0])
    >>> model = minibatch_gaussian(lambda w, ci: w - ci, c, batch_size=1)
    >>> model.variance(jnp.array(0.0))
    Array(1., dtype=float32)
    >>> model.sample(jax.random.key(0), jnp.array(0.0)).shape
    ()
    """
    m = minibatch(sample_grad, data, batch_size, replace=replace)
    return MinibatchGaussian(m.data, m.sample_grad, m.batch_size, m.replace)
