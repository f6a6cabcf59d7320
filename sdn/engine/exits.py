"""First exits: `first_exit_time`, `first_exit_time_per_path` (docs/theory.md §4).

Exits are tested after every step, with an optional boundary correction for discrete
monitoring: the Brownian bridge for Gaussian steps, walls moved inward for two-point
steps. Paths run in lanes (`sdn.engine.lanes`) so that a few slow, heavy-tailed exits do
not keep the whole ensemble busy; called under a JAX transformation (`sdn.sweep` vmaps
over parameters) the drivers run as pure traced code: one chunk, a `while_loop` until
every path is done, the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdn._checks import check_int, is_concrete
from sdn._deprecation import renamed_keywords
from sdn.engine import sharding
from sdn.engine.blocks import TWO_POINT_SHIFT, ExitState
from sdn.engine.config import EngineConfig, resolve
from sdn.engine.inputs import check_increments, is_discrete_sgd, prepare
from sdn.engine.lanes import ExitOptions, Lanes, exit_chunks, exit_lanes
from sdn.engine.results import DIVERGED, EXITED, INSIDE, RUNNING, ExitResult, ExitStatus
from sdn.engine.sde import SDE
from sdn.engine.solvers import Solver

Array = jax.Array

__all__ = [
    "DIVERGED",
    "EXITED",
    "INSIDE",
    "TWO_POINT_SHIFT",
    "ExitResult",
    "ExitStatus",
    "first_exit_time",
    "first_exit_time_per_path",
]

_RENAMES = dict(max_steps="n_steps", bridge="boundary_correction")


@renamed_keywords("first_exit_time", **_RENAMES)
def first_exit_time(
    key: Array | int,
    sde: SDE,
    w0: Array,
    domain: Any,
    *,
    dt: float,
    n_steps: int,
    n_paths: int,
    solver: str | Solver = "euler_maruyama",
    boundary_correction: bool = True,
    t0: float = 0.0,
    chunk_size: int | None = None,
    progress: bool | None = None,
    increments: str = "gaussian",
    config: EngineConfig | None = None,
) -> ExitResult:
    """First time each of `n_paths` paths from `w0` leaves `domain` (docs/theory.md §4).

    Exits are checked after every step. With `boundary_correction=True` a Gaussian step
    that stays inside is also counted as an exit with the probability that the Brownian
    bridge between its two ends crossed the boundary (`exp(−2 d0 d1 / (v dt))` per wall),
    which removes most of the `O(sqrt(dt))` bias of discrete monitoring. The correction
    applies where it is defined: Gaussian noise, a continuous-time solver and a domain
    that is a box (`interval`, `box`); elsewhere (discrete SGD, minibatch or α-stable
    noise, `from_function`) exits are the monitored ones. With `increments="two_point"`
    the correction is a boundary shift instead: a path exits when it comes within
    `TWO_POINT_SHIFT · sqrt(v dt)` (`v` its variance per unit time) of a wall, the mean
    overshoot of a walk with steps `±sqrt(v dt)`; mean exit times then match the
    continuous ones to `O(dt)`.

    Args:
      key: a `jax.random.key` or an int seed; path `i` uses `fold_in(key, i)`.
      sde: the SDE.
      w0: the starting state, strictly inside `domain`.
      domain: `sdn.domains.interval`, `box` or `from_function`.
      dt: step size `> 0`.
      n_steps: the horizon: steps after which a path still inside stops, with status
        `ExitStatus.INSIDE` (was `max_steps`).
      n_paths: number of paths.
      solver: as in `simulate`.
      boundary_correction: correct for discrete monitoring where it is defined: the
        Brownian bridge (Gaussian increments) or the wall shift (two-point increments)
        (was `bridge`).
      t0: starting time.
      chunk_size: paths per chunk (default `config.chunk_size`).
      progress: show a progress bar over rounds of steps.
      increments: `"gaussian"` or `"two_point"` (the weak mode), as in `simulate`.
      config: the engine's speed settings (`sdn.EngineConfig`; default: the backend's).

    Returns:
      `ExitResult(time, position, status, steps)`; `result.summary()` gives counts and
      the mean exit time over exited paths.

    >>> import jax, jax.numpy as jnp
    >>> from sdn import SDE, noise, domains
    >>> bm = SDE(lambda w: 0.0 * w, noise.isotropic(1.0), 1.0)
    >>> r = first_exit_time(0, bm, 0.0, domains.interval(-1.0, 1.0), dt=1e-3,
    ...                     n_steps=20_000, n_paths=64)
    >>> r.time.shape, bool(jnp.all(r.status == ExitStatus.EXITED))
    ((64,), True)
    """
    key, w0, dt, solver = prepare(key, sde, w0, dt, n_paths, solver)
    increments = check_increments(increments, sde, solver)
    if not hasattr(domain, "inside"):
        raise TypeError(f"domain must come from sdn.domains, got {type(domain).__name__}")
    if is_concrete(domain, w0):
        domain.check_state(w0)
        if not bool(domain.inside(w0)):
            raise ValueError(f"w0={np.asarray(w0)} is not inside the domain {domain}")
    return _first_exits(
        key, sde, w0, domain, dt=dt, n_steps=n_steps, n_paths=n_paths, solver=solver,
        boundary_correction=boundary_correction, t0=t0, chunk_size=chunk_size,
        progress=progress, increments=increments, per_path=False, config=config,
    )  # fmt: skip


@renamed_keywords("first_exit_time_per_path", **_RENAMES)
def first_exit_time_per_path(
    keys: Array,
    sde: SDE,
    w0: Array,
    domain: Any,
    *,
    dt: float,
    n_steps: int,
    solver: str | Solver = "euler_maruyama",
    boundary_correction: bool = True,
    t0: float = 0.0,
    chunk_size: int | None = None,
    progress: bool | None = None,
    increments: str = "gaussian",
    config: EngineConfig | None = None,
) -> ExitResult:
    """First exits of paths that each have their own parameters and key.

    Like `first_exit_time`, but path `i` uses `keys[i]` as its key and row `i` of every
    array leaf of `sde`, `domain` and `w0` (each with a leading axis of `n_paths =
    len(keys)`). Many parameter points thus run as one ensemble, and the compaction of
    finished paths works across points: a sweep's slow points no longer hold the fast
    ones (`sdn.sweep`'s `escape` uses it). With `keys[i] = fold_in(key_p, j)` path `i`
    reproduces path `j` of `first_exit_time(key_p, …)` exactly (with the same
    `increments`, `"gaussian"` or `"two_point"`).

    >>> import jax, jax.numpy as jnp
    >>> from sdn import SDE, noise, domains
    >>> var = jnp.array([1.0, 1.0, 4.0, 4.0])
    >>> drift = jax.tree_util.Partial(lambda v, w: 0.0 * w, var)
    >>> sde = SDE(drift, jax.vmap(noise.isotropic)(jnp.ones(4)), var)
    >>> keys = jax.random.split(jax.random.key(0), 4)
    >>> r = first_exit_time_per_path(keys, sde, jnp.zeros(4), domains.box(
    ...     -jnp.ones(4), jnp.ones(4)), dt=1e-3, n_steps=10**5)
    >>> r.time.shape
    (4,)
    """
    if not (isinstance(keys, jax.Array) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)):
        raise TypeError(f"keys must be an array of jax.random keys, got {type(keys).__name__}")
    if keys.ndim != 1:
        raise ValueError(f"keys must have shape (n_paths,), got {keys.shape}")
    n_paths = keys.shape[0]
    for name, tree in (("sde", sde), ("w0", w0), ("domain", domain)):
        for leaf in jax.tree.leaves(tree):
            if sharding.is_array(leaf) and np.shape(leaf)[:1] != (n_paths,):
                raise ValueError(
                    f"every array in {name} needs a leading path axis of {n_paths}, got "
                    f"shape {np.shape(leaf)}"
                )
    w0 = jnp.asarray(w0)
    row0 = jax.tree.map(lambda a: a[0] if sharding.is_array(a) else a, (sde, domain))
    _, w_row, dt, solver = prepare(jax.random.key(0), row0[0], w0[0], dt, n_paths, solver)
    increments = check_increments(increments, row0[0], solver)
    if is_concrete(domain, w0) and not bool(
        jnp.all(jax.vmap(lambda d, w: d.inside(w))(domain, w0))
    ):
        raise ValueError("every row of w0 must lie inside its row of the domain")
    return _first_exits(
        keys, sde, w0.astype(w_row.dtype), domain, dt=dt, n_steps=n_steps, n_paths=n_paths,
        solver=solver, boundary_correction=boundary_correction, t0=t0,
        chunk_size=chunk_size, progress=progress, increments=increments, per_path=True,
        config=config,
    )  # fmt: skip


def _options(sde, domain, *, solver, boundary_correction, per_path, increments, config):
    """The static options: which correction applies, and whether blocks may run quiet."""
    corrected = bool(
        boundary_correction
        and getattr(domain, "is_box", False)
        and sde.noise.is_gaussian
        and not is_discrete_sgd(sde, solver)
    )
    gaussian = increments == "gaussian"
    return ExitOptions(
        solver=solver,
        bridge=corrected and gaussian,
        shift=corrected and not gaussian,
        per_path=per_path,
        increments=increments,
        # Gaussian blocks keep the per-step test: it costs little next to their normals,
        # which a replay would draw again.
        quiet=config.quiet_blocks and not gaussian,
        config=config,
    )


def _first_exits(key, sde, w0, domain, *, dt, n_steps, n_paths, solver, boundary_correction,
                 t0, chunk_size, progress, increments, per_path, config) -> ExitResult:  # fmt: skip
    """The shared core of both drivers (arguments checked): lanes on the host's driver,
    or one batch of lanes under a JAX transformation."""
    n_steps = check_int("n_steps", n_steps)
    config = resolve(config)
    opts = _options(
        sde, domain, solver=solver, boundary_correction=boundary_correction,
        per_path=per_path, increments=increments, config=config,
    )  # fmt: skip
    t0 = jnp.asarray(t0, w0.dtype)
    # n_steps is traced, not static: sweeps over dt with a fixed horizon compile once.
    dynamic, static = sharding.split((sde, domain, t0, dt, jnp.asarray(n_steps, jnp.int32)))
    n_blocks = math.ceil(n_steps / config.block_length(increments, exits=True))

    def initial(start, n):
        if per_path:
            rows = np.minimum(np.arange(start, start + n), n_paths - 1)
            w = w0[rows]
        else:
            w = jnp.broadcast_to(w0, (n, *w0.shape))
        return ExitState(
            w=w,
            steps=jnp.zeros((n,), jnp.int32),
            status=jnp.full((n,), RUNNING, jnp.int8),
        )

    if sharding.under_jit() or not is_concrete(key, dynamic):
        # One batch of lanes, one per path, and no refill: every path runs to its end.
        state = initial(0, n_paths)
        lanes = Lanes(jnp.arange(n_paths, dtype=jnp.int32), state, jnp.zeros_like(state.steps))
        # Every block runs exactly here: the replays' loop would only add to the program.
        _, state, _, _ = exit_lanes(
            key, dynamic, static, 0, n_paths, state.w, lanes, state, n_paths, n_blocks,
            opts._replace(quiet=False),
        )  # fmt: skip
    else:
        state = exit_chunks(
            key, dynamic, static, initial, n_paths, n_blocks, chunk_size, progress, opts
        )
    time = t0 + state.steps.astype(w0.dtype) * dt
    return ExitResult(time, state.w, state.status, state.steps)
