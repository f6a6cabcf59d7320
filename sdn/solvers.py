"""One step of one path, for each solver: `step(sde, w, t, dt, dw) -> w_next`.

`dw` is the increment the driver drew from the SDE's noise model (for the Gaussian
models a Brownian increment `N(0, dt I)`). Every solver has this signature, so a step
can be checked against its formula with a given `dw`, and drivers never branch on the
solver inside their loops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from sdn.sde import SDE

Array = jax.Array
Solver = Callable[[SDE, Array, Array, Array, Any], Array]


def euler_maruyama(sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
    """Euler–Maruyama: `w + a(w) dt + g(w) dW`. Strong order 1/2, weak order 1.

    >>> import jax.numpy as jnp
    >>> from sdn import SDE, noise
    >>> sde = SDE(lambda w: -w, noise.isotropic(4.0), 1.0)
    >>> euler_maruyama(sde, jnp.array(1.0), 0.0, 0.1, jnp.array(0.5))
    Array(1.9, dtype=float32)
    """
    return w + sde.drift(w) * dt + sde.diffusion(w, dw)


def _requires(*attributes: str) -> Callable[[Solver], Solver]:
    """Record on a solver the noise-model attributes it needs (checked by `get`)."""

    def mark(fn: Solver) -> Solver:
        fn.requires = attributes
        return fn

    return mark


@_requires("is_gaussian", "diagonal")
def milstein(sde: SDE, w: Array, t: Array, dt: Array, dw: Array) -> Array:
    """Milstein for diagonal noise: Euler–Maruyama plus `½ g g' (dW² − dt)`.

    Strong order 1 for diagonal noise (`g_j` a function of `w_j`). `g g' = ½ ∂(g²)/∂w`
    comes from the covariance itself (`sde.g_dg`), so the step is finite where
    `C(w) = 0`, and equal to Euler–Maruyama's there.

    >>> import jax.numpy as jnp
    >>> from sdn import SDE, noise
    >>> sde = SDE(lambda w: 0.0 * w, noise.power_law(0.0, 1.0), 1.0)  # g(w) = |w|
    >>> milstein(sde, jnp.array(1.0), 0.0, 0.1, jnp.array(0.5))
    Array(1.575, dtype=float32)
    """
    return w + sde.drift(w) * dt + sde.diffusion(w, dw) + 0.5 * sde.g_dg(w) * (jnp.square(dw) - dt)


@_requires("is_gaussian", "stratonovich_convertible")
def heun(sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
    """Stochastic Heun (predictor–corrector, trapezoidal in drift and diffusion).

    Heun's scheme converges to the **Stratonovich** solution. To integrate our Itô SDEs
    it is applied to the Stratonovich drift `ã = a − ½ g g'` (diagonal noise, `g g'` from
    `sde.g_dg`; constant noise needs no correction), so the result converges to the Itô
    solution. Without that correction, Heun on state-dependent noise would simulate a
    different process.
    """
    if sde.noise.constant:
        corrected = sde.drift
    else:

        def corrected(x):
            return sde.drift(x) - 0.5 * sde.g_dg(x)

    a0 = corrected(w)
    b0 = sde.diffusion(w, dw)
    predicted = w + a0 * dt + b0
    return w + 0.5 * (a0 + corrected(predicted)) * dt + 0.5 * (b0 + sde.diffusion(predicted, dw))


def sgd(sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
    """Discrete SGD, `w − η ĝ(w)` with `η = dt`.

    With a `noise.minibatch` model `ĝ` is the real minibatch gradient of the drawn batch
    (no full gradient is computed), which is SGD itself when the SDE came from
    `sdn.sgd_sde(..., learning_rate=dt, batch_size=b)`. With any other model
    `ĝ = −drift(w) + ξ` with `η ξ` the SDE's noise term, which is Euler–Maruyama.
    """
    batch_gradient = getattr(sde.noise, "batch_gradient", None)
    if batch_gradient is not None:
        return w - dt * batch_gradient(w, dw)
    return euler_maruyama(sde, w, t, dt, dw)


SOLVERS: dict[str, Solver] = {
    "euler_maruyama": euler_maruyama,
    "milstein": milstein,
    "heun": heun,
    "sgd": sgd,
}


def get(name: str | Solver, sde: SDE) -> Solver:
    """The solver called `name`, after checking that `sde`'s noise model has what it needs.

    A solver lists the model attributes it needs in its ``requires`` (e.g. Milstein:
    ``("is_gaussian", "diagonal")``); a function passed in may do the same.
    """
    if callable(name):
        solver, label = name, getattr(name, "__name__", repr(name))
    elif name in SOLVERS:
        solver, label = SOLVERS[name], name
    else:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {name!r}")
    missing = [a for a in getattr(solver, "requires", ()) if not getattr(sde.noise, a, False)]
    if missing:
        needs = " and ".join(a.removeprefix("is_") for a in missing)
        raise ValueError(
            f"solver={label!r} needs noise that is {needs}, got {type(sde.noise).__name__}"
        )
    return solver
