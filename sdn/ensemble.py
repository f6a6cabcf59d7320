"""Many paths, many steps, many devices: `simulate` and `first_exit_time`.

How the drivers are built, and why (see docs/benchmarks.md):

- Path `i` draws its randomness from `fold_in(key, i)`, and each block of
  `BLOCK_STEPS` steps from `fold_in(path_key, block)`. A path's numbers therefore do
  not depend on how paths are grouped into chunks or spread over devices, and drawing a
  whole block of increments at once keeps the random number generator, the real
  bottleneck, at its full speed.
- Paths are vmapped inside one `lax.scan`; large ensembles run in chunks (memory stays
  bounded by the chunk size) whose path axis is sharded over all devices.
- First-exit runs keep a batch of lanes busy: a lane whose path exits takes the next
  path not yet started (each path starts at its own block 0, so its numbers do not
  change). Once every path has started, the lanes still busy are compacted between
  rounds into smaller batches (sizes from a short ladder of powers, to bound
  recompilation), so a few slow, heavy-tailed exits do not keep the ensemble busy.
- Most blocks of a first-exit path stay far from every wall. In the two-point mode,
  where the per-step exit test would cost as much as the step, each block first runs
  without it, keeping only the path's extremes (and its largest variance, for the
  shifted walls); the few blocks that came near a wall, diverged or reach `max_steps`
  are replayed from the same random bits with the exact test. The numbers are those of
  the exact test alone.
- Called under a JAX transformation (for example by `sdn.sweep`, which vmaps over
  parameters), the drivers run as pure traced code: one chunk, a `while_loop` until
  every path is done, the same numbers.
- `increments="two_point"` is the weak mode: each step's increment is `±sqrt(dt)` per
  coordinate, read from the bits of random 32-bit words (one word gives 32 steps of one
  coordinate), instead of a normal draw. Euler–Maruyama keeps its weak order 1: laws and
  expectations are right to `O(dt)`, individual paths are not Brownian. With the RNG no
  longer the bottleneck, this mode runs about an order of magnitude past the speed of
  drawing normals (docs/benchmarks.md).
- Settings that change speed but no number are chosen by `jax.default_backend()`: on a
  GPU or TPU, larger chunks (`ACCELERATOR_CHUNK`), each block's steps unrolled into one
  program (every loop iteration there is a kernel launch), and no compaction of
  first-exit lanes below `2**14` of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sdn import solvers as _solvers
from sdn._checks import check_finite, check_int, check_positive, is_concrete
from sdn.noise import INCREMENTS, Minibatch, check_increments  # noqa: F401  (INCREMENTS: re-exported)
from sdn.sde import SDE

Array = jax.Array

BLOCK_STEPS = 50
"""Steps per block of increments drawn at once for one path (results depend on it)."""

TWO_POINT_WORDS = 8
"""Random 32-bit words per coordinate per block of `simulate` in the two-point mode, one
step per bit (results depend on it). Longer blocks draw their bits with fewer hashes."""

TWO_POINT_EXIT_WORDS = 2
"""The same for first exits: shorter blocks, because a block in which a path comes near
a wall runs twice (results depend on it)."""

TWO_POINT_SHIFT = 0.5
"""First exits with two-point increments: the walls move inward by this times
`sqrt(v dt)` (`v` the variance per unit time at the current state), the mean overshoot of
a walk whose steps are `±sqrt(v dt)` plus a small drift: it climbs in steps of one
lattice spacing and lands uniformly within one spacing past the wall (docs/theory.md §4).
Gaussian steps overshoot by `0.5826 sqrt(v dt)` on average (Siegmund's constant
`−ζ(1/2)/sqrt(2π)`); their correction is the Brownian bridge instead."""

DEFAULT_CHUNK = 1 << 16
"""Paths per chunk by default on the CPU: bounds memory at a few tens of MB for 1-D problems."""

ACCELERATOR_CHUNK = 1 << 20
"""Paths per chunk by default on a GPU or TPU, which needs many paths at once to be busy."""

EXITED, INSIDE, DIVERGED = 0, 1, 2
"""Exit status per path: left the domain; still inside at `max_steps`; non-finite state."""
_RUNNING = 3

_STEPS_PER_ROUND = 250
_TAIL_ROUNDS = 16  # rounds of the smallest batch (and while lanes refill) run up to 16x longer
_BUCKET_BASE = 4  # batch sizes n_devices · smallest · base^k
_SMALLEST_BUCKET = 256  # below this, running a few idle paths is cheaper than compiling
_ACCELERATOR_SMALLEST_BUCKET = 1 << 14  # a GPU runs this many lanes as fast as fewer
_BIT_UNROLL = 4  # two-point steps per loop iteration on the CPU (4 was faster than 8 or 16)
_WORD_UNROLL = 2  # words unrolled per iteration on accelerators: 64 two-point steps, near the
# 50-step program of a Gaussian block there (not yet tuned on a device)
_UNROLL: bool | None = None  # unroll each block's steps; None: on accelerators only
_QUIET_BLOCKS = True  # first exits: blocks far from every wall skip the per-step bookkeeping
_REPLAY_FRACTION = 8  # the other blocks are replayed in batches of this fraction of the lanes
_REFILL_ABOVE = 4096  # chunks of more paths per device run in refilled lanes
_LANE_FRACTION = 4  # ... about this fraction of them


class Trajectory(NamedTuple):
    """Saved states (or observables) of an ensemble.

    Attributes:
      time: `(n_saves,)` times `t0 + k · save_every · dt`, starting with `t0`.
      value: `(n_paths, n_saves, *shape)` the saved states or `observe(state)`.
    """

    time: Array
    value: Array


class ExitResult(NamedTuple):
    """First exits of an ensemble from a domain.

    Attributes:
      time: `(n_paths,)` exit times (`max_steps · dt` for paths still inside).
      position: `(n_paths, *shape)` the first state found outside (the last finite
        state for diverged paths, the final state for paths still inside).
      status: `(n_paths,)` `EXITED`, `INSIDE` or `DIVERGED`.
      steps: `(n_paths,)` steps taken.
    """

    time: Array
    position: Array
    status: Array
    steps: Array

    def summary(self) -> dict[str, float]:
        """Counts per status and the mean exit time with its standard error.

        Only exited paths enter the mean; if some paths are still inside, the mean is a
        lower bound, and `inside > 0` says so.
        """
        status = np.asarray(self.status)
        times = np.asarray(self.time, dtype=np.float64)[status == EXITED]
        n = times.size
        return {
            "exited": int(n),
            "inside": int(np.sum(status == INSIDE)),
            "diverged": int(np.sum(status == DIVERGED)),
            "mean_time": float(times.mean()) if n else math.nan,
            "sem": float(times.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        }


# --------------------------------------------------------------------------- helpers


class _Static:
    """A non-array leaf (a function, say) carried as a static argument of `jit`."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        try:
            return hash(self.value)
        except TypeError:
            return id(self.value)

    def __eq__(self, other):
        return isinstance(other, _Static) and (
            self.value is other.value or _safe_eq(self.value, other.value)
        )


