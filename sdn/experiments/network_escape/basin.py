"""The basins of §6.5: a minimum and its finite-sum problem, on flat parameter vectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from sdn.train import sample_loss as train_sample_loss

Array = jax.Array


class Basin(NamedTuple):
    """A minimum `w*` and what the dynamics need of its problem, on flat vectors.

    Attributes:
      w_star: `(P,)` the minimum.
      loss: ``w -> L(w)``, the full training loss (regulariser included).
      sample_grad: ``(w, datum) -> (P,)``, one sample's gradient (regulariser included,
        so the sample gradients average to `∇L`); `sample_loss` likewise.
      data: the samples, a pytree with leading axis `n`.
    """

    w_star: Array
    loss: Callable[[Array], Array]
    sample_grad: Callable[[Array, Any], Array]
    sample_loss: Callable[[Array, Any], Array]
    data: Any

    @property
    def n(self) -> int:
        return int(jax.tree.leaves(self.data)[0].shape[0])


def basin_from_finite_sum(problem: Any, w_star: Array | None = None) -> Basin:
    """A `Basin` of a finite-sum problem of `sdn.landscapes` (its `minimum` by default)."""
    w = jnp.ravel(problem.minimum if w_star is None else w_star)
    shape = jnp.shape(problem.minimum)

    def sample_loss(w, datum):
        return problem.sample_loss(jnp.reshape(w, shape), datum)

    def loss(w):
        return problem.loss(jnp.reshape(w, shape))

    return Basin(w, loss, jax.grad(sample_loss), sample_loss, problem.data)


def basin_from_network(
    apply: Callable, params: Any, x: Array, y: Array, *, weight_decay: float | Any = 0.0
) -> Basin:
    """A `Basin` of a classifier ``apply(params, x) -> logits`` at `params`, with the
    cross-entropy per sample plus `Σ_j λ_j w_j²/2`.

    `weight_decay` is one `λ` for every parameter, or a pytree shaped like `params` whose
    leaves give each leaf its own (as `rescale_layers` returns).
    """
    flat, unravel = ravel_pytree(params)
    if isinstance(weight_decay, int | float):
        decay = jnp.full_like(flat, float(weight_decay))
    else:
        decay = ravel_pytree(
            jax.tree.map(lambda p, d: jnp.broadcast_to(d, jnp.shape(p)), params, weight_decay)
        )[0]

    cross_entropy = train_sample_loss(apply)

    def sample_loss(w, datum):
        return cross_entropy(unravel(w), datum) + 0.5 * jnp.sum(decay * w * w)

    def loss(w):
        return jnp.mean(jax.vmap(sample_loss, (None, 0))(w, (x, y)))

    return Basin(flat, loss, jax.grad(sample_loss), sample_loss, (x, y))


def rescale_layers(params: Any, scale: float, weight_decay: float) -> tuple[Any, Any]:
    """The same network with its first layer times `scale` and its second's kernel divided
    by it, and the per-leaf weight decay under which that point is again a minimum.

    A ReLU is positively homogeneous, so `θ₁ → sθ₁, W₂ → W₂/s` (`θ₁` the first layer's
    kernel and bias) leaves the function and every sample's cross-entropy unchanged
    (Dinh et al. 2017), while the curvature along layer 2's parameters grows by `s²` and
    along layer 1's shrinks by it. With layer 1's decay divided by `s²` and `W₂`'s
    multiplied by it, the regulariser keeps its value too, so a minimum of the uniformly
    decayed loss maps onto a minimum of the rescaled one: the same training loss and
    test accuracy, another sharpness.

    Args:
      params: an MLP's parameters, ``{"layers": {0: {"kernel", "bias"}, 1: …, …}}``.
      scale: `s > 0`.
      weight_decay: the uniform `λ` under which `params` is a minimum.

    Returns:
      ``(params, decay)``: the rescaled parameters and the per-leaf `λ` (same structure).

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"layers": {0: {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
      ...                 1: {"kernel": jnp.ones((3, 1)), "bias": jnp.zeros(1)}}}
      >>> q, decay = rescale_layers(p, 2.0, 0.01)
      >>> float(q["layers"][0]["kernel"][0, 0]), float(q["layers"][1]["kernel"][0, 0])
      (2.0, 0.5)
      >>> decay["layers"][0]["kernel"], decay["layers"][1]["kernel"], decay["layers"][1]["bias"]
      (0.0025, 0.04, 0.01)
    """
    if not (isinstance(scale, int | float) and scale > 0):
        raise ValueError(f"scale must be a number > 0, got {scale!r}")
    layers = params["layers"]
    keys = sorted(layers)
    if len(keys) < 2:
        raise ValueError(f"params must have at least two layers, got {len(keys)}")
    first, second = keys[0], keys[1]
    out = jax.tree.map(lambda a: a, params)
    decay = jax.tree.map(lambda _: float(weight_decay), params)
    for leaf in ("kernel", "bias"):
        out["layers"][first][leaf] = scale * layers[first][leaf]
        decay["layers"][first][leaf] = weight_decay / scale**2
    out["layers"][second]["kernel"] = layers[second]["kernel"] / scale
    decay["layers"][second]["kernel"] = weight_decay * scale**2
    return out, decay


def gradient_descent(
    loss: Callable[[Array], Array], w: Array, learning_rate: float, steps: int
) -> Array:
    """`steps` of full-batch gradient descent on a flat vector, in one `lax.scan`."""

    def step(w, _):
        return w - learning_rate * jax.grad(loss)(w), None

    return jax.jit(lambda w: jax.lax.scan(step, w, None, length=steps)[0])(w)
