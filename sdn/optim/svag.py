"""SVAG: the stochastic variance amplified gradient of Li, Malladi & Arora (2021).

With two independent half-batch gradients `g_A`, `g_B` (each of covariance `C/B`), the
gradient `((1+s)/2) g_A + ((1−s)/2) g_B`, `s = √(2ℓ−1)`, has mean `∇L` and covariance
`ℓ C/B`; scaled by `1/ℓ` and run for `ℓK` steps of learning rate `η`, SGD on it follows the
SDE of SGD on the half batch up to time `Kη` (docs/theory.md §5, SVAG).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdn._checks import is_concrete


def svag(ell: float) -> optax.GradientTransformationExtraArgs:
    r"""Amplify the gradient noise `ℓ`-fold and scale by `1/ℓ` (docs/theory.md §5, SVAG).

    ``update(updates, state, params=None, *, grad_fluctuation=d)`` takes as ``updates``
    the mean `g = (g_A + g_B)/2` of two independent half-batch gradients and as
    ``grad_fluctuation`` their difference `d = g_A − g_B` (what
    `sdn.optim.value_grad_and_fluctuation` returns), and returns

        (1/ℓ) [ (1+s)/2 · g_A + (1−s)/2 · g_B ] = (1/ℓ) (g + s d/2),   s = √(2ℓ−1).

    Before the `1/ℓ` the gradient has mean `∇L` and covariance `ℓ C/B` (`C/B` that of one
    half), so ``optax.chain(svag(ℓ), optax.sgd(η))`` run for `ℓK` steps approximates the
    SDE `dw = −∇L dt + √(η C/B) dW` of SGD on the half batch at time `Kη` (weak order 1 in
    `1/ℓ`); `ℓ = 1` is plain SGD on the half batch `g_A`. Extra arguments it does not use
    are ignored.

    Args:
      ell: `ℓ ≥ 1`, the variance amplification (and the number of steps per unit of SDE
        time `η`).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with an empty state.

    Raises:
      ValueError: `ℓ < 1` or not finite; ``update`` without ``grad_fluctuation`` or with
        one whose structure is not the updates'.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> g_a, g_b = jnp.array([3.0]), jnp.array([1.0])
      >>> tx = optax.chain(svag(5.0), optax.sgd(1.0))  # s = 3: (1/5)(2 g_A − g_B)
      >>> updates, _ = tx.update((g_a + g_b) / 2, tx.init(g_a), grad_fluctuation=g_a - g_b)
      >>> updates
      Array([-1.], dtype=float32)

    References:
      Li, Malladi and Arora, *On the Validity of Modeling SGD with Stochastic
      Differential Equations (SDEs)*, NeurIPS 2021 (arXiv:2102.12470).
    """
    if is_concrete(ell) and (np.ndim(ell) != 0 or not np.isfinite(float(ell)) or float(ell) < 1.0):
        raise ValueError(f"svag: ell must be a finite scalar >= 1, got {ell!r}")

    def init_fn(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(
        updates: Any,
        state: optax.EmptyState,
        params: Any = None,
        *,
        grad_fluctuation: Any = None,
        **extra_args: Any,
    ) -> tuple[Any, optax.EmptyState]:
        del params, extra_args
        if grad_fluctuation is None:
            raise ValueError(
                "svag needs update(updates, state, grad_fluctuation=g_A - g_B), the "
                "difference of the two half-batch gradients whose mean is the updates"
            )
        if jax.tree.structure(grad_fluctuation) != jax.tree.structure(updates):
            raise ValueError(
                "grad_fluctuation must have the structure of the updates "
                f"({jax.tree.structure(updates)}), got {jax.tree.structure(grad_fluctuation)}"
            )
        s = math.sqrt(2 * ell - 1) if is_concrete(ell) else jnp.sqrt(2 * ell - 1)

        def one(g, d):
            return ((g + (0.5 * s) * d.astype(g.dtype)) / ell).astype(g.dtype)

        return jax.tree.map(one, updates, grad_fluctuation), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