def _safe_eq(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic | float | int | complex)


def _split(tree) -> tuple[list, tuple]:
    """Array leaves (traced by `jit`) and everything else (static), with the structure."""
    leaves, treedef = jax.tree.flatten(tree)
    dynamic = [jnp.asarray(x) if _is_array(x) else None for x in leaves]
    static = tuple(None if _is_array(x) else _Static(x) for x in leaves)
    return dynamic, (treedef, static)


def _merge(dynamic: list, static: tuple):
    treedef, statics = static
    leaves = [d if s is None else s.value for d, s in zip(dynamic, statics)]
    return jax.tree.unflatten(treedef, leaves)


def _under_jit() -> bool:
    return isinstance(jnp.zeros(()) + 0, jax.core.Tracer)


def _on_accelerator() -> bool:
    return jax.default_backend() != "cpu"


def _unrolled() -> bool:
    """Whether a block's steps are unrolled into one program: on accelerators, where each
    iteration of a loop costs a kernel launch; on the CPU a loop was as fast."""
    return _on_accelerator() if _UNROLL is None else _UNROLL


def _smallest_bucket() -> int:
    return _ACCELERATOR_SMALLEST_BUCKET if _on_accelerator() else _SMALLEST_BUCKET


def _mesh() -> Mesh:
    return Mesh(np.array(jax.devices()), ("paths",))


def _bucket(n: int, n_devices: int, base: int = 2, smallest: int = 1) -> int:
    """Smallest size ≥ n of the form n_devices · base^k (bounds the number of compilations)."""
    size = n_devices * smallest
    while size < n:
        size *= base
    return size


def _path_keys(key: Array, index: Array) -> Array:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(index)


def _two_point_words(exits: bool) -> int:
    return TWO_POINT_EXIT_WORDS if exits else TWO_POINT_WORDS


def _block_steps(increments: str, exits: bool = False) -> int:
    return 32 * _two_point_words(exits) if increments == "two_point" else BLOCK_STEPS


def _scan_block(body, carry, sde, path_key, w, dt, block, increments, extra=None, exits=False):
    """Run `body(carry, (i, dw, *extra))` over the steps `i` of one block of one path.

    Gaussian increments come from the noise model, a block at once. Two-point increments
    are `±sqrt(dt)` from the bits of random words per standard increment of the noise
    model (per coordinate, or per factor of `noise.empirical`; `TWO_POINT_WORDS`, or
    `TWO_POINT_EXIT_WORDS` for first `exits`): step `32 m + b` of the block reads bit `b`
    of word `m`, so each step costs a shift and a select instead of a normal draw.
    `extra` (Gaussian mode only): more per-step inputs.
    """
    k = jax.random.fold_in(path_key, block)
    if increments == "gaussian":
        dws = sde.noise.block(k, w, dt, BLOCK_STEPS)
        xs = (jnp.arange(BLOCK_STEPS), dws) + (() if extra is None else (extra,))
        return jax.lax.scan(body, carry, xs, unroll=BLOCK_STEPS if _unrolled() else 1)[0]
    n_words = _two_point_words(exits)
    # one sign per standard increment of the model: per coordinate of `w` for the
    # diagonal models, per factor for `noise.empirical`
    shape = jax.eval_shape(sde.noise.standard, k, w, dt).shape
    words = jax.random.bits(k, (n_words, *shape), jnp.uint32)
    root = jnp.sqrt(dt).astype(jnp.result_type(w))

    def one_word(carry, inputs):
        m, word = inputs

        def one_bit(carry, b):
            dw = jnp.where(((word >> b) & 1) == 1, root, -root)
            return body(carry, (32 * m + b.astype(jnp.int32), dw))

        bits = jnp.arange(32, dtype=jnp.uint32)
        return jax.lax.scan(one_bit, carry, bits, unroll=32 if full else _BIT_UNROLL)[0], None

    full = _unrolled()
    xs = (jnp.arange(n_words), words)
    return jax.lax.scan(one_word, carry, xs, unroll=min(n_words, _WORD_UNROLL) if full else 1)[0]


