"""Small Flax NNX models for the training experiments (docs/theory.md §6.1, §6.4).

`MLP` is the ReLU network of the paper's measurements; `CNN` is a small convolutional
network for 8×8 digits images (2-D) or MNIST-1D signals (1-D). Both take a batch of
inputs and return logits of shape `(batch, out_features)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from sdn._checks import check_int


class MLP(nnx.Module):
    """A ReLU multilayer perceptron: `Linear → ReLU → … → Linear` (logits, no softmax).

    Inputs of shape `(batch, *feature_dims)` are flattened to `(batch, in_features)`.

    Args:
      in_features: input size after flattening (64 for digits, 40 for MNIST-1D).
      hidden: widths of the hidden layers, e.g. ``(512, 512)``; may be empty (a linear
        model).
      out_features: number of outputs (classes).
      rngs: the ``nnx.Rngs`` used for initialization.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = MLP(64, (32, 32), 10, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((5, 64))).shape
      (5, 10)
    """

    def __init__(
        self, in_features: int, hidden: Sequence[int], out_features: int, *, rngs: nnx.Rngs
    ):
        sizes = [check_int("in_features", in_features)]
        sizes += [check_int(f"hidden[{i}]", h) for i, h in enumerate(hidden)]
        sizes.append(check_int("out_features", out_features))
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


class CNN(nnx.Module):
    """A small ConvNet: `(Conv 3 → ReLU → AvgPool 2)` per entry of `channels`, then a head.

    `input_shape` is the shape of one input without channels: ``(40,)`` for MNIST-1D
    signals (1-D convolutions) or ``(8, 8)`` for digits images (2-D convolutions).
    Inputs of shape `(batch, *input_shape)` get a channel axis of size 1; inputs of
    shape `(batch, *input_shape, c)` are used as they are (``in_channels=c``). Flat
    digits rows `(batch, 64)` must be reshaped to `(batch, 8, 8)` first.

    Args:
      input_shape: spatial shape of one example, 1-D or 2-D.
      out_features: number of outputs (classes).
      channels: feature maps of the convolution blocks.
      hidden: width of the dense layer before the output.
      in_channels: channels of the input.
      rngs: the ``nnx.Rngs`` used for initialization.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = CNN((40,), 10, channels=(8, 16), rngs=nnx.Rngs(0))
      >>> model(jnp.ones((3, 40))).shape
      (3, 10)
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        out_features: int,
        *,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
        in_channels: int = 1,
        rngs: nnx.Rngs,
    ):
        self.input_shape = tuple(check_int("input_shape entry", s) for s in input_shape)
        if len(self.input_shape) not in (1, 2):
            raise ValueError(f"input_shape must be 1-D or 2-D, got {tuple(input_shape)}")
        kernel = (3,) * len(self.input_shape)
        convs, c_in, spatial = [], check_int("in_channels", in_channels), list(self.input_shape)
        for i, c in enumerate(channels):
            convs.append(nnx.Conv(c_in, check_int(f"channels[{i}]", c), kernel, rngs=rngs))
            c_in = c
            spatial = [max(s // 2, 1) for s in spatial]
        self.convs = nnx.List(convs)
        self.dense = nnx.Linear(c_in * math.prod(spatial), check_int("hidden", hidden), rngs=rngs)
        self.head = nnx.Linear(hidden, check_int("out_features", out_features), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        ndim = len(self.input_shape)
        if x.ndim == ndim + 1:
            x = x[..., None]
        window = (2,) * ndim
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
            # Pool only axes of size ≥ 2, as the head's input size in __init__ assumes.
            if all(s >= 2 for s in x.shape[1:-1]):
                x = nnx.avg_pool(x, window, strides=window)
        x = jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))
        return self.head(x)


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` entries) of `model`.

    Example:
      >>> from flax import nnx
      >>> count_params(MLP(4, (3,), 2, rngs=nnx.Rngs(0)))  # 4·3 + 3 + 3·2 + 2
      23
    """
    return sum(int(jnp.size(a)) for a in jax.tree.leaves(nnx.state(model, nnx.Param)))
