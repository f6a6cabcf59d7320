"""The runner: a sweep function at every point of a design, chunk by chunk, resumable.

`run` checks everything it can before it touches the results folder (the function is
traced once per group of static values), identifies the sweep, opens and locks the
folder (`storage`), skips the points already on disk, and runs the rest in chunks
(`program`), saving each chunk as it finishes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sdn.sweep.designs import Design
from sdn.sweep.functions import SweepFn
from sdn.sweep.identity import identify
from sdn.sweep.program import Devices, statistic_names
from sdn.sweep.results import SweepResult, format_value, table
from sdn.sweep.storage import FolderError, ResultsFolder, saved_points

Array = jax.Array

__all__ = ["SweepInterrupted", "run"]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; `saved` of its `total` points are on disk in `out`.

    Rerunning the same sweep into the same folder resumes from there.
    """

    def __init__(self, saved: int, total: int, out: Path | None):
        where = f" in {out}" if out is not None else " (no out= folder)"
        super().__init__(f"sweep interrupted; {saved} of {total} points saved{where}")
        self.saved, self.total, self.out = saved, total, out


def run(
    f: SweepFn,
    design: Design,
    *,
    seed: int | Array = 0,
    chunk_size: int = 64,
    out: str | os.PathLike | None = None,
    static: Iterable[str] = (),
    name: str | None = None,
    progress: bool | None = None,
) -> SweepResult:
    """Run `f(key, params)` at every point of `design`, chunk by chunk, over all devices.

    Args:
      f: the sweep function; `params` maps each parameter of the design to a scalar
        (a traced array for numeric parameters, a Python value for static ones); it
        returns `{statistic: scalar}`. Built-in ones: `escape.bind(...)`,
        `stationary.bind(...)`.
      design: from `grid` or `random_design`.
      seed: an int seed or a `jax.random.key`; point `i` uses `fold_in(key, i)`.
      chunk_size: at most this many points per compiled chunk (memory bound).
      out: a folder for `results.csv`, `chunks/` and `manifest.json`; rerunning the same
        sweep with the same folder resumes from its verified chunks, and a different
        sweep there is refused, saying what differs. None keeps everything in memory.
      static: more parameter names to pass as Python values (e.g. integers that fix
        array shapes); strings and booleans are always static.
      name: identifies the sweep in `out` in place of a fingerprint of `f`'s code and
        bound values (see `sdn.sweep.identity`); give one when `f` binds values with no
        stable description, or to keep resuming after an edit you know changes nothing.
      progress: show a tqdm bar over chunks (default: when there is more than one).

    Returns:
      A `SweepResult`; `result.values(name)` gives one statistic per point.

    Raises:
      SweepInterrupted: on Ctrl-C, saying how many points are saved (a KeyboardInterrupt).
      sdn.sweep.FolderError: `out` holds another sweep or files that are not a sweep's,
        its manifest is unreadable, or it cannot be written.
      sdn.sweep.FolderLocked: another run is writing `out`.

    Warns:
      sdn.sweep.DamagedChunkWarning: a chunk file in `out` failed verification (cut
        short, edited, another sweep's); it is moved into `out/quarantine/`, not read,
        and its points run again.

    >>> from sdn.sweep import grid
    >>> f = lambda key, p: {"y": p["a"] * p["b"]}
    >>> r = run(f, grid(a=[1.0, 2.0], b=[10.0, 20.0]))
    >>> r.values("y").tolist()
    [10.0, 20.0, 20.0, 40.0]
    """
    t_start = time.perf_counter()
    key, static = _check(f, design, seed, chunk_size, static, name, out, progress)
    static_names = [n for n in design.names if n in static or design.points[n].dtype == object]
    traced = [n for n in design.names if n not in static_names]
    groups = _groups(design, static_names)
    order = {
        items: statistic_names(key, f, design, traced, items, int(rows[0]))
        for items, rows in groups.items()
    }
    statistics = tuple(dict.fromkeys(s for names in order.values() for s in names))
    path = Path(out) if out is not None else None
    identity = None
    if path is not None:
        key_data = np.asarray(jax.random.key_data(key)).tolist()
        identity = identify(f, design, key_data=key_data, static=sorted(static), name=name)

    folder = None
    try:
        folder = _open(path, identity, design, f)
        done = _done(folder, path, len(design))
        devices = Devices()
        plan = _plan(groups, done, chunk_size, devices)
        by_point = {} if folder is None else dict(folder.rows)
        skipped = len(by_point)
        by_point.update(_execute(f, key, design, traced, order, plan, devices, folder, progress))
        ordered = [r for i in sorted(by_point) for r in by_point[i]]
        if folder is not None:
            folder.finish(ordered)
    except KeyboardInterrupt:
        saved = saved_points(path) if path is not None else 0  # what is on disk
        raise SweepInterrupted(saved, len(design), path) from None
    finally:
        if folder is not None:
            folder.close()
    return SweepResult(
        table(ordered, design),
        design.names,
        statistics,
        path,
        len(by_point) - skipped,
        skipped,
        time.perf_counter() - t_start,
        devices.count,
    )