def _check_increments(increments: str, sde: SDE, solver) -> str:
    if check_increments(increments) == "gaussian":
        return increments
    if not sde.noise.is_gaussian:
        raise ValueError(
            f"increments='two_point' replaces the Brownian increments of a Gaussian noise "
            f"model; {type(sde.noise).__name__} noise draws its own (use the default "
            f"increments='gaussian')"
        )
    if solver == "milstein":
        raise ValueError(
            "solver='milstein' is a pathwise (strong order 1) scheme and needs Brownian "
            "increments; with increments='two_point' its correction vanishes (dW² = dt). "
            "Use increments='gaussian', or euler_maruyama/heun for weak results"
        )
    return increments


def _prepare(key, sde, w0, dt, n_paths, solver):
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
    step = _solvers.get(solver, sde)
    if solver == "sgd" and isinstance(sde.noise, Minibatch) and is_concrete(sde.scale, dt):
        lr = float(sde.scale) * sde.noise.batch_size
        if not np.isclose(lr, float(dt), rtol=1e-5):
            raise ValueError(
                f"solver='sgd' with minibatch noise runs SGD with learning rate dt; build the "
                f"SDE with sgd_sde(..., learning_rate=dt): its learning rate is {lr:g}, "
                f"dt={float(dt):g}"
            )
    return key, w0, dt, step


def _chunks(n_paths: int, chunk_size: int | None, n_devices: int):
    """(start, size, padded size) of equal chunks of at most `chunk_size` paths.

    Chunks are equal (one compilation) and padded to a multiple of the device count.
    """
    if chunk_size is not None:
        limit = check_int("chunk_size", chunk_size)
    else:
        limit = ACCELERATOR_CHUNK if _on_accelerator() else DEFAULT_CHUNK
    n_chunks = math.ceil(n_paths / limit)
    per = math.ceil(math.ceil(n_paths / n_chunks) / n_devices) * n_devices
    for start in range(0, n_paths, per):
        yield start, min(per, n_paths - start), per


