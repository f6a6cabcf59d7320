"""One training step through ``flax.nnx.Optimizer``, for users of Flax's own loop.

`sdn.train.train` runs a functional, vmapped loop; this is the same SGD step on a stateful
NNX model and optimizer, so `sdn.optim`'s transforms can be used unchanged there.
"""

from __future__ import annotations

import jax
from flax import nnx

from sdn.train.loop import cross_entropy


@nnx.jit
def nnx_train_step(
    model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array
) -> jax.Array:
    """One step of `model` with a ``flax.nnx.Optimizer`` on the batch `(x, y)`; the loss.

    ``optimizer.update(model, grads)`` passes the parameters to the transform, so
    state-dependent transforms such as ``sdn.optim.power_law_sgd`` work unchanged.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> from sdn.train import MLP
      >>> model = MLP(4, (8,), 2, rngs=nnx.Rngs(0))
      >>> opt = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
      >>> loss = nnx_train_step(model, opt, jnp.ones((3, 4)), jnp.array([0, 1, 0]))
      >>> loss.shape
      ()
    """

    def loss_fn(m):
        return cross_entropy(m(x), y)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss
