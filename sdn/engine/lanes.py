"""The lane scheduler of first exits: many paths, each to its own exit time.

A first-exit run keeps a batch of lanes busy: a lane whose path exits takes the next
path not yet started (each path starts at its own block 0, so its numbers do not change).
Once every path has started, the lanes still busy are compacted between rounds into
smaller batches (sizes from a short ladder of powers, to bound recompilation), so a few
slow, heavy-tailed exits do not keep the ensemble busy.

Most blocks of a first-exit path stay far from every wall. In the two-point mode, where
the per-step exit test would cost as much as the step, each block first runs without it
(`blocks.quiet_block`); the few blocks that came near a wall, diverged or reach `n_steps`
are replayed from the same random bits with the exact test. The numbers are those of the
exact test alone.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from sdn.engine import sharding
from sdn.engine.blocks import ExitModel, ExitState, exit_block, quiet_block
from sdn.engine.config import EngineConfig
from sdn.engine.results import EXITED, RUNNING

Array = jax.Array


class ExitOptions(NamedTuple):
    """The static options of a first-exit run (hashable: part of the compiled program).

    `bridge`: Brownian-bridge exits (Gaussian steps); `shift`: walls moved inward
    (two-point steps); `per_path`: every path has its own parameters (a leading path axis
    on every array of the SDE and domain); `quiet`: two-point blocks far from every wall
    skip the per-step test (`config.quiet_blocks`).
    """

    solver: Any
    bridge: bool
    shift: bool
    per_path: bool
    increments: str
    quiet: bool
    config: EngineConfig


class Lanes(NamedTuple):
    """The batch of a first-exit run: per lane, the path it holds (an offset in the chunk,
    or the chunk's padded size when it holds none), that path's state and next block."""

    path: Array
    state: ExitState
    block: Array


def _rows(x, rows):
    return jax.tree.map(lambda a: a[rows], x)


def _lane_inputs(model: ExitModel, key, start, empty, path, per_path):
    """The model (per lane, if `per_path`) and the key of the path each lane holds."""
    rows = start + jnp.minimum(path, empty - 1)
    if key.ndim == 0:
        return model, sharding.path_keys(key, rows)
    # one key per path: given (per_path), or derived once by the driver
    rows = jnp.minimum(rows, key.shape[0] - 1)
    if per_path:
        return model._replace(sde=_rows(model.sde, rows), domain=_rows(model.domain, rows)), key[
            rows
        ]
    return model, key[rows]


def _vmapped(fn, per_path):
    """`fn(model, path_key, state, block)` over lanes (the model per lane if `per_path`)."""
    shared = ExitModel(None, None, None, None, None)
    model_axes = ExitModel(0, 0, None, None, None) if per_path else shared
    return jax.vmap(fn, in_axes=(model_axes, 0, 0, 0))


def _advance(model, keys, state: ExitState, block, opts: ExitOptions) -> ExitState:
    """One block for every lane: the quiet blocks without bookkeeping, then the others
    (a few lanes per block: exits, divergence, `n_steps`) replayed exactly, gathered into
    batches of `1/config.replay_fraction` of the lanes."""
    exact_block = partial(
        exit_block, solver=opts.solver, bridge=opts.bridge, shift=opts.shift,
        increments=opts.increments, config=opts.config,
    )  # fmt: skip
    advance = _vmapped(lambda m, k, s, b: exact_block(m, path_key=k, state=s, block=b),
                       opts.per_path)  # fmt: skip
    if not opts.quiet:
        return advance(model, keys, state, block)
    skim = _vmapped(
        lambda m, k, s, b: quiet_block(
            m, opts.solver, k, s, b, shift=opts.shift, config=opts.config
        ),
        opts.per_path,
    )
    w, ok = skim(model, keys, state, block)
    running = state.status == RUNNING
    block_steps = opts.config.block_length(opts.increments, exits=True)
    exact = running & ~(ok & (state.steps + block_steps < model.n_steps))
    move = running & ~exact
    out = ExitState(
        w=jnp.where(move.reshape(move.shape + (1,) * (w.ndim - 1)), w, state.w),
        steps=jnp.where(move, state.steps + block_steps, state.steps),
        status=state.status,
    )
    n = exact.shape[0]
    size = max(1, n // opts.config.replay_fraction)

    def replay(carry):
        out, exact = carry
        (rows,) = jnp.nonzero(exact, size=size, fill_value=n)
        take = jnp.minimum(rows, n - 1)
        sub = model
        if opts.per_path:
            sub = model._replace(sde=_rows(model.sde, take), domain=_rows(model.domain, take))
        new = advance(sub, keys[take], _rows(state, take), block[take])
        out = jax.tree.map(lambda o, x: o.at[rows].set(x, mode="drop"), out, new)
        return out, exact.at[rows].set(False, mode="drop")

    return jax.lax.while_loop(lambda c: jnp.any(c[1]), replay, (out, exact))[0]


def _refill(lanes: Lanes, state: ExitState, results, next_path, size, pool_w):
    """Write the lanes' finished paths to `results`; give those lanes the next unstarted
    paths, in lane order. Returns the lanes, the results and the next unstarted path."""
    empty = pool_w.shape[0]
    done = (lanes.path < empty) & (state.status != RUNNING)
    slot = jnp.where(done, lanes.path, empty)  # out of range: dropped
    results = jax.tree.map(lambda r, x: r.at[slot].set(x, mode="drop"), results, state)
    new = next_path + jnp.cumsum(done) - 1
    take = done & (new < size)
    fresh = pool_w[jnp.minimum(new, empty - 1)]
    take_w = take.reshape(take.shape + (1,) * (state.w.ndim - 1))
    state = ExitState(
        w=jnp.where(take_w, fresh, state.w),
        steps=jnp.where(take, 0, state.steps),
        status=jnp.where(take, RUNNING, state.status).astype(state.status.dtype),
    )
    lanes = Lanes(
        path=jnp.where(take, new, jnp.where(done, empty, lanes.path)),
        state=state,
        block=jnp.where(take, 0, lanes.block + 1),
    )
    return lanes, results, jnp.minimum(next_path + jnp.sum(done), size)


def exit_lanes(key, dynamic, static, start, size, pool_w, lanes, results, next_path, n_blocks,
               opts: ExitOptions):  # fmt: skip
    """Advance every lane by up to `n_blocks` blocks; a lane whose path finishes writes it
    to `results` and takes the chunk's next unstarted path (`next_path`), if any.
    Returns the lanes, the results, the next unstarted path and the number of busy lanes.

    Each path starts at block 0 with its own key, so its numbers do not depend on the
    lane it runs in or on when it starts.
    """
    model = ExitModel(*sharding.merge(dynamic, static))
    empty = pool_w.shape[0]

    def body(carry):
        lanes, results, next_path, i = carry
        lane_model, keys = _lane_inputs(model, key, start, empty, lanes.path, opts.per_path)
        state = _advance(lane_model, keys, lanes.state, lanes.block, opts)
        lanes, results, next_path = _refill(lanes, state, results, next_path, size, pool_w)
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


_exit_lanes_jit = jax.jit(exit_lanes, static_argnames=("static", "opts"), donate_argnums=(6, 7))


def lane_count(n: int, n_devices: int, config: EngineConfig) -> int:
    """Lanes for a chunk of `n` paths: all of them up to `config.refill_above` per device;
    beyond, about `1/config.lane_fraction` of them, so that lanes are refilled as paths
    finish and only the last paths' slow ones form the tail that compaction shrinks."""
    if n <= n_devices * config.refill_above:
        return n
    part = math.ceil(n / config.lane_fraction)
    lanes = sharding.bucket(
        part, n_devices, base=config.bucket_base, smallest=config.smallest_bucket
    )
    return min(n, max(n_devices * config.refill_above, lanes))


def _first_lanes(pool_w, size, padded, n_lanes) -> Lanes:
    first = np.arange(n_lanes)
    return Lanes(
        path=np.where(first < size, first, padded).astype(np.int32),
        state=ExitState(
            w=pool_w[first],
            steps=np.zeros(n_lanes, np.int32),
            status=np.where(first < size, RUNNING, EXITED).astype(np.int8),
        ),
        block=np.zeros(n_lanes, np.int32),
    )


def _compacted(lanes: Lanes, n_busy: int, padded: int, n_dev: int, config: EngineConfig):
    """The busy lanes in a smaller batch, or None when a new size is not worth compiling."""
    bucket = sharding.bucket(
        n_busy, n_dev, base=config.bucket_base, smallest=config.smallest_bucket
    )
    if config.bucket_base * bucket > lanes.path.size:
        return None
    lanes = jax.tree.map(np.asarray, lanes)
    busy = np.flatnonzero(lanes.path < padded)
    # Padding lanes copy a busy one but hold no path, so they change nothing.
    sel = np.concatenate([busy, np.full(bucket - busy.size, busy[0])])
    lanes = jax.tree.map(lambda x, s=sel: x[s], lanes)
    lanes.path[busy.size :] = padded
    lanes.state.status[busy.size :] = EXITED
    return lanes


def exit_chunks(key, dynamic, static, initial, n_paths, n_blocks, chunk_size, progress,
                opts: ExitOptions) -> ExitState:  # fmt: skip
    """The host-side driver: per chunk, a batch of lanes that take new paths as theirs
    finish; once every path has started, the lanes still busy are compacted into
    smaller batches between rounds."""
    config = opts.config
    mesh = sharding.mesh()
    n_dev = mesh.size
    spread = partial(jax.device_put, device=NamedSharding(mesh, PartitionSpec("paths")))
    whole = partial(jax.device_put, device=NamedSharding(mesh, PartitionSpec()))
    block_steps = config.block_length(opts.increments, exits=True)
    blocks_per_round = max(1, round(config.steps_per_round / block_steps))
    longest = config.tail_rounds * blocks_per_round
    parts = []
    if not opts.per_path:
        # Each path's key once, not once per block of each round.
        key = jax.jit(sharding.path_keys)(key, jnp.arange(n_paths, dtype=jnp.int32))
    show = progress if progress is not None else False
    with sharding.progress_bar(n_paths, "first exits", show) as bar:
        for start, size, padded in sharding.chunks(n_paths, chunk_size, n_dev, config):
            pool_w = np.asarray(jax.device_get(initial(start, padded).w))
            n_lanes = lane_count(padded, n_dev, config)
            lanes = jax.tree.map(spread, _first_lanes(pool_w, size, padded, n_lanes))
            results = whole(
                ExitState(
                    w=np.zeros_like(pool_w),
                    steps=np.zeros(padded, np.int32),
                    status=np.full(padded, EXITED, np.int8),
                )
            )
            pool_w, next_path, reported = whole(pool_w), min(n_lanes, size), 0
            round_blocks = blocks_per_round
            while True:
                # The lanes stay on the device; the host reads them only to compact them.
                lanes, results, next_path, n_busy = _exit_lanes_jit(
                    key, dynamic, static, start, size, pool_w, lanes, results, next_path,
                    round_blocks if next_path >= size else longest, opts,
                )  # fmt: skip
                next_path, n_busy = int(next_path), int(n_busy)
                bar.update(next_path - n_busy - reported)
                reported = next_path - n_busy
                if n_busy == 0:
                    break
                if next_path < size:
                    continue
                if lanes.path.size <= n_dev * config.smallest_bucket:
                    # The last, slowest paths: the batch cannot shrink, so fewer, longer
                    # rounds save the host's round trips.
                    round_blocks = min(2 * round_blocks, longest)
                    continue
                smaller = _compacted(lanes, n_busy, padded, n_dev, config)
                if smaller is not None:
                    lanes = jax.tree.map(spread, smaller)
            done = jax.device_get(results)
            parts.append(tuple(x[:size] for x in done))
    w, steps, status = (np.concatenate(x) for x in zip(*parts))
    return ExitState(jnp.asarray(w), jnp.asarray(steps), jnp.asarray(status))
