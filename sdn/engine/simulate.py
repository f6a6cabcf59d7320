"""`simulate` (final states) and `simulate_trajectory` (states saved along the way).

Paths are vmapped inside one `lax.scan` over blocks of steps; large ensembles run in
chunks (memory stays bounded by the chunk size) whose path axis is sharded over all
devices. Called under a JAX transformation (for example by `sdn.sweep`, which vmaps over
parameters) the drivers run as pure traced code, with the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from sdn._checks import check_int, is_concrete
from sdn._deprecation import warn_deprecated
from sdn.engine import sharding
from sdn.engine.blocks import scan_block
from sdn.engine.config import EngineConfig, resolve
from sdn.engine.inputs import check_increments, prepare
from sdn.engine.results import Trajectory
from sdn.engine.sde import SDE
from sdn.engine.solvers import Solver

Array = jax.Array


class _Unset:
    """The default of `simulate`'s deprecated `save_every` (not passed)."""

    def __repr__(self) -> str:
        return "<deprecated: use simulate_trajectory>"


_MISSING = _Unset()


def _simulate_path(sde, solver, path_key, w0, t0, dt, n_steps, save_every, observe, increments,
                   config):  # fmt: skip
    block_steps = config.block_length(increments)
    n_blocks = math.ceil(n_steps / block_steps)
    ragged = n_steps % block_steps != 0
    if save_every:
        first = observe(w0)
        n_saves = n_steps // save_every + 1
        buf = jnp.zeros((n_saves, *first.shape), first.dtype).at[0].set(first)
    else:
        buf = None

    def one_block(carry, block):
        def one_step(carry, inputs):
            w, buf = carry
            i, dw = inputs
            j = block * block_steps + i
            w_next = solver.step(sde, w, t0 + j * dt, dt, dw)
            if ragged:
                w_next = jnp.where(j < n_steps, w_next, w)
            if save_every:
                done = j + 1
                slot = jnp.minimum(done // save_every, n_saves - 1)
                save = (done % save_every == 0) & (done <= n_steps)
                buf = jax.lax.dynamic_update_index_in_dim(
                    buf, jnp.where(save, observe(w_next), buf[slot]), slot, 0
                )
            return (w_next, buf), None

        carry = scan_block(one_step, carry, sde, path_key, carry[0], dt, block, increments, config)
        return carry, None

    (w, buf), _ = jax.lax.scan(one_block, (w0, buf), jnp.arange(n_blocks))
    return buf if save_every else observe(w)


def _simulate_paths(dynamic, static, key, index, w0, t0, dt, *, solver, n_steps, save_every,
                    observe, increments, config):  # fmt: skip
    sde = sharding.merge(dynamic, static)
    keys = sharding.path_keys(key, index)
    run = partial(
        _simulate_path,
        sde,
        solver,
        w0=w0,
        t0=t0,
        dt=dt,
        n_steps=n_steps,
        save_every=save_every,
        observe=observe,
        increments=increments,
        config=config,
    )
    return jax.vmap(lambda k: run(path_key=k))(keys)


_simulate_jit = jax.jit(
    _simulate_paths,
    static_argnames=(
        "static", "solver", "n_steps", "save_every", "observe", "increments", "config",
    ),
)  # fmt: skip


def _identity(w):
    return w


def _run(key, sde, w0, *, dt, n_steps, n_paths, solver, save_every, observe, t0, chunk_size,
         progress, increments, config):  # fmt: skip
    """The paths' final states or saved states: what both public drivers share."""
    key, w0, dt, solver = prepare(key, sde, w0, dt, n_paths, solver)
    increments = check_increments(increments, sde, solver)
    config = resolve(config)
    n_steps = check_int("n_steps", n_steps)
    observe = observe if observe is not None else _identity
    t0 = jnp.asarray(t0, w0.dtype)
    dynamic, static = sharding.split(sde)
    options = dict(
        solver=solver,
        n_steps=n_steps,
        save_every=save_every,
        observe=observe,
        increments=increments,
        config=config,
    )
    if sharding.under_jit() or not is_concrete(key, w0, dt, dynamic):
        index = jnp.arange(n_paths)
        return _simulate_paths(dynamic, static, key, index, w0, t0, dt, **options), w0, t0, dt
    out = sharding.run_chunks(
        lambda index: _simulate_jit(dynamic, static, key, index, w0, t0, dt, **options),
        n_paths,
        chunk_size,
        progress,
        "simulate",
        config,
    )
    return out, w0, t0, dt


def simulate(
    key: Array | int,
    sde: SDE,
    w0: Array,
    *,
    dt: float,
    n_steps: int,
    n_paths: int,
    solver: str | Solver = "euler_maruyama",
    observe: Callable[[Array], Array] | None = None,
    t0: float = 0.0,
    chunk_size: int | None = None,
    progress: bool | None = None,
    increments: str = "gaussian",
    config: EngineConfig | None = None,
    save_every=_MISSING,
) -> Array:
    """The final states of `n_paths` independent paths of `sde` from `w0` after `n_steps`.

    Every path starts at `w0` and follows the solver's scheme with increments from the
    SDE's noise model. Memory is `O(n_paths)` states; `simulate_trajectory` keeps states
    along the way.

    Args:
      key: a `jax.random.key` (or an int seed). Path `i` uses `fold_in(key, i)`, so the
        result does not depend on `chunk_size` or on the number of devices.
      sde: the SDE (`sdn.SDE` or `sdn.sgd_sde`).
      w0: initial state, any shape; its float dtype is kept (float64 needs x64 enabled).
      dt: step size `> 0` (the learning rate for `sgd_sde`).
      n_steps: number of steps `≥ 1`.
      n_paths: number of paths `≥ 1`.
      solver: an `sdn.solvers` object (`EulerMaruyama()`, `Milstein()`, `Heun()`,
        `SGD()`), its name as shorthand (`"euler_maruyama"`, ...), or a function with the
        signature of `sdn.solvers.euler_maruyama`.
      observe: a function of one state to return instead of the state (e.g. `jnp.abs`).
      t0: time of `w0`.
      chunk_size: paths per compiled chunk (default `config.chunk_size`); results do
        not depend on it.
      progress: show a progress bar over chunks (default: when there are several).
      increments: `"gaussian"` (Brownian increments, the default: pathwise results) or
        `"two_point"`, the weak mode: `±sqrt(dt)` per coordinate with probability 1/2
        (for full-covariance noise, one sign per column of `sqrt(C)`; for
        `noise.empirical`, one per factor). Laws and expectations keep Euler–Maruyama's
        weak order 1 (error `O(dt)`), individual paths are not Brownian; several times
        faster. Gaussian noise models only, and not with `Milstein`, whose order is
        pathwise.
      config: the engine's speed settings (`sdn.EngineConfig`; default: the backend's).
      save_every: deprecated; use `simulate_trajectory`.

    Returns:
      The final states (or observables), `(n_paths, *shape)`.

    >>> import jax, jax.numpy as jnp
    >>> from sdn import SDE, noise
    >>> ou = SDE(lambda w: -w, noise.isotropic(2.0), 1.0)
    >>> simulate(jax.random.key(0), ou, jnp.zeros(2), dt=0.01, n_steps=100, n_paths=8).shape
    (8, 2)
    """
    if save_every is not _MISSING:
        warn_deprecated("simulate(save_every=...)", "sdn.simulate_trajectory(save_every=...)")
        if save_every is not None:
            return simulate_trajectory(
                key, sde, w0, dt=dt, n_steps=n_steps, n_paths=n_paths, save_every=save_every,
                solver=solver, observe=observe, t0=t0, chunk_size=chunk_size,
                progress=progress, increments=increments, config=config,
            )  # fmt: skip
    out, *_ = _run(
        key, sde, w0, dt=dt, n_steps=n_steps, n_paths=n_paths, solver=solver, save_every=None,
        observe=observe, t0=t0, chunk_size=chunk_size, progress=progress,
        increments=increments, config=config,
    )  # fmt: skip
    return out


def simulate_trajectory(
    key: Array | int,
    sde: SDE,
    w0: Array,
    *,
    dt: float,
    n_steps: int,
    n_paths: int,
    save_every: int,
    solver: str | Solver = "euler_maruyama",
    observe: Callable[[Array], Array] | None = None,
    t0: float = 0.0,
    chunk_size: int | None = None,
    progress: bool | None = None,
    increments: str = "gaussian",
    config: EngineConfig | None = None,
) -> Trajectory:
    """`simulate`, keeping the state (or `observe(state)`) every `save_every` steps.

    The paths and their numbers are those of `simulate` with the same arguments; memory
    is `O(n_paths × n_saves)`.

    Args:
      save_every: keep the state every this many steps (plus `w0`), `1 ≤ save_every ≤
        n_steps`.
      others: as in `simulate`.

    Returns:
      `Trajectory(time, value)`: `time` of shape `(n_saves,)`, `value` of shape
      `(n_paths, n_saves, *shape)`, with `n_saves = n_steps // save_every + 1`.

    >>> import jax, jax.numpy as jnp
    >>> from sdn import SDE, noise
    >>> ou = SDE(lambda w: -w, noise.isotropic(2.0), 1.0)
    >>> tr = simulate_trajectory(0, ou, 0.0, dt=0.01, n_steps=100, n_paths=8, save_every=10)
    >>> tr.time.shape, tr.value.shape
    ((11,), (8, 11))
    """
    save_every = check_int("save_every", save_every)
    n_steps = check_int("n_steps", n_steps)
    if save_every > n_steps:
        raise ValueError(f"save_every={save_every} exceeds n_steps={n_steps}")
    out, w0, t0, dt = _run(
        key, sde, w0, dt=dt, n_steps=n_steps, n_paths=n_paths, solver=solver,
        save_every=save_every, observe=observe, t0=t0, chunk_size=chunk_size,
        progress=progress, increments=increments, config=config,
    )  # fmt: skip
    times = t0 + dt * save_every * jnp.arange(n_steps // save_every + 1, dtype=w0.dtype)
    return Trajectory(times, out)
