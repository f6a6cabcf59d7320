"""One chunk of points as one compiled program, its point axis sharded over all devices.

`compute(key, f, ...)` evaluates `f` at a chunk of points: numeric parameters are stacked
into arrays, the chunk is padded to a multiple of the device count, and one jitted
`vmap` of `f` runs over a `Mesh` of every device of every process; the results are
gathered back to each process. A built-in `SweepFunction` with a `batched` form runs
that instead (it spreads its own paths over the devices). Point `i` always gets the
key `fold_in(key, i)`, so a point's numbers do not depend on its chunk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sdn.sweep.designs import Design

Array = jax.Array

__all__ = ["Devices", "statistic_names"]


class Devices:
    """Every device of every process, as a one-axis mesh over points."""

    def __init__(self):
        self.mesh = Mesh(np.array(jax.devices()), ("points",))
        self.sharding = NamedSharding(self.mesh, PartitionSpec("points"))
        self.count = self.mesh.size

    def chunk_sizes(self, n: int, limit: int) -> tuple[int, int]:
        """(points per chunk, padded size) for `n` points in chunks of at most `limit`:
        equal chunks, padded to a multiple of the device count."""
        n_chunks = math.ceil(n / limit)
        per = math.ceil(n / n_chunks)
        return per, math.ceil(per / self.count) * self.count

    def compute(
        self,
        key: Array,
        f,
        design: Design,
        traced: list[str],
        static: tuple,
        rows: np.ndarray,
        padded: int,
    ) -> dict[str, np.ndarray]:
        """`f` at the points `rows` (all with the static values `static`), by statistic.

        The chunk is padded to `padded` points (a multiple of the device count), the same
        for every chunk of a group so that the group compiles once."""
        if _batched(f):
            params = traced_params(design, traced, rows)
            keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(rows.astype(np.int32))
            outs = f.run_batched(keys, {**params, **dict(static)})
            return {k: np.asarray(v) for k, v in outs.items()}
        idx = np.concatenate([rows, np.full(padded - rows.size, rows[-1])])
        params = traced_params(design, traced, idx)
        outs = _program_jit(
            f,
            static,
            key,
            self._put(idx.astype(np.int32)),
            {k: self._put(v) for k, v in params.items()},
        )
        return {k: _gather(v)[: rows.size] for k, v in outs.items()}

    def _put(self, arr: np.ndarray) -> Array:
        """A global array from host data every process holds (works on several hosts)."""
        return jax.make_array_from_callback(arr.shape, self.sharding, lambda idx: arr[idx])


def statistic_names(key: Array, f, design: Design, traced: list[str], static: tuple, row: int):
    """The statistics `f` returns at one point, in its order; traces `f`, compiles nothing.

    Raises:
      TypeError: `f` does not return a dict.
      ValueError: a statistic is not one scalar per point.
    """
    names: list[str] = []
    shapes = jax.eval_shape(
        partial(_program, _Recording(f, names), static),
        key,
        np.zeros(1, np.int32),
        traced_params(design, traced, np.asarray([row])),
    )
    for name, s in shapes.items():
        if s.shape != (1,):
            raise ValueError(
                f"statistic {name!r} must be a scalar per point, got shape {s.shape[1:]}"
            )
    return names


def traced_params(design: Design, names: list[str], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The numeric parameters at `rows`, in JAX's default float and int types."""
    dtype_f = np.dtype(jnp.result_type(float))
    dtype_i = np.dtype(jnp.result_type(int))
    out = {}
    for name in names:
        v = design.points[name][rows]
        out[name] = v.astype(dtype_i if v.dtype.kind == "i" else dtype_f)
    return out


def _batched(f) -> bool:
    return getattr(getattr(f, "spec", None), "batched", None) is not None and (
        jax.process_count() == 1
    )


def _program(f, static_items: tuple, key, index, params):
    static = dict(static_items)

    def one(i, p):
        out = f(jax.random.fold_in(key, i), {**p, **static})
        if not isinstance(out, Mapping):
            raise TypeError(f"the sweep function must return a dict, got {type(out).__name__}")
        return dict(out)

    return jax.vmap(one)(index, params)


_program_jit = jax.jit(_program, static_argnums=(0, 1))


class _Recording:
    """Calls `f` and records the order of the statistics it returns (jit sorts dict keys)."""

    def __init__(self, f, names: list[str]):
        self.f, self.names = f, names

    def __call__(self, key, params: Any):
        out = self.f(key, params)
        if isinstance(out, Mapping):
            self.names[:] = list(out)
        return out


def _gather(x: Array) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
