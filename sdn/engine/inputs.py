"""The drivers' public boundary: their arguments checked, with errors that name them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_finite, check_int, check_positive, is_concrete
from sdn.engine import solvers as _solvers
from sdn.engine.sde import SDE
from sdn.noise import Minibatch
from sdn.noise import check_increments as _check_law


def check_increments(increments: str, sde: SDE, solver: _solvers.Solver) -> str:
    """`increments` (`"gaussian"` or `"two_point"`), if the SDE and solver allow it."""
    if _check_law(increments) == "gaussian":
        return increments
    if not sde.noise.is_gaussian:
        raise ValueError(
            f"increments='two_point' replaces the Brownian increments of a Gaussian noise "
            f"model; {type(sde.noise).__name__} noise draws its own (use the default "
            f"increments='gaussian')"
        )
    if solver.name == "milstein":  # the object, its name, or the step function
        raise ValueError(
            "solver='milstein' is a pathwise (strong order 1) scheme and needs Brownian "
            "increments; with increments='two_point' its correction vanishes (dW² = dt). "
            "Use increments='gaussian', or euler_maruyama/heun for weak results"
        )
    return increments


def is_discrete_sgd(sde: SDE, solver: _solvers.Solver) -> bool:
    """Whether the run is SGD itself (the `sgd` solver on a minibatch model)."""
    return isinstance(solver, _solvers.SGD) and isinstance(sde.noise, Minibatch)


def prepare(key, sde, w0, dt, n_paths, solver):
    """The key, `w0` as a float array, `dt` in its dtype and the solver object, checked."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdn.SDE, got {type(sde).__name__}")
    if isinstance(key, int):
        key = jax.random.key(key)
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a jax.random.key or an int seed, got {type(key).__name__}")
    w0 = jnp.asarray(w0)
    if not jnp.issubdtype(w0.dtype, jnp.floating):
        w0 = w0.astype(jnp.result_type(float))
    check_finite("w0", w0)
    check_positive("dt", dt)
    dt = jnp.asarray(dt, w0.dtype)
    check_int("n_paths", n_paths)
    if is_concrete(sde, w0):
        sde.noise.check_state(w0)
        try:
            drift_shape = jax.eval_shape(sde.drift, w0).shape
        except Exception as err:  # the drift's own error, with the shape that caused it
            raise ValueError(f"sde.drift failed on w0 of shape {w0.shape}: {err}") from err
        if drift_shape != w0.shape:
            raise ValueError(f"sde.drift returns shape {drift_shape} for w0 of shape {w0.shape}")
    solver = _solvers.resolve(solver, sde)
    if is_discrete_sgd(sde, solver) and is_concrete(sde.scale, dt):
        lr = float(sde.scale) * sde.noise.batch_size
        if not np.isclose(lr, float(dt), rtol=1e-5):
            raise ValueError(
                f"solver='sgd' with minibatch noise runs SGD with learning rate dt; build the "
                f"SDE with sgd_sde(..., learning_rate=dt): its learning rate is {lr:g}, "
                f"dt={float(dt):g}"
            )
    return key, w0, dt, solver
