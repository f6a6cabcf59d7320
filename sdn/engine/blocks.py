"""One block of steps of one path, its increments drawn through `sdn.noise.increments`.

Path `i` of an ensemble has the key `fold_in(key, i)`, and its block `b` the key
`fold_in(path_key, b)`; the noise model (`block`) and `sdn.noise.increments` turn that key
into numbers, the only place the engine's randomness comes from. Drawing a whole block
of increments at once keeps the random number generator, the real bottleneck, at its
full speed, and a path's numbers do not depend on how paths are grouped. Two laws of
the increments:

- `"gaussian"`: the noise model's own increments, `config.block_steps` of them at once.
- `"two_point"` (the weak mode): `±sqrt(dt)` per standard increment, read from the bits
  of random 32-bit words (step `32 m + b` of a block reads bit `b` of word `m`), so a
  step costs a shift and a select instead of a normal draw.

The first-exit blocks are here too: `exit_block` (the exact per-step exit test) and
`quiet_block` (a two-point block with no per-step bookkeeping, which tells whether the
exact test would have changed anything).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from sdn.engine.config import EngineConfig
from sdn.engine.results import DIVERGED, EXITED, INSIDE, RUNNING
from sdn.noise import increments as draws

Array = jax.Array

TWO_POINT_SHIFT = 0.5
"""First exits with two-point increments: the walls move inward by this times
`sqrt(v dt)` (`v` the variance per unit time at the current state), the mean overshoot of
a walk whose steps are `±sqrt(v dt)` plus a small drift: it climbs in steps of one
lattice spacing and lands uniformly within one spacing past the wall (docs/theory.md §4).
Gaussian steps overshoot by `0.5826 sqrt(v dt)` on average (Siegmund's constant
`−ζ(1/2)/sqrt(2π)`); their correction is the Brownian bridge instead."""

_EXITED, _INSIDE, _DIVERGED = int(EXITED), int(INSIDE), int(DIVERGED)


# --------------------------------------------------------------------------- a block


def scan_block(body, carry, sde, path_key, w, dt, block, increments, config, *, extra=None,
               exits=False):  # fmt: skip
    """Run `body(carry, (i, dw, *extra))` over the steps `i` of one block of one path.

    Gaussian increments come from the noise model, a block at once. Two-point increments
    are `±sqrt(dt)` from the bits of random words per standard increment of the noise
    model (per coordinate, or per factor of `noise.empirical`; `config.two_point_words`,
    or `two_point_exit_words` for first `exits`). `extra` (Gaussian mode only): more
    per-step inputs.
    """
    k = jax.random.fold_in(path_key, block)
    if increments == "gaussian":
        n = config.block_steps
        dws = sde.noise.block(k, w, dt, n)
        xs = (jnp.arange(n), dws) + (() if extra is None else (extra,))
        return jax.lax.scan(body, carry, xs, unroll=n if config.unroll else 1)[0]
    n_words = config.two_point_exit_words if exits else config.two_point_words
    # one sign per standard increment of the model: per coordinate of `w` for the
    # diagonal models, per factor for `noise.empirical`
    shape = jax.eval_shape(sde.noise.standard, k, w, dt).shape
    words = draws.two_point_words(k, n_words, shape)
    root = jnp.sqrt(dt).astype(jnp.result_type(w))
    full = config.unroll

    def one_word(carry, inputs):
        m, word = inputs

        def one_bit(carry, b):
            dw = draws.word_signs(word, b, root)
            return body(carry, (32 * m + b.astype(jnp.int32), dw))

        bits = jnp.arange(32, dtype=jnp.uint32)
        return jax.lax.scan(one_bit, carry, bits, unroll=32 if full else config.bit_unroll)[0], None

    xs = (jnp.arange(n_words), words)
    unroll = min(n_words, config.word_unroll) if full else 1
    return jax.lax.scan(one_word, carry, xs, unroll=unroll)[0]


# --------------------------------------------------------------------------- first exits


class ExitState(NamedTuple):
    """Per path of a first-exit run: its state, steps taken and status."""

    w: Array
    steps: Array
    status: Array


class ExitModel(NamedTuple):
    """The traced inputs of a first-exit run: the SDE, the domain, `t0`, `dt`, `n_steps`."""

    sde: object
    domain: object
    t0: Array
    dt: Array
    n_steps: Array


def exit_block(model: ExitModel, solver, path_key, state: ExitState, block, *, bridge: bool,
               shift: bool, increments: str, config: EngineConfig) -> ExitState:  # fmt: skip
    """Advance one path by one block of steps, stopping at its exit.

    `bridge` (Gaussian increments): a step that stays inside also exits with the Brownian
    bridge's crossing probability. `shift` (two-point increments): the walls move inward
    by `TWO_POINT_SHIFT · sqrt(v dt)`, the walk's mean overshoot.
    """
    sde, domain, t0, dt, n_steps = model
    w0 = state.w
    gaussian = increments == "gaussian"
    if bridge:
        block_key = jax.random.fold_in(path_key, block)
        uniforms = draws.bridge_uniforms(block_key, config.block_steps, w0.dtype)
    elif gaussian:
        uniforms = jnp.zeros((config.block_steps,), w0.dtype)
    else:
        uniforms = None

    def one_step(state, inputs):
        running = state.status == RUNNING
        w_next = solver.step(sde, state.w, t0 + state.steps * dt, dt, inputs[1])
        finite = jnp.all(jnp.isfinite(w_next))
        left = ~domain.inside(w_next)
        if bridge:
            p = domain.crossing_probability(state.w, w_next, sde.variance(state.w) * dt)
            left = left | (inputs[2] < p)
        elif shift:
            margin_sq = TWO_POINT_SHIFT**2 * sde.variance(state.w) * dt
            left = left | near_wall(domain, w_next, margin_sq)
        steps = state.steps + 1
        new_status = jnp.where(
            ~finite,
            _DIVERGED,
            jnp.where(left, _EXITED, jnp.where(steps >= n_steps, _INSIDE, RUNNING)),
        ).astype(state.status.dtype)
        return ExitState(
            w=jnp.where(running & finite, w_next, state.w),
            steps=jnp.where(running, steps, state.steps),
            status=jnp.where(running, new_status, state.status),
        ), None

    return scan_block(
        one_step, state, sde, path_key, w0, dt, block, increments, config, extra=uniforms,
        exits=True,
    )  # fmt: skip


def near_wall(domain, w: Array, margin_sq: Array) -> Array:
    """True if a coordinate of `w` lies within `sqrt(margin_sq)` of a wall of the box
    `domain` (squares: no square root per step)."""
    gap = jnp.minimum(w - domain.lo, domain.hi - w)
    return jnp.any((gap <= 0) | (jnp.square(gap) <= margin_sq))


def quiet_block(model: ExitModel, solver, path_key, state: ExitState, block, *, shift: bool,
                config: EngineConfig) -> tuple[Array, Array]:  # fmt: skip
    """Advance one path by a whole block of two-point steps with no per-step bookkeeping.

    Returns the block's end state and whether the block is quiet: the path stayed
    inside with room to spare at every step, so `exit_block` would have changed
    nothing but the state and the step count. For a box only the running extremes of
    each coordinate (and of its variance, for the `shift` of the walls) are kept per
    step: the path exits only if they come near a wall. NaN and infinite states fail
    these comparisons, so divergence is never quiet. A block that is not quiet runs
    again exactly (the lanes replay it from the same random bits).
    """
    sde, domain, t0, dt, _ = model
    w0 = state.w
    box = getattr(domain, "is_box", False)
    wide = box and shift

    def one_step(carry, inputs):
        w, low, high, v = carry
        i, dw = inputs[0], inputs[1]
        w_next = solver.step(sde, w, t0 + (state.steps + i) * dt, dt, dw)
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
    w, low, high, v = scan_block(
        one_step, start, sde, path_key, w0, dt, block, "two_point", config, exits=True
    )
    if not box:
        return w, low
    gap = jnp.minimum(low - domain.lo, domain.hi - high)  # NaN for a diverged path
    room = gap > 0
    if shift:  # as `near_wall`'s margin, from the block's largest variance
        room = room & (jnp.square(gap) > TWO_POINT_SHIFT**2 * v * dt)
    return w, jnp.all(room)