def _check(f, design, seed, chunk_size, static, name, out, progress) -> tuple[Array, set[str]]:
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(design, Design):
        raise TypeError(
            f"design must come from grid() or random_design(), got {type(design).__name__}"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if out is not None and not isinstance(out, str | os.PathLike):
        raise TypeError(f"out must be a folder (a str or os.PathLike) or None, got {out!r}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    if name is not None and not (isinstance(name, str) and name.strip()):
        raise ValueError(f"name must be a non-empty string or None, got {name!r}")
    key = jax.random.key(seed) if isinstance(seed, int | np.integer) else seed
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise TypeError(f"seed must be an int or a jax.random.key, got {seed!r}")
    if isinstance(static, str):
        raise TypeError(f"static must be a list of parameter names, got the string {static!r}")
    static = set(static)
    unknown = sorted(static - set(design.names))
    if unknown:
        raise ValueError(f"static names {unknown} are not parameters of the design")
    return key, static


def _groups(design: Design, static_names: list[str]) -> dict[tuple, np.ndarray]:
    """Points with equal static values, by those values, in order of first appearance."""
    columns = [(n, design.points[n].tolist()) for n in static_names]  # Python values
    groups: dict[tuple, list[int]] = {}
    for i in range(len(design)):
        groups.setdefault(tuple((n, values[i]) for n, values in columns), []).append(i)
    return {items: np.asarray(rows, dtype=np.int64) for items, rows in groups.items()}


def _plan(groups, done: np.ndarray, chunk_size: int, devices: Devices) -> list[tuple]:
    """The chunks still to run: `(static values, points, padded size)`, group by group."""
    plan = []
    for items, rows in groups.items():
        todo = rows[~done[rows]]
        if todo.size:
            per, padded = devices.chunk_sizes(todo.size, chunk_size)
            plan += [(items, todo[s : s + per], padded) for s in range(0, todo.size, per)]
    return plan


def _open(path: Path | None, identity, design: Design, f) -> ResultsFolder | None:
    """Open the results folder in process 0 (the only one that reads or writes it)."""
    if path is None or jax.process_index() != 0:
        return None
    about = {"function": repr(f), "n_points": len(design), "parameters": list(design.names)}
    try:
        return ResultsFolder.open(path, identity, about)
    except (ValueError, OSError) as err:
        if jax.process_count() > 1:  # tell the other processes before they wait for us
            _broadcast(np.ones(len(design) + 1, bool))
        raise err


def _done(folder: ResultsFolder | None, path: Path | None, n: int) -> np.ndarray:
    """Which points are on disk, as process 0 read them (the last entry: it failed)."""
    done = np.zeros(n + 1, bool)
    if folder is not None:
        done[list(folder.rows)] = True
    if jax.process_count() > 1:
        done = _broadcast(done)
    if done[n]:
        raise FolderError(f"process 0 could not open {path}; its error says why")
    return done[:n]


def _broadcast(x: np.ndarray) -> np.ndarray:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(x))


def _execute(f, key, design, traced, order, plan, devices, folder, progress) -> dict:
    """Run the planned chunks; each finished chunk is saved before the next starts."""
    from tqdm.auto import tqdm

    show = progress if progress is not None else len(plan) > 1
    lead = jax.process_index() == 0
    new: dict[int, list[list[str]]] = {}
    with tqdm(total=len(plan), unit="chunk", desc="sweep", disable=not (show and lead)) as bar:
        points, t0 = 0, time.perf_counter()
        for items, rows, padded in plan:
            outs = devices.compute(key, f, design, traced, items, rows, padded)
            chunk = {}
            for j, i in enumerate(rows):
                base = [str(i)] + [format_value(design.points[p][i]) for p in design.names]
                chunk[int(i)] = [[*base, s, format_value(outs[s][j])] for s in order[items]]
            if folder is not None:
                folder.write_chunk(chunk)
            new.update(chunk)
            points += rows.size
            bar.set_postfix(points_per_s=f"{points / (time.perf_counter() - t0):.3g}")
            bar.update(1)
    return new
