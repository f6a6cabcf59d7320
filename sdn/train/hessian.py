"""Curvature probes: Hessian-vector products and the top Hessian eigenvalue (sharpness)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sdn._checks import check_int
from sdn._deprecation import key_first
from sdn.train.persample import Params
from sdn.train.profiles import _dot, random_direction, tree_normalize


def hessian_vector_product(loss_fn: Callable[[Params], jax.Array], params: Params, v: Params):
    """`∇²L(w) v` by forward-over-reverse differentiation (``jvp`` of ``grad``)."""
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


class Eigenpair(NamedTuple):
    """`value`: the Rayleigh quotient `vᵀHv`; `vector`: unit `v`; `residual`: `‖Hv − λv‖`."""

    value: jax.Array
    vector: Params
    residual: jax.Array


@key_first(
    "top_hessian_eigenvalue",
    new="top_hessian_eigenvalue(key, loss_fn, params)",
    old_position=2,
)
def top_hessian_eigenvalue(
    key: jax.Array,
    loss_fn: Callable[[Params], jax.Array],
    params: Params,
    *,
    num_iters: int = 100,
) -> Eigenpair:
    """The Hessian eigenvalue of largest magnitude, by power iteration on `Hv` (sharpness).

    `v_{k+1} = H v_k / ‖H v_k‖` from a random unit `v_0`, `num_iters` times (a fixed
    count, so the function is jittable and vmappable over seeds); returns the Rayleigh
    quotient `λ = vᵀHv` and the residual `‖Hv − λv‖`, which is small when the iteration
    has converged. Near a minimum the largest-magnitude eigenvalue is the top one
    (negative curvature is small there); a large residual means the top two eigenvalues
    are close or of opposite sign and equal size — run more iterations.

    Args:
      key: PRNG key of the start vector (a ``jax.random.key`` or an int seed). The old
        order ``(loss_fn, params, key)`` still works for one release, with a
        `DeprecationWarning`.
      loss_fn: ``params -> scalar`` (e.g. the full-batch training loss).
      params: the point `w`.
      num_iters: power iterations (each one Hessian-vector product).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> loss = lambda w: 0.5 * (3.0 * w[0] ** 2 + 1.0 * w[1] ** 2)
      >>> eig = top_hessian_eigenvalue(jax.random.key(0), loss, jnp.zeros(2), num_iters=50)
      >>> round(float(eig.value), 4)
      3.0
    """
    num_iters = check_int("num_iters", num_iters)

    def hvp(v):
        return hessian_vector_product(loss_fn, params, v)

    def body(_, v):
        return tree_normalize(hvp(v))

    v = jax.lax.fori_loop(0, num_iters, body, random_direction(key, params))
    hv = hvp(v)
    value = _dot(v, hv)
    r = jax.tree.map(lambda a, b: a - value * b, hv, v)
    return Eigenpair(value, v, jnp.sqrt(_dot(r, r)))
