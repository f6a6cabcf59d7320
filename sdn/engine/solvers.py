"""Solvers: one step of one path, `solver.step(sde, w, t, dt, dw) -> w_next`.

A solver is a small frozen object (`EulerMaruyama()`, `Milstein()`, `Heun()`, `SGD()`)
that declares its `strong_order` and `weak_order` and the noise-model attributes it
`requires`; every driver accepts one, or its name as shorthand (`"euler_maruyama"`,
`"milstein"`, `"heun"`, `"sgd"`). `dw` is the increment the driver drew from the SDE's
noise model (for the Gaussian models a Brownian increment `N(0, dt I)`). Every step has
this signature, so it can be checked against its formula with a given `dw`, and the
drivers never branch on the solver inside their loops. The plain functions
(`euler_maruyama`, ...) are the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from sdn.engine.sde import SDE

Array = jax.Array
StepFunction = Callable[[SDE, Array, Array, Array, Any], Array]


def euler_maruyama(sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
    """Euler–Maruyama: `w + a(w) dt + g(w) dW`. Strong order 1/2, weak order 1.

    >>> import jax.numpy as jnp
    >>> from sdn import SDE, noise
    >>> sde = SDE(lambda w: -w, noise.isotropic(4.0), 1.0)
    >>> euler_maruyama(sde, jnp.array(1.0), 0.0, 0.1, jnp.array(0.5))
    Array(1.9, dtype=float32)
    """
    return w + sde.drift(w) * dt + sde.diffusion(w, dw)


def _requires(*attributes: str) -> Callable[[StepFunction], StepFunction]:
    """Record on a solver the noise-model attributes it needs (checked by `get`)."""

    def mark(fn: StepFunction) -> StepFunction:
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


class Solver:
    """A one-step scheme: `step(sde, w, t, dt, dw)`, its orders and what it requires.

    `strong_order` and `weak_order` are the orders of convergence for the SDEs it
    applies to (pathwise and in law), `None` where they do not apply; `requires` lists
    the noise-model attributes that must be true.
    """

    name: ClassVar[str]
    strong_order: ClassVar[float | None]
    weak_order: ClassVar[float | None]
    requires: ClassVar[tuple[str, ...]] = ()

    def step(self, sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
        raise NotImplementedError


@dataclass(frozen=True)
class EulerMaruyama(Solver):
    """Euler–Maruyama, `w + a(w) dt + g(w) dW`: strong order 1/2, weak order 1.

    >>> EulerMaruyama().strong_order, EulerMaruyama().weak_order
    (0.5, 1.0)
    """

    name: ClassVar[str] = "euler_maruyama"
    strong_order: ClassVar[float | None] = 0.5
    weak_order: ClassVar[float | None] = 1.0

    def step(self, sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
        return euler_maruyama(sde, w, t, dt, dw)


@dataclass(frozen=True)
class Milstein(Solver):
    """Milstein for diagonal noise: strong order 1, weak order 1 (Kloeden–Platen §10.3).

    Needs Brownian increments (its correction `½ g g' (dW² − dt)` vanishes for two-point
    steps) and diagonal noise (`g_j` a function of `w_j`).
    """

    name: ClassVar[str] = "milstein"
    strong_order: ClassVar[float | None] = 1.0
    weak_order: ClassVar[float | None] = 1.0
    requires: ClassVar[tuple[str, ...]] = milstein.requires

    def step(self, sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
        return milstein(sde, w, t, dt, dw)


@dataclass(frozen=True)
class Heun(Solver):
    """Stochastic Heun on the Stratonovich form of the Itô SDE.

    Orders as used here: strong 1.0 for constant (additive) and diagonal noise — the
    noise the engine applies it to, where the scheme's Stratonovich expansion has no
    Lévy areas (commutative noise; Rümelin 1982; Kloeden–Platen §11.1); weak order 1.0.
    For general non-commutative noise its strong order drops to 1/2.
    """

    name: ClassVar[str] = "heun"
    strong_order: ClassVar[float | None] = 1.0
    weak_order: ClassVar[float | None] = 1.0
    requires: ClassVar[tuple[str, ...]] = heun.requires

    def step(self, sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
        return heun(sde, w, t, dt, dw)


@dataclass(frozen=True)
class SGD(Solver):
    """Discrete SGD, `w − η ĝ(w)` with `η = dt` (`sgd`).

    `strong_order` and `weak_order` are `None`: with a `noise.minibatch` model the step
    is SGD itself, a discrete map whose `dt` is the learning rate, not a discretisation
    of an SDE that converges as `dt → 0`, so no order of convergence applies (its
    distance to the SDE of `sgd_sde` is a modelling error, docs/theory.md §2). With any
    other noise model the step is Euler–Maruyama's, with that solver's orders; use
    `EulerMaruyama()` where the orders matter.

    >>> SGD().strong_order is None
    True
    """

    name: ClassVar[str] = "sgd"
    strong_order: ClassVar[float | None] = None
    weak_order: ClassVar[float | None] = None

    def step(self, sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
        return sgd(sde, w, t, dt, dw)


@dataclass(frozen=True)
class _FromFunction(Solver):
    """A step function given by the user, with its `requires` attribute if it has one."""

    fn: StepFunction
    strong_order: ClassVar[float | None] = None
    weak_order: ClassVar[float | None] = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return getattr(self.fn, "__name__", repr(self.fn))

    @property
    def requires(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(getattr(self.fn, "requires", ()))

    def step(self, sde: SDE, w: Array, t: Array, dt: Array, dw: Any) -> Array:
        return self.fn(sde, w, t, dt, dw)


SOLVERS: dict[str, StepFunction] = {
    "euler_maruyama": euler_maruyama,
    "milstein": milstein,
    "heun": heun,
    "sgd": sgd,
}
"""The step functions by name."""

_BY_NAME: dict[str, type[Solver]] = {cls.name: cls for cls in (EulerMaruyama, Milstein, Heun, SGD)}


def resolve(solver: str | Solver | StepFunction, sde: SDE) -> Solver:
    """The solver object for `solver` (an object, its name, or a step function), after
    checking that `sde`'s noise model has what it `requires`.

    >>> from sdn import SDE, noise
    >>> resolve("milstein", SDE(lambda w: -w, noise.power_law(1.0, 1.0)))
    Milstein()
    """
    if isinstance(solver, Solver):
        out = solver
    elif isinstance(solver, str):
        if solver not in _BY_NAME:
            raise ValueError(f"solver must be one of {sorted(_BY_NAME)}, got {solver!r}")
        out = _BY_NAME[solver]()
    elif callable(solver):
        out = _FromFunction(solver)
    else:
        raise TypeError(
            f"solver must be an sdn.solvers object (e.g. EulerMaruyama()), its name or a "
            f"step function, got {solver!r}"
        )
    missing = [a for a in out.requires if not getattr(sde.noise, a, False)]
    if missing:
        needs = " and ".join(a.removeprefix("is_") for a in missing)
        raise ValueError(
            f"solver={out.name!r} needs noise that is {needs}, got {type(sde.noise).__name__}"
        )
    return out


def get(name: str | Solver | StepFunction, sde: SDE) -> StepFunction:
    """The step function of `name` (as `resolve` takes it), after the same checks.

    A solver lists the model attributes it needs in its ``requires`` (e.g. Milstein:
    ``("is_gaussian", "diagonal")``); a function passed in may do the same.
    """
    out = resolve(name, sde)
    if isinstance(out, _FromFunction):
        return out.fn
    return SOLVERS[out.name] if type(out) in _BY_NAME.values() else out.step