def _progress(total: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


# --------------------------------------------------------------------------- simulate


def _simulate_path(sde, step, path_key, w0, t0, dt, n_steps, save_every, observe, increments):
    block_steps = _block_steps(increments)
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
            w_next = step(sde, w, t0 + j * dt, dt, dw)
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

        carry = _scan_block(one_step, carry, sde, path_key, carry[0], dt, block, increments)
        return carry, None

    (w, buf), _ = jax.lax.scan(one_block, (w0, buf), jnp.arange(n_blocks))
    return buf if save_every else observe(w)


def _simulate_paths(
    dynamic, static, key, index, w0, t0, dt, *, step, n_steps, save_every, observe, increments
):
    sde = _merge(dynamic, static)
    keys = _path_keys(key, index)
    run = partial(
        _simulate_path,
        sde,
        step,
        w0=w0,
        t0=t0,
        dt=dt,
        n_steps=n_steps,
        save_every=save_every,
        observe=observe,
        increments=increments,
    )
    return jax.vmap(lambda k: run(path_key=k))(keys)


_simulate_jit = jax.jit(
    _simulate_paths,
    static_argnames=("static", "step", "n_steps", "save_every", "observe", "increments"),
)


def simulate(
    key: Array | int,
    sde: SDE,
    w0: Array,
    *,
    dt: float,
    n_steps: int,
    n_paths: int,
    solver: str = "euler_maruyama",
    save_every: int | None = None,
    observe: Callable[[Array], Array] | None = None,
    t0: float = 0.0,
    chunk_size: int | None = None,
    progress: bool | None = None,
    increments: str = "gaussian",
) -> Array | Trajectory:
    """Simulate `n_paths` independent paths of `sde` from `w0` for `n_steps` steps.

    Every path starts at `w0` and follows the solver's scheme with increments from the
    SDE's noise model. Memory is `O(n_paths × saved points)`: with `save_every=None` only
    the final states are kept.

    Args:
      key: a `jax.random.key` (or an int seed). Path `i` uses `fold_in(key, i)`, so the
        result does not depend on `chunk_size` or on the number of devices.
      sde: the SDE (`sdn.SDE` or `sdn.sgd_sde`).
      w0: initial state, any shape; its float dtype is kept (float64 needs x64 enabled).
      dt: step size `> 0` (the learning rate for `sgd_sde`).
      n_steps: number of steps `≥ 1`.
      n_paths: number of paths `≥ 1`.
      solver: `"euler_maruyama"`, `"milstein"`, `"heun"` or `"sgd"` (or a function with
        the signature of `sdn.solvers.euler_maruyama`).
      save_every: keep the state every this many steps (plus `w0`), or `None` for the
        final state only.
      observe: a function of one state to keep instead of the state (e.g. `jnp.abs`).
      t0: time of `w0`.
      chunk_size: paths per compiled chunk (default `DEFAULT_CHUNK` on the CPU,
        `ACCELERATOR_CHUNK` on a GPU or TPU); results do not depend on it.
      progress: show a progress bar over chunks (default: when there are several).
      increments: `"gaussian"` (Brownian increments, the default: pathwise results) or
        `"two_point"`, the weak mode: `±sqrt(dt)` per coordinate with probability 1/2
        (for full-covariance noise, one sign per column of `sqrt(C)`; for
        `noise.empirical`, one per factor). Laws and
        expectations keep Euler–Maruyama's weak order 1 (error `O(dt)`), individual
        paths are not Brownian; several times faster. Gaussian noise models only, and
        not with `solver="milstein"`, whose order is pathwise.

    Returns:
      With `save_every=None`: the final states (or observables), `(n_paths, *shape)`.
      Otherwise a `Trajectory(time, value)` with `value` of shape
      `(n_paths, n_saves, *shape)`.

    >>> import jax, jax.numpy as jnp
    >>> from sdn import SDE, noise
    >>> ou = SDE(lambda w: -w, noise.isotropic(2.0), 1.0)
    >>> simulate(jax.random.key(0), ou, jnp.zeros(2), dt=0.01, n_steps=100, n_paths=8).shape
    (8, 2)
    """
    key, w0, dt, step = _prepare(key, sde, w0, dt, n_paths, solver)
    increments = _check_increments(increments, sde, solver)
    n_steps = check_int("n_steps", n_steps)
    if save_every is not None:
        save_every = check_int("save_every", save_every)
        if save_every > n_steps:
            raise ValueError(f"save_every={save_every} exceeds n_steps={n_steps}")
    observe = observe if observe is not None else _identity
    t0 = jnp.asarray(t0, w0.dtype)
    dynamic, static = _split(sde)
    options = dict(
        step=step, n_steps=n_steps, save_every=save_every, observe=observe, increments=increments
    )

    if _under_jit() or not is_concrete(key, w0, dt, dynamic):
        out = _simulate_paths(dynamic, static, key, jnp.arange(n_paths), w0, t0, dt, **options)
    else:
        out = _run_chunks(
            lambda index: _simulate_jit(dynamic, static, key, index, w0, t0, dt, **options),
            n_paths,
            chunk_size,
            progress,
            "simulate",
        )
    if save_every is None:
        return out
    times = t0 + dt * save_every * jnp.arange(n_steps // save_every + 1, dtype=w0.dtype)
    return Trajectory(times, out)


def _identity(w):
    return w


def _run_chunks(run, n_paths, chunk_size, progress, desc):
    """Run `run(index)` chunk by chunk, with the path axis sharded over all devices."""
    mesh = _mesh()
    n_dev = mesh.size
    sharding = NamedSharding(mesh, PartitionSpec("paths"))
    chunks = list(_chunks(n_paths, chunk_size, n_dev))
    outs = []
    with _progress(n_paths, desc, progress if progress is not None else len(chunks) > 1) as bar:
        for start, size, padded in chunks:
            index = jax.device_put(np.arange(start, start + padded, dtype=np.int32), sharding)
            out = run(index)
            outs.append(jax.tree.map(lambda x, s=size: np.asarray(x[:s]), out))
            bar.update(size)
    if len(outs) == 1:
        return jax.tree.map(jnp.asarray, outs[0])
    return jax.tree.map(lambda *xs: jnp.asarray(np.concatenate(xs)), *outs)


# --------------------------------------------------------------------------- first exits


class _ExitState(NamedTuple):
    w: Array
    steps: Array
    status: Array


def _exit_block(sde, step, domain, bridge, max_steps, t0, dt, path_key, state, block, increments):
    """Advance one path by one block of steps, stopping at its exit.

    `bridge` (where defined): with Gaussian increments a step that stays inside also
    exits with the Brownian bridge's crossing probability; with two-point increments the
    walls move inward by `TWO_POINT_SHIFT · sqrt(v dt)`, the walk's mean overshoot.
    """
    w0 = state.w
    gaussian = increments == "gaussian"
    if bridge and gaussian:
        ukey = jax.random.fold_in(jax.random.fold_in(path_key, block), 1 << 30)
        uniforms = jax.random.uniform(ukey, (BLOCK_STEPS,), dtype=w0.dtype)
    elif gaussian:
        uniforms = jnp.zeros((BLOCK_STEPS,), w0.dtype)
    else:
        uniforms = None

    def one_step(state, inputs):
        running = state.status == _RUNNING
        w_next = step(sde, state.w, t0 + state.steps * dt, dt, inputs[1])
        finite = jnp.all(jnp.isfinite(w_next))
        left = ~domain.inside(w_next)
        if bridge and gaussian:
            p = domain.crossing_probability(state.w, w_next, sde.variance(state.w) * dt)
            left = left | (inputs[2] < p)
        elif bridge:
            left = left | _near_wall(
                domain, w_next, TWO_POINT_SHIFT**2 * sde.variance(state.w) * dt
            )
        steps = state.steps + 1
        new_status = jnp.where(
            ~finite,
            DIVERGED,
            jnp.where(left, EXITED, jnp.where(steps >= max_steps, INSIDE, _RUNNING)),
        ).astype(state.status.dtype)
        return _ExitState(
            w=jnp.where(running & finite, w_next, state.w),
            steps=jnp.where(running, steps, state.steps),
            status=jnp.where(running, new_status, state.status),
        ), None

    return _scan_block(
        one_step, state, sde, path_key, w0, dt, block, increments, uniforms, exits=True
    )


def _near_wall(domain, w: Array, margin_sq: Array) -> Array:
    """True if a coordinate of `w` lies within `sqrt(margin_sq)` of a wall of the box
    `domain` (squares: no square root per step)."""
    gap = jnp.minimum(w - domain.lo, domain.hi - w)
    return jnp.any((gap <= 0) | (jnp.square(gap) <= margin_sq))


def _quiet_block(sde, step, domain, shift, t0, dt, path_key, state, block):
    """Advance one path by a whole block of two-point steps with no per-step bookkeeping.

    Returns the block's end state and whether the block is quiet: the path stayed
    inside with room to spare at every step, so `_exit_block` would have changed
    nothing but the state and the step count. For a box only the running extremes of
    each coordinate (and of its variance, for the `shift` of the walls) are kept per
    step: the path exits only if they come near a wall. NaN and infinite states fail
    these comparisons, so divergence is never quiet. A block that is not quiet runs
    again exactly (`_exit_lanes` replays it from the same random bits).
    """
    w0 = state.w
    box = getattr(domain, "has_bridge", False)
    wide = box and shift

    def one_step(carry, inputs):
        w, low, high, v = carry
        i, dw = inputs[0], inputs[1]
        w_next = step(sde, w, t0 + (state.steps + i) * dt, dt, dw)
        if box:
            low, high = jnp.minimum(low, w_next), jnp.maximum(high, w_next)
            if wide:
                v = jnp.maximum(v, sde.variance(w))
        else:
            low = low & domain.inside(w_next) & jnp.all(jnp.isfinite(w_next))
        return (w_next, low, high, v), None

    if box:
        start = (w0, w0, w0, jnp.zeros_like(w0))
    else:
        start = (w0, jnp.bool_(True), jnp.bool_(True), jnp.zeros_like(w0))
    w, low, high, v = _scan_block(
        one_step, start, sde, path_key, w0, dt, block, "two_point", exits=True
    )
    if not box:
        return w, low
    gap = jnp.minimum(low - domain.lo, domain.hi - high)  # NaN for a diverged path
    room = gap > 0
    if shift:  # as `_near_wall`'s margin, from the block's largest variance
        room = room & (jnp.square(gap) > TWO_POINT_SHIFT**2 * v * dt)
    return w, jnp.all(room)


def first_exit_time(
    key: Array | int,
    sde: SDE,
    w0: Array,
    domain: Any,
    *,
    dt: float,
    max_steps: int,
    n_paths: int,
    solver: str = "euler_maruyama",
    bridge: bool = True,
    t0: float = 0.0,
    chunk_size: int | None = None,
    progress: bool | None = None,
    increments: str = "gaussian",
) -> ExitResult:
    """First time each of `n_paths` paths from `w0` leaves `domain` (docs/theory.md §4).

    Exits are checked after every step. With `bridge=True` a step that stays inside is
    also counted as an exit with the probability that the Brownian bridge between its
    two ends crossed the boundary (`exp(−2 d0 d1 / (v dt))` per wall), which removes
    most of the `O(sqrt(dt))` bias of discrete monitoring. The correction applies where
    it is defined: Gaussian noise, a continuous-time solver and a domain with boundary
    geometry (`interval`, `box`); elsewhere (discrete SGD, minibatch or α-stable noise,
    `from_function`) exits are the monitored ones. With `increments="two_point"` the
    correction is a boundary shift instead: a path exits when it comes within
    `TWO_POINT_SHIFT · sqrt(v dt)` (`v` its variance per unit time) of a wall, the mean
    overshoot of a walk with steps `±sqrt(v dt)`; mean exit times then match the
    continuous ones to `O(dt)`.

    Args:
      key: a `jax.random.key` or an int seed; path `i` uses `fold_in(key, i)`.
      sde: the SDE.
      w0: the starting state, strictly inside `domain`.
      domain: `sdn.domains.interval`, `box` or `from_function`.
      dt: step size `> 0`.
      max_steps: steps after which a path still inside stops, with status `INSIDE`.
      n_paths: number of paths.
      solver: as in `simulate`.
      bridge: apply the Brownian-bridge correction (Gaussian increments) or the
        boundary shift (two-point increments) where it is defined.
      t0: starting time.
      chunk_size: paths per chunk (default as in `simulate`).
      progress: show a progress bar over rounds of steps.
      increments: `"gaussian"` or `"two_point"` (the weak mode), as in `simulate`.

    Returns:
      `ExitResult(time, position, status, steps)`; `result.summary()` gives counts and
      the mean exit time over exited paths.

    >>> import jax, jax.numpy as jnp
    >>> from sdn import SDE, noise, domains
    >>> bm = SDE(lambda w: 0.0 * w, noise.isotropic(1.0), 1.0)
    >>> r = first_exit_time(0, bm, 0.0, domains.interval(-1.0, 1.0), dt=1e-3,
    ...                     max_steps=20_000, n_paths=64)
    >>> r.time.shape, bool(jnp.all(r.status == 0))
    ((64,), True)
    """
    key, w0, dt, step = _prepare(key, sde, w0, dt, n_paths, solver)
    increments = _check_increments(increments, sde, solver)
    if not hasattr(domain, "inside"):
        raise TypeError(f"domain must come from sdn.domains, got {type(domain).__name__}")
    if is_concrete(domain, w0):
        domain.check_state(w0)
        if not bool(domain.inside(w0)):
            raise ValueError(f"w0={np.asarray(w0)} is not inside the domain {domain}")
    return _first_exits(
        key,
        sde,
        w0,
        domain,
        dt,
        max_steps,
        n_paths,
        solver,
        step,
        bridge,
        t0,
        chunk_size,
        progress,
        increments,
        per_path=False,
    )


def first_exit_time_per_path(
    keys: Array,
    sde: SDE,
    w0: Array,
    domain: Any,
    *,
    dt: float,
    max_steps: int,
    solver: str = "euler_maruyama",
    bridge: bool = True,
    t0: float = 0.0,
    chunk_size: int | None = None,
    progress: bool | None = None,
    increments: str = "gaussian",
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
    ...     -jnp.ones(4), jnp.ones(4)), dt=1e-3, max_steps=10**5)
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
            if _is_array(leaf) and np.shape(leaf)[:1] != (n_paths,):
                raise ValueError(
                    f"every array in {name} needs a leading path axis of {n_paths}, got "
                    f"shape {np.shape(leaf)}"
                )
    w0 = jnp.asarray(w0)
    row0 = jax.tree.map(lambda a: a[0] if _is_array(a) else a, (sde, domain))
    _, w_row, dt, step = _prepare(jax.random.key(0), row0[0], w0[0], dt, n_paths, solver)
    increments = _check_increments(increments, row0[0], solver)
    if is_concrete(domain, w0) and not bool(
        jnp.all(jax.vmap(lambda d, w: d.inside(w))(domain, w0))
    ):
        raise ValueError("every row of w0 must lie inside its row of the domain")
    return _first_exits(
        keys,
        sde,
        w0.astype(w_row.dtype),
        domain,
        dt,
        max_steps,
        n_paths,
        solver,
        step,
        bridge,
        t0,
        chunk_size,
        progress,
        increments,
        per_path=True,
    )


def _first_exits(
    key,
    sde,
    w0,
    domain,
    dt,
    max_steps,
    n_paths,
    solver,
    step,
    bridge,
    t0,
    chunk_size,
    progress,
    increments,
    *,
    per_path,
):
    max_steps = check_int("max_steps", max_steps)
    use_bridge = bool(
        bridge
        and getattr(domain, "has_bridge", False)
        and sde.noise.is_gaussian
        and not (solver == "sgd" and isinstance(sde.noise, Minibatch))
    )
    t0 = jnp.asarray(t0, w0.dtype)
    # max_steps is traced, not static: sweeps over dt with a fixed horizon compile once.
    dynamic, static = _split(((sde, domain), t0, dt, jnp.asarray(max_steps, jnp.int32)))
    # Gaussian blocks keep the per-step test: it costs little next to their normals,
    # which a replay would draw again.
    quiet = _QUIET_BLOCKS and increments == "two_point"
    options = dict(
        step=step, bridge=use_bridge, per_path=per_path, increments=increments, quiet=quiet
    )
    n_blocks = math.ceil(max_steps / _block_steps(increments, exits=True))

    def initial(start, n):
        if per_path:
            rows = np.minimum(np.arange(start, start + n), n_paths - 1)
            w = w0[rows]
        else:
            w = jnp.broadcast_to(w0, (n, *w0.shape))
        return _ExitState(
            w=w,
            steps=jnp.zeros((n,), jnp.int32),
            status=jnp.full((n,), _RUNNING, jnp.int8),
        )

    if _under_jit() or not is_concrete(key, dynamic):
        # One batch of lanes, one per path, and no refill: every path runs to its end.
        state = initial(0, n_paths)
        lanes = _Lanes(jnp.arange(n_paths, dtype=jnp.int32), state, jnp.zeros_like(state.steps))
        # Every block runs exactly here: the replays' loop would only add to the program.
        options["quiet"] = False
        _, state, _, _ = _exit_lanes(
            dynamic, static, key, 0, n_paths, state.w, lanes, state, n_paths, n_blocks, **options
        )
    else:
        state = _exit_chunks(
            dynamic, static, key, initial, n_paths, n_blocks, chunk_size, progress, options
        )
    time = t0 + state.steps.astype(w0.dtype) * dt
    return ExitResult(time, state.w, state.status, state.steps)


class _Lanes(NamedTuple):
    """The batch of a first-exit run: per lane, the path it holds (an offset in the chunk,
    or the chunk's padded size when it holds none), that path's state and next block."""

    path: Array
    state: _ExitState
    block: Array


def _exit_lanes(
    dynamic, static, key, start, size, pool_w, lanes, results, next_path, n_blocks,
    *, step, bridge, per_path, increments, quiet=True,
):  # fmt: skip
    """Advance every lane by up to `n_blocks` blocks; a lane whose path finishes writes it
    to `results` and takes the chunk's next unstarted path (`next_path`), if any.
    Returns the lanes, the results, the next unstarted path and the number of busy lanes.

    Each path starts at block 0 with its own key, so its numbers do not depend on the
    lane it runs in or on when it starts.
    """
    (sde, domain), t0, dt, max_steps = _merge(dynamic, static)
    empty = pool_w.shape[0]

    def one(sde, domain, path_key, state, b):
        return _exit_block(
            sde, step, domain, bridge, max_steps, t0, dt, path_key, state, b, increments
        )

    def quiet_one(sde, domain, path_key, state, b):
        return _quiet_block(sde, step, domain, bridge, t0, dt, path_key, state, b)

    axes = (0, 0, 0, 0, 0) if per_path else (None, None, 0, 0, 0)
    advance, skim = jax.vmap(one, in_axes=axes), jax.vmap(quiet_one, in_axes=axes)
    block_steps = _block_steps(increments, exits=True)

    def lane_inputs(path):
        rows = start + jnp.minimum(path, empty - 1)
        if key.ndim == 0:
            return sde, domain, _path_keys(key, rows)
        # one key per path: given (per_path), or derived once by the driver
        rows = jnp.minimum(rows, key.shape[0] - 1)
        if per_path:
            return jax.tree.map(lambda a: a[rows], (sde, domain)) + (key[rows],)
        return sde, domain, key[rows]

    def lanes_block(inputs, state, block):
        """One block for every lane: the quiet blocks without bookkeeping, then the
        others (a few lanes per block: exits, divergence, `max_steps`) replayed exactly,
        gathered into batches of `1/_REPLAY_FRACTION` of the lanes."""
        if not quiet:
            return advance(*inputs, state, block)
        w, ok = skim(*inputs, state, block)
        running = state.status == _RUNNING
        exact = running & ~(ok & (state.steps + block_steps < max_steps))
        move = running & ~exact
        out = _ExitState(
            w=jnp.where(move.reshape(move.shape + (1,) * (w.ndim - 1)), w, state.w),
            steps=jnp.where(move, state.steps + block_steps, state.steps),
            status=state.status,
        )
        n = exact.shape[0]
        size = max(1, n // _REPLAY_FRACTION)

        def replay(carry):
            out, exact = carry
            (rows,) = jnp.nonzero(exact, size=size, fill_value=n)
            take = jnp.minimum(rows, n - 1)
            if per_path:
                sub = jax.tree.map(lambda a: a[take], inputs)
            else:
                sub = inputs[:2] + (inputs[2][take],)
            new = advance(*sub, jax.tree.map(lambda a: a[take], state), block[take])
            out = jax.tree.map(lambda o, x: o.at[rows].set(x, mode="drop"), out, new)
            return out, exact.at[rows].set(False, mode="drop")

        return jax.lax.while_loop(lambda c: jnp.any(c[1]), replay, (out, exact))[0]

    def body(carry):
        lanes, results, next_path, i = carry
        state = lanes_block(lane_inputs(lanes.path), lanes.state, lanes.block)
        done = (lanes.path < empty) & (state.status != _RUNNING)
        slot = jnp.where(done, lanes.path, empty)  # out of range: dropped
        results = jax.tree.map(lambda r, x: r.at[slot].set(x, mode="drop"), results, state)
        # Finished lanes take the next unstarted paths, in lane order.
        new = next_path + jnp.cumsum(done) - 1
        take = done & (new < size)
        fresh = pool_w[jnp.minimum(new, empty - 1)]
        take_w = take.reshape(take.shape + (1,) * (state.w.ndim - 1))
        state = _ExitState(
            w=jnp.where(take_w, fresh, state.w),
            steps=jnp.where(take, 0, state.steps),
            status=jnp.where(take, _RUNNING, state.status).astype(state.status.dtype),
        )
        lanes = _Lanes(
            path=jnp.where(take, new, jnp.where(done, empty, lanes.path)),
            state=state,
            block=jnp.where(take, 0, lanes.block + 1),
        )
        next_path = jnp.minimum(next_path + jnp.sum(done), size)
        return lanes, results, next_path, i + 1

    filling = next_path < size

    def cond(carry):
        lanes, _, next_path, i = carry
        # A call that starts with paths not yet started returns once all have started,
        # so that the driver can begin to compact the lanes.
        return (i < n_blocks) & jnp.any(lanes.path < empty) & ~(filling & (next_path >= size))

    lanes, results, next_path, _ = jax.lax.while_loop(
        cond, body, (lanes, results, next_path, jnp.int32(0))
    )
    return lanes, results, next_path, jnp.sum(lanes.path < empty)


_exit_lanes_jit = jax.jit(
    _exit_lanes,
    static_argnames=("static", "step", "bridge", "per_path", "increments", "quiet"),
    donate_argnums=(6, 7),
)


def _lane_count(n: int, n_devices: int) -> int:
    """Lanes for a chunk of `n` paths: all of them up to `_REFILL_ABOVE` per device;
    beyond, about `1/_LANE_FRACTION` of them, so that lanes are refilled as paths
    finish and only the last paths' slow ones form the tail that compaction shrinks."""
    if n <= n_devices * _REFILL_ABOVE:
        return n
    part = math.ceil(n / _LANE_FRACTION)
    lanes = _bucket(part, n_devices, base=_BUCKET_BASE, smallest=_smallest_bucket())
    return min(n, max(n_devices * _REFILL_ABOVE, lanes))


def _exit_chunks(dynamic, static, key, initial, n_paths, n_blocks, chunk_size, progress, options):
    """The host-side driver: per chunk, a batch of lanes that take new paths as theirs
    finish; once every path has started, the lanes still busy are compacted into
    smaller batches between rounds."""
    mesh = _mesh()
    n_dev = mesh.size
    spread = partial(jax.device_put, device=NamedSharding(mesh, PartitionSpec("paths")))
    whole = partial(jax.device_put, device=NamedSharding(mesh, PartitionSpec()))
    blocks_per_round = max(
        1, round(_STEPS_PER_ROUND / _block_steps(options["increments"], exits=True))
    )
    parts = []
    show = progress if progress is not None else False
    if not options["per_path"]:
        # Each path's key once, not once per block of each round.
        key = jax.jit(_path_keys)(key, jnp.arange(n_paths, dtype=jnp.int32))
    with _progress(n_paths, "first exits", show) as bar:
        for start, size, padded in _chunks(n_paths, chunk_size, n_dev):
            pool_w = np.asarray(jax.device_get(initial(start, padded).w))
            n_lanes = _lane_count(padded, n_dev)
            first = np.arange(n_lanes)
            lanes = _Lanes(
                path=np.where(first < size, first, padded).astype(np.int32),
                state=_ExitState(
                    w=pool_w[first],
                    steps=np.zeros(n_lanes, np.int32),
                    status=np.where(first < size, _RUNNING, EXITED).astype(np.int8),
                ),
                block=np.zeros(n_lanes, np.int32),
            )
            results = whole(
                _ExitState(
                    w=np.zeros_like(pool_w),
                    steps=np.zeros(padded, np.int32),
                    status=np.full(padded, EXITED, np.int8),
                )
            )
            pool_w, next_path, reported = whole(pool_w), min(n_lanes, size), 0
            round_blocks = blocks_per_round
            lanes = jax.tree.map(spread, lanes)
            while True:
                # The lanes stay on the device; the host reads them only to compact them.
                lanes, results, next_path, n_busy = _exit_lanes_jit(
                    dynamic,
                    static,
                    key,
                    start,
                    size,
                    pool_w,
                    lanes,
                    results,
                    next_path,
                    round_blocks if next_path >= size else _TAIL_ROUNDS * blocks_per_round,
                    **options,
                )
                next_path, n_busy = int(next_path), int(n_busy)
                bar.update(next_path - n_busy - reported)
                reported = next_path - n_busy
                if n_busy == 0:
                    break
                if next_path < size:
                    continue
                if lanes.path.size <= n_dev * _smallest_bucket():
                    # The last, slowest paths: the batch cannot shrink, so fewer, longer
                    # rounds save the host's round trips.
                    round_blocks = min(2 * round_blocks, _TAIL_ROUNDS * blocks_per_round)
                    continue
                bucket = _bucket(n_busy, n_dev, base=_BUCKET_BASE, smallest=_smallest_bucket())
                if _BUCKET_BASE * bucket > lanes.path.size:
                    continue  # not worth a new compilation: keep the batch
                lanes = jax.tree.map(np.asarray, lanes)
                busy = np.flatnonzero(lanes.path < padded)
                # Padding lanes copy a busy one but hold no path, so they change nothing.
                sel = np.concatenate([busy, np.full(bucket - busy.size, busy[0])])
                lanes = jax.tree.map(lambda x, s=sel: x[s], lanes)
                lanes.path[busy.size :] = padded
                lanes.state.status[busy.size :] = EXITED
                lanes = jax.tree.map(spread, lanes)
            done = jax.device_get(results)
            parts.append(tuple(x[:size] for x in done))
    w, steps, status = (np.concatenate(x) for x in zip(*parts))
    return _ExitState(jnp.asarray(w), jnp.asarray(steps), jnp.asarray(status))
