"""How many paths run where: chunks, the device mesh, the static/dynamic split of inputs.

Path `i` of an ensemble draws from `fold_in(key, i)`, so none of this changes a number:
chunks bound memory, the mesh spreads a chunk's path axis over every device, and batch
sizes from a short ladder (`bucket`) bound the number of compilations.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sdn._checks import check_int
from sdn.engine.config import EngineConfig

Array = jax.Array


class Static:
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
        return isinstance(other, Static) and (
            self.value is other.value or _safe_eq(self.value, other.value)
        )


def _safe_eq(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic | float | int | complex)


def split(tree) -> tuple[list, tuple]:
    """Array leaves (traced by `jit`) and everything else (static), with the structure."""
    leaves, treedef = jax.tree.flatten(tree)
    dynamic = [jnp.asarray(x) if is_array(x) else None for x in leaves]
    static = tuple(None if is_array(x) else Static(x) for x in leaves)
    return dynamic, (treedef, static)


def merge(dynamic: list, static: tuple):
    """The tree that `split` took apart."""
    treedef, statics = static
    leaves = [d if s is None else s.value for d, s in zip(dynamic, statics)]
    return jax.tree.unflatten(treedef, leaves)


def under_jit() -> bool:
    """Whether the caller is being traced (by `jit`, `vmap`, ...)."""
    return isinstance(jnp.zeros(()) + 0, jax.core.Tracer)


def mesh() -> Mesh:
    """All devices along one axis, `"paths"`."""
    return Mesh(np.array(jax.devices()), ("paths",))


def bucket(n: int, n_devices: int, base: int = 2, smallest: int = 1) -> int:
    """Smallest size ≥ n of the form n_devices · smallest · base^k (bounds compilations)."""
    size = n_devices * smallest
    while size < n:
        size *= base
    return size


def path_keys(key: Array, index: Array) -> Array:
    """The keys `fold_in(key, i)` of the paths `index`."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(index)


def chunks(n_paths: int, chunk_size: int | None, n_devices: int, config: EngineConfig):
    """(start, size, padded size) of equal chunks of at most `chunk_size` paths
    (`config.chunk_size` if None).

    Chunks are equal (one compilation) and padded to a multiple of the device count.
    """
    limit = config.chunk_size if chunk_size is None else check_int("chunk_size", chunk_size)
    n_chunks = math.ceil(n_paths / limit)
    per = math.ceil(math.ceil(n_paths / n_chunks) / n_devices) * n_devices
    for start in range(0, n_paths, per):
        yield start, min(per, n_paths - start), per


def progress_bar(total: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def run_chunks(run, n_paths, chunk_size, progress, desc, config: EngineConfig):
    """Run `run(index)` chunk by chunk, with the path axis sharded over all devices."""
    devices = mesh()
    sharding = NamedSharding(devices, PartitionSpec("paths"))
    parts = list(chunks(n_paths, chunk_size, devices.size, config))
    outs = []
    show = progress if progress is not None else len(parts) > 1
    with progress_bar(n_paths, desc, show) as bar:
        for start, size, padded in parts:
            index = jax.device_put(np.arange(start, start + padded, dtype=np.int32), sharding)
            out = run(index)
            outs.append(jax.tree.map(lambda x, s=size: np.asarray(x[:s]), out))
            bar.update(size)
    if len(outs) == 1:
        return jax.tree.map(jnp.asarray, outs[0])
    return jax.tree.map(lambda *xs: jnp.asarray(np.concatenate(xs)), *outs)
