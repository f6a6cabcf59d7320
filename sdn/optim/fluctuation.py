"""Loss, gradient and gradient fluctuation `g_A − g_B` of a batch in one vmapped pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def value_grad_and_fluctuation(
    loss_fn: Callable[..., Array], *, per_example: bool = False
) -> Callable[..., tuple[Array, Any, Any]]:
    """`f(params, *batch) -> (loss, grad, g_A − g_B)` in one vmapped pass over two halves.

    The batch (every array in ``batch``, leading axis `B`, even) is split into its first
    and second halves; one ``vmap`` of ``value_and_grad`` over the two halves gives their
    losses and gradients `g_A`, `g_B` at the cost of one batch gradient (no extra
    forward). Returns the batch loss and gradient (the halves' means) and the
    fluctuation `g_A − g_B`, whose half has covariance `C(w)/B` (docs/theory.md §5): the
    ``grad_fluctuation`` of `noise.fluctuation`.

    Args:
      loss_fn: ``loss_fn(params, *batch) -> scalar`` mean loss of a batch, or with
        ``per_example=True`` ``loss_fn(params, *example) -> scalar`` for one example.
      per_example: whether `loss_fn` takes one example (it is then vmapped and averaged).

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda w, x: jnp.mean((x - w) ** 2) / 2
      >>> f = value_grad_and_fluctuation(loss)
      >>> l, g, d = f(jnp.array(0.0), jnp.array([1.0, 1.0, 3.0, 3.0]))
      >>> float(l), float(g), float(d)
      (2.5, -2.0, 2.0)
    """
    if per_example:

        def half_loss(params, *half):
            return jnp.mean(jax.vmap(lambda *ex: loss_fn(params, *ex))(*half))
    else:
        half_loss = loss_fn

    value_and_grad = jax.value_and_grad(half_loss)

    def both(params, *halves):
        return jax.vmap(lambda *h: value_and_grad(params, *h))(*halves)

    def fn(params: Any, *batch: Any) -> tuple[Array, Any, Any]:
        sizes = {np.shape(x)[0] for x in jax.tree.leaves(batch)}
        if len(sizes) != 1 or next(iter(sizes)) % 2:
            raise ValueError(
                f"batch needs one even leading axis (split into two halves), got {sorted(sizes)}"
            )
        halves = jax.tree.map(lambda x: x.reshape(2, x.shape[0] // 2, *x.shape[1:]), batch)
        losses, grads = both(params, *halves)
        grad = jax.tree.map(lambda g: 0.5 * (g[0] + g[1]), grads)
        fluct = jax.tree.map(lambda g: g[0] - g[1], grads)
        return jnp.mean(losses), grad, fluct

    return fn
