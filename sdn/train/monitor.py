"""The gradient noise scale measured while training (McCandlish et al. 2018).

Every `every` steps the batch's per-sample statistics (`gradient_statistics`, about one
backward pass) give unbiased one-batch estimates of `tr C` and `‖∇L‖²`
(`GradientStatistics.noise_scale`). One batch's `‖∇L‖²` estimate is noisy and can be
negative, so the monitor keeps exponential moving averages of the numerator and the
denominator separately, as McCandlish et al. do, and divides the averages:
`B_simple = EMA(tr C) / EMA(‖∇L‖²)`. The averages are bias-corrected (divided by the EMA
of ones), so the first reading is the first measurement itself.

In a loop of your own, the monitor is a pure function of its state and a batch::

    monitor = NoiseScaleMonitor(every=10)
    state = monitor.init()
    for t, (x, y) in enumerate(batches):
        if monitor.due(t):
            state, stats = monitor.measure(state, model, x, y)
            grads = stats.mean  # the batch gradient comes with the statistics
        ...
    monitor.read(state).simple

`sdn.train.train(..., noise_scale=NoiseScaleMonitor(every=10))` does the same inside its
compiled loop and records the reading at every evaluation (`TrainResult.noise_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sdn.train.gradstats import GradientStatistics, NoiseScale, gradient_statistics


class NoiseScaleState(NamedTuple):
    """The monitor's moving averages (not yet bias-corrected) and their weight."""

    trace: jax.Array
    grad_norm_sq: jax.Array
    weight: jax.Array  # the EMA of ones: 1 − decay^count
    count: jax.Array  # measurements so far


@dataclass(frozen=True)
class NoiseScaleMonitor:
    """Moving averages of the gradient noise scale's parts, measured every `every` steps.

    Attributes:
      every: `N ≥ 1`, steps between two measurements.
      decay: `β` in `[0, 1)`, the moving averages' factor per measurement:
        `m ← β m + (1 − β) x`. `β = 0` keeps the last measurement only.
    """

    every: int = 10
    decay: float = 0.9

    def __post_init__(self):
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be an int >= 1, got {self.every!r}")
        d = self.decay
        if not (isinstance(d, int | float) and not isinstance(d, bool) and 0 <= d < 1):
            raise ValueError(f"decay must be a number in [0, 1), got {d!r}")

    def init(self) -> NoiseScaleState:
        """The state before any measurement (its reading is NaN)."""
        zero = jnp.zeros((), jnp.float32)
        return NoiseScaleState(zero, zero, zero, jnp.zeros((), jnp.int32))

    def due(self, step: Any) -> Any:
        """Whether step `step` (counted from 0) is a measuring step."""
        return step % self.every == 0

    def update(self, state: NoiseScaleState, scale: NoiseScale) -> NoiseScaleState:
        """Fold one batch's `NoiseScale` into the moving averages."""
        b = jnp.float32(self.decay)

        def ema(old, new):
            return b * old + (1 - b) * jnp.asarray(new, jnp.float32)

        return NoiseScaleState(
            ema(state.trace, scale.trace),
            ema(state.grad_norm_sq, scale.grad_norm_sq),
            ema(state.weight, 1.0),
            state.count + 1,
        )

    def measure(
        self, state: NoiseScaleState, model: Any, x: jax.Array, y: jax.Array, **kwargs: Any
    ) -> tuple[NoiseScaleState, GradientStatistics]:
        """Measure a batch with `gradient_statistics(model, x, y, **kwargs)` and fold its
        noise scale in. Returns the new state and the statistics (whose `mean` is the
        batch gradient, so the step needs no second backward pass)."""
        stats = gradient_statistics(model, x, y, **kwargs)
        return self.update(state, stats.noise_scale), stats

    @staticmethod
    def read(state: NoiseScaleState) -> NoiseScale:
        """The bias-corrected averages and `B_simple`, their ratio (NaN before the first
        measurement)."""
        w = jnp.where(state.weight > 0, state.weight, jnp.nan)
        trace, grad_norm_sq = state.trace / w, state.grad_norm_sq / w
        return NoiseScale(trace, grad_norm_sq, trace / grad_norm_sq)

    def measurements(self, steps: int) -> int:
        """How many measurements `steps` steps make (steps `0, N, 2N, …`)."""
        return math.ceil(steps / self.every)
