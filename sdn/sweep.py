"""Parameter sweeps at scale: designs, a chunked sharded runner, resumable tidy results.

A sweep is a function `f(key, params) -> {statistic: value}` that maps one point of
parameter space to scalar statistics, plus a design over named parameters:
`grid(**axes)` (the Cartesian product) or `random(n, **distributions)`.

How the runner works, and why:

- Numeric parameters are stacked into arrays and each chunk of points runs as one
  jitted, vmapped program whose point axis is sharded over all devices (a `Mesh` over
  points; chunks are padded to a multiple of the device count). `sdn.simulate` and
  `sdn.first_exit_time` notice that they are traced and run as pure code, so a sweep
  function may call them with traced parameters.
- Static choices (string or bool parameters, such as a solver or a noise family, and
  any name passed in `static=`) split the points into groups; each group is compiled
  once and its static values reach `f` as Python values.
- Point `i` gets the key `fold_in(key, i)`, so results do not depend on the chunk size,
  the number of devices or on resuming.
- With `out=DIR` every chunk's rows are written to `DIR/chunks/` atomically (a temporary
  file, then `os.replace`), next to a JSON manifest (config and its hash, package
  versions, devices, key). Rerunning the same sweep into the same folder skips the
  points already written and gives the same final `DIR/results.csv` as an uninterrupted
  run; a different sweep in the same folder is an error.
- Memory is bounded by the chunk size (points per chunk × what `f` holds per point).

Several hosts: call `jax.distributed.initialize()` in every process first, then run the
same sweep in all of them. `jax.devices()` is then the global device list, each chunk is
sharded over every device of every host, results are gathered, and process 0 alone
reads and writes `out` (the list of finished points is broadcast from it). The tests
run this with two processes on one machine (CPU devices need
``jax.config.update("jax_cpu_collectives_implementation", "gloo")`` before
``jax.distributed.initialize``); the table equals a one-process run's, except that
there each point's paths run on their own rather than batched with the chunk's other
points, so the float32 sums of `sem` may differ in the last digit.

The results are a tidy table: one row per point and statistic, with the columns
`point`, the parameters, `statistic` and `value`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Array = jax.Array
SweepFn = Callable[[Array, dict[str, Any]], Mapping[str, Array]]

__all__ = [
    "BUILTIN",
    "Design",
    "Distribution",
    "SweepFunction",
    "SweepConfig",
    "SweepResult",
    "ConfigError",
    "choice",
    "escape",
    "grid",
    "load_config",
    "log_uniform",
    "random",
    "run",
    "stationary",
    "uniform",
]

MANIFEST = "manifest.json"
RESULTS = "results.csv"
_FORMAT = 1

# --------------------------------------------------------------------------- designs


@dataclass(frozen=True)
class Design:
    """The points of a sweep: one value per point for every named parameter.

    Attributes:
      points: `{name: (n,) array}`; numbers as float64/int64, choices as Python objects.
      spec: a JSON-able description of how the points were made (recorded and hashed).
    """

    points: dict[str, np.ndarray]
    spec: dict[str, Any]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.points)

    def __len__(self) -> int:
        return len(next(iter(self.points.values()))) if self.points else 0

    def point(self, i: int) -> dict[str, Any]:
        """The parameters of point `i` as Python scalars."""
        return {k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in self.points.items()}


def _as_values(name: str, value: Any) -> np.ndarray:
    """One parameter's values as a 1-D array: float64, int64, or objects (str/bool)."""
    values = list(value) if isinstance(value, list | tuple | np.ndarray) else [value]
    if not values:
        raise ValueError(f"parameter {name!r} has no values (empty list)")
    kinds = {_kind(v) for v in values}
    if None in kinds:
        bad = next(v for v in values if _kind(v) is None)
        raise TypeError(
            f"parameter {name!r}: values must be numbers, strings or booleans, got {bad!r} "
            f"of type {type(bad).__name__}"
        )
    if len(kinds) > 1 and kinds != {"int", "float"}:
        raise TypeError(f"parameter {name!r} mixes values of different types: {values!r}")
    if kinds == {"int"}:
        return np.asarray(values, dtype=np.int64)
    if kinds <= {"int", "float"}:
        arr = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"parameter {name!r} must be finite, got {values!r}")
        return arr
    return np.asarray(values, dtype=object)


def _kind(v: Any) -> str | None:
    if isinstance(v, bool | np.bool_):
        return "bool"
    if isinstance(v, int | np.integer):
        return "int"
    if isinstance(v, float | np.floating):
        return "float"
    if isinstance(v, str):
        return "str"
    return None


def _jsonable(values: np.ndarray) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values]


def grid(**axes: Any) -> Design:
    """The Cartesian product of named axes; the first axis varies slowest.

    Each axis is a list of numbers, strings or booleans, or a single value (a fixed
    parameter). Strings and booleans are static choices (they split the sweep into
    groups compiled separately).

    >>> d = grid(curvature=[0.5, 1.0], noise=["pld", "langevin"], sigma_g=1.0)
    >>> len(d), d.point(1)
    (4, {'curvature': 0.5, 'noise': 'langevin', 'sigma_g': 1.0})
    """
    if not axes:
        raise ValueError("grid needs at least one axis")
    values = {name: _as_values(name, v) for name, v in axes.items()}
    index = np.indices([len(v) for v in values.values()]).reshape(len(values), -1)
    points = {name: v[i] for (name, v), i in zip(values.items(), index)}
    spec = {"grid": {name: _jsonable(v) for name, v in values.items()}}
    return Design(points, spec)


class Distribution(NamedTuple):
    """A law to draw one parameter from in a `random` design."""

    kind: str
    args: tuple

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "uniform":
            return rng.uniform(self.args[0], self.args[1], n)
        if self.kind == "log_uniform":
            lo, hi = np.log(self.args[0]), np.log(self.args[1])
            return np.exp(rng.uniform(lo, hi, n))
        values = _as_values("choice", list(self.args))
        return values[rng.integers(0, len(values), n)]


def _bounds(kind: str, lo: float, hi: float) -> tuple[float, float]:
    for name, v in (("lo", lo), ("hi", hi)):
        if _kind(v) not in ("int", "float") or not math.isfinite(v):
            raise TypeError(f"{kind}: {name} must be a finite number, got {v!r}")
    if not lo < hi:
        raise ValueError(f"{kind}: need lo < hi, got lo={lo!r}, hi={hi!r}")
    if kind == "log_uniform" and lo <= 0:
        raise ValueError(f"log_uniform: need lo > 0, got lo={lo!r}")
    return float(lo), float(hi)


def uniform(lo: float, hi: float) -> Distribution:
    """Uniform on `[lo, hi)`."""
    return Distribution("uniform", _bounds("uniform", lo, hi))


def log_uniform(lo: float, hi: float) -> Distribution:
    """Log-uniform on `[lo, hi)`, `0 < lo < hi` (for scales such as a learning rate)."""
    return Distribution("log_uniform", _bounds("log_uniform", lo, hi))


def choice(values: Sequence[Any]) -> Distribution:
    """Uniform over a list of values (strings make it a static choice)."""
    _as_values("choice", list(values))
    return Distribution("choice", tuple(values))


def random(n: int, *, seed: int = 0, **distributions: Distribution | Any) -> Design:
    """`n` points with each parameter drawn independently from its distribution.

    Each parameter draws from its own stream, seeded by `(seed, its name)`, so adding a
    parameter does not change the others' values. A plain value is a fixed parameter.

    >>> d = random(3, seed=1, learning_rate=log_uniform(1e-3, 1e-1), batch_size=8)
    >>> len(d), sorted(d.names)
    (3, ['batch_size', 'learning_rate'])
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not distributions:
        raise ValueError("random needs at least one parameter")
    points, spec = {}, {}
    for name, dist in distributions.items():
        if isinstance(dist, Distribution):
            rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
            points[name] = dist.sample(rng, int(n))
            spec[name] = {dist.kind: list(dist.args)}
        else:
            if isinstance(dist, list | tuple | np.ndarray):
                raise TypeError(
                    f"parameter {name!r}: random designs take a distribution or one value, "
                    f"got a list; use choice({list(dist)!r})"
                )
            value = _as_values(name, dist)
            points[name] = np.repeat(value, n)
            spec[name] = _jsonable(value)[0]
    return Design(points, {"random": {"n": int(n), "seed": int(seed), "parameters": spec}})


# --------------------------------------------------------------------------- sweep functions


@dataclass(frozen=True)
class SweepFunction:
    """A sweep function with its declared parameters, for configs and the command line.

    Attributes:
      fn: `fn(key, params, **settings) -> {statistic: scalar}`.
      defaults: every parameter `fn` reads, with the value used when a design omits it.
      choices: allowed values of the static (string) parameters.
      settings: keyword settings of `fn` (sizes, step), with defaults; static.
      doc: one line for `--help`.
      batched: optionally, `batched(keys, params, **settings)` computing the same
        statistics for a whole chunk of points at once (`keys` of shape `(P,)`, numeric
        params of shape `(P,)`); the runner then calls it instead of vmapping `fn`.
        First-exit sweeps use it so that finished paths are compacted across points.
    """

    fn: Callable[..., Mapping[str, Array]]
    defaults: Mapping[str, Any]
    choices: Mapping[str, tuple[str, ...]]
    settings: Mapping[str, Any]
    doc: str = ""
    batched: Callable[..., Mapping[str, Array]] | None = None

    def bind(self, **settings: Any) -> SweepFn:
        """The sweep function `f(key, params)` with `settings` fixed (defaults elsewhere)."""
        unknown = sorted(set(settings) - set(self.settings))
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; known: {sorted(self.settings)}")
        merged = {**self.settings, **settings}
        return _Bound(self, tuple((k, _freeze(v)) for k, v in sorted(merged.items())))


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class _Bound:
    """`SweepFunction` with settings: hashable, so jit caches are shared across runs."""

    spec: SweepFunction = field(hash=False, compare=False)
    settings: tuple
    _id: int = field(default=0, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_id", id(self.spec.fn))

    def __call__(self, key: Array, params: Mapping[str, Any]) -> Mapping[str, Array]:
        unknown = sorted(set(params) - set(self.spec.defaults))
        if unknown:
            raise ValueError(
                f"unknown parameter {unknown[0]!r}; known: {sorted(self.spec.defaults)}"
            )
        for name, allowed in self.spec.choices.items():
            if name in params and params[name] not in allowed:
                raise ValueError(
                    f"parameter {name!r} must be one of {allowed}, got {params[name]!r}"
                )
        return self.spec.fn(key, {**self.spec.defaults, **params}, **dict(self.settings))

    def run_batched(self, keys: Array, params: Mapping[str, Any]) -> Mapping[str, Array]:
        """All points of a chunk at once, through `spec.batched` (same numbers as `fn`)."""
        return self.spec.batched(keys, {**self.spec.defaults, **params}, **dict(self.settings))

    @property
    def __name__(self) -> str:
        return self.spec.fn.__name__

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings)
        return f"{self.spec.fn.__name__.lstrip('_')}.bind({settings})"


def _sgd_on_quadratic(p: Mapping[str, Any]):
    """The SGD SDE on `L = h x²/2` with PLD (`σ_g + σ_H x²`) or Langevin (`σ_g`) noise."""
    from sdn import noise
    from sdn.sde import sgd_sde

    h = p["curvature"]
    if p["noise"] == "pld":
        model = noise.power_law(p["sigma_g"], p["sigma_h"])
    else:
        model = noise.isotropic(p["sigma_g"])
    return sgd_sde(jax.tree_util.Partial(_scaled, h), model, p["learning_rate"], p["batch_size"])


def _scaled(h, w):
    return h * w


_SDE_DEFAULTS = {
    "noise": "pld",
    "solver": "euler_maruyama",
    "learning_rate": 0.1,
    "batch_size": 1,
    "curvature": 1.0,
    "sigma_g": 1.0,
    "sigma_h": 2.0,
}
_SDE_CHOICES = {"noise": ("pld", "langevin"), "solver": ("euler_maruyama", "milstein", "heun")}


def _exit_statistics(time: Array, status: Array) -> dict[str, Array]:
    """Mean exit time over exited paths, its standard error and the counts (last axis)."""
    from sdn.ensemble import DIVERGED, EXITED, INSIDE

    exited = status == EXITED
    n = jnp.sum(exited, axis=-1)
    t = jnp.where(exited, time, 0.0)
    mean = jnp.sum(t, axis=-1) / jnp.maximum(n, 1)
    dev = jnp.where(exited, jnp.square(time - mean[..., None]), 0.0)
    var = jnp.sum(dev, axis=-1) / jnp.maximum(n - 1, 1)
    return {
        "mean_time": jnp.where(n > 0, mean, jnp.nan),
        "sem": jnp.where(n > 1, jnp.sqrt(var / jnp.maximum(n, 1)), jnp.nan),
        "exited": n,
        "inside": jnp.sum(status == INSIDE, axis=-1),
        "diverged": jnp.sum(status == DIVERGED, axis=-1),
    }


def _escape(key, p, *, n_paths: int, dt: float, max_steps: int, bridge: bool):
    from sdn import domains
    from sdn.ensemble import first_exit_time

    sde = _sgd_on_quadratic(p)
    wall = jnp.asarray(p["wall"], jnp.result_type(float))
    r = first_exit_time(
        key,
        sde,
        jnp.zeros((), wall.dtype) + p["x0"],
        domains.interval(-wall, wall),
        dt=dt,
        max_steps=max_steps,
        n_paths=n_paths,
        solver=p["solver"],
        bridge=bridge,
    )
    return _exit_statistics(r.time, r.status)


def _escape_batched(keys, p, *, n_paths: int, dt: float, max_steps: int, bridge: bool):
    """`_escape` for a chunk of points as one ensemble of `P × n_paths` paths."""
    from sdn import domains
    from sdn.ensemble import first_exit_time_per_path

    n_points = keys.shape[0]
    numeric = {
        k: jnp.broadcast_to(jnp.asarray(v), (n_points,))
        for k, v in p.items()
        if not isinstance(v, str | bool)
    }
    static = {k: v for k, v in p.items() if isinstance(v, str | bool)}

    def one(q):
        q = {**q, **static}
        wall = jnp.asarray(q["wall"], jnp.result_type(float))
        return _sgd_on_quadratic(q), domains.Box(-wall, wall), jnp.zeros((), wall.dtype) + q["x0"]

    sde, box, w0 = jax.vmap(one)(numeric)
    sde, box, w0 = jax.tree.map(lambda a: jnp.repeat(a, n_paths, axis=0), (sde, box, w0))
    # Path j of point i keeps the key it has in `_escape`: fold_in(key_i, j).
    path_keys = jax.vmap(
        lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(jnp.arange(n_paths))
    )(keys).reshape(-1)
    r = first_exit_time_per_path(
        path_keys, sde, w0, box, dt=dt, max_steps=max_steps, solver=p["solver"], bridge=bridge
    )
    shape = (n_points, n_paths)
    return _exit_statistics(r.time.reshape(shape), r.status.reshape(shape))


escape = SweepFunction(
    fn=_escape,
    defaults={**_SDE_DEFAULTS, "wall": 1.0, "x0": 0.0},
    choices=_SDE_CHOICES,
    settings={"n_paths": 256, "dt": 0.01, "max_steps": 100_000, "bridge": True},
    doc="mean first exit time of SGD's SDE from (−wall, wall) on L = h x²/2 (docs/theory.md §4)",
    batched=_escape_batched,
)
"""Built-in sweep: escape from a walled quadratic basin.

Statistics: `mean_time` (over exited paths; a lower bound when `inside > 0`), `sem`,
and the counts `exited`, `inside` (still inside at `max_steps`), `diverged`.
"""


def _stationary(key, p, *, n_paths: int, dt: float, n_steps: int, quantiles: tuple):
    from sdn.ensemble import simulate

    x = simulate(
        key,
        _sgd_on_quadratic(p),
        p["x0"] * 1.0,
        dt=dt,
        n_steps=n_steps,
        n_paths=n_paths,
        solver=p["solver"],
    )
    q = jnp.quantile(x, jnp.asarray(quantiles, x.dtype))
    out = {f"q{prob:g}": q[i] for i, prob in enumerate(quantiles)}
    out["median_abs"] = jnp.median(jnp.abs(x))
    out["finite"] = jnp.sum(jnp.isfinite(x))
    return out


stationary = SweepFunction(
    fn=_stationary,
    defaults={**_SDE_DEFAULTS, "x0": 0.0},
    choices=_SDE_CHOICES,
    settings={"n_paths": 4096, "dt": 0.01, "n_steps": 2000, "quantiles": (0.5, 0.9, 0.99, 0.999)},
    doc="quantiles of x = w − w* after n_steps of SGD's SDE on L = h x²/2 (docs/theory.md §3)",
)
"""Built-in sweep: the (near-)stationary law of SGD's SDE on a quadratic.

Statistics: quantiles `q<p>` of `x` at the probabilities of the `quantiles` setting,
`median_abs` and `finite` (paths with a finite end state). PLD's law is a Student-t whose
variance may not exist (ν ≤ 2), so quantiles are reported, not moments.
"""

BUILTIN: dict[str, SweepFunction] = {"escape": escape, "stationary": stationary}
"""Sweep functions known by name to configs and to the command line."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SweepResult:
    """The tidy table of a sweep and how the run went.

    Attributes:
      table: columns `point` (int), each parameter, `statistic` (str), `value` (float),
        one row per point and statistic, sorted by point.
      parameters: the parameter names.
      statistics: the statistic names, in the order `f` returned them.
      out: the results folder, or None.
      points_run / points_skipped: points computed now / found finished in `out`.
      seconds: wall time of this call.
      n_devices: devices the points were sharded over.
    """

    table: dict[str, np.ndarray]
    parameters: tuple[str, ...]
    statistics: tuple[str, ...]
    out: Path | None
    points_run: int
    points_skipped: int
    seconds: float
    n_devices: int

    @property
    def n_points(self) -> int:
        return self.points_run + self.points_skipped

    def values(self, statistic: str) -> np.ndarray:
        """One statistic for every point, `(n_points,)`, NaN where `f` did not return it."""
        if statistic not in self.statistics:
            raise ValueError(f"unknown statistic {statistic!r}; known: {list(self.statistics)}")
        out = np.full(self.n_points, np.nan)
        rows = self.table["statistic"] == statistic
        out[self.table["point"][rows]] = self.table["value"][rows]
        return out

    def format(self, parameters: Sequence[str] | None = None, max_rows: int = 50) -> str:
        """The table as text, one line per point: parameters, then statistics.

        Args:
          parameters: the parameter columns to show (default: those that vary).
          max_rows: show at most this many points (the rest are counted).
        """
        if parameters is None:
            parameters = [
                p for p in self.parameters if len(set(self.table[p].tolist())) > 1
            ] or list(self.parameters)
        points = np.unique(self.table["point"])
        first = {}
        for row, i in enumerate(self.table["point"]):
            first.setdefault(int(i), row)
        cols = [*parameters, *self.statistics]
        lines = []
        for i in points[:max_rows]:
            r = first[int(i)]
            cells = [_short(self.table[p][r]) for p in parameters]
            cells += [_short(v) for v in (self.values(s)[i] for s in self.statistics)]
            lines.append(cells)
        width = [max(len(c), *(len(line[j]) for line in lines)) for j, c in enumerate(cols)]
        text = ["  ".join(c.rjust(w) for c, w in zip(cols, width))]
        text += ["  ".join(c.rjust(w) for c, w in zip(line, width)) for line in lines]
        if points.size > max_rows:
            text.append(f"... {points.size - max_rows} more points")
        return "\n".join(text)

    def summary(self) -> str:
        rate = self.points_run / self.seconds if self.seconds > 0 else math.inf
        where = f", results in {self.out / RESULTS}" if self.out else ""
        return (
            f"{self.n_points} points ({self.points_run} run, {self.points_skipped} resumed) × "
            f"{len(self.statistics)} statistics in {self.seconds:.1f} s "
            f"({rate:.1f} points/s on {self.n_devices} device(s)){where}"
        )


def _short(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.5g}"
    return _fmt(v)


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return repr(float(v))
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    return str(v.item() if hasattr(v, "item") else v)


def _rows_csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- manifest


def _versions() -> dict[str, str]:
    import jaxlib

    from sdn import __version__

    return {
        "sdn": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _config_hash(config: Mapping[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _describe(f: Any) -> str:
    if isinstance(f, _Bound):
        name = next((k for k, v in BUILTIN.items() if v is f.spec), f.__name__)
        return f"{name}{dict(f.settings)}"
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


# --------------------------------------------------------------------------- the runner


def _chunk_sizes(n: int, limit: int, n_dev: int) -> tuple[int, int]:
    """(points per chunk, padded size): equal chunks, padded to a multiple of `n_dev`."""
    n_chunks = math.ceil(n / limit)
    per = math.ceil(n / n_chunks)
    return per, math.ceil(per / n_dev) * n_dev


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

    def __call__(self, key, params):
        out = self.f(key, params)
        if isinstance(out, Mapping):
            self.names[:] = list(out)
        return out


def _gather(x: Array) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _put(arr: np.ndarray, sharding: NamedSharding) -> Array:
    """A global array from host data every process holds (works on several hosts)."""
    return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])


def _traced_params(design: Design, names: list[str], rows: np.ndarray) -> dict[str, np.ndarray]:
    dtype_f = np.dtype(jnp.result_type(float))
    dtype_i = np.dtype(jnp.result_type(int))
    out = {}
    for name in names:
        v = design.points[name][rows]
        out[name] = v.astype(dtype_i if v.dtype.kind == "i" else dtype_f)
    return out


def run(
    f: SweepFn,
    design: Design,
    *,
    seed: int | Array = 0,
    chunk_size: int = 64,
    out: str | os.PathLike | None = None,
    static: Iterable[str] = (),
    config: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> SweepResult:
    """Run `f(key, params)` at every point of `design`, chunk by chunk, over all devices.

    Args:
      f: the sweep function; `params` maps each parameter of the design to a scalar
        (a traced array for numeric parameters, a Python value for static ones); it
        returns `{statistic: scalar}`. Built-in ones: `escape.bind(...)`,
        `stationary.bind(...)`.
      design: from `grid` or `random`.
      seed: an int seed or a `jax.random.key`; point `i` uses `fold_in(key, i)`.
      chunk_size: at most this many points per compiled chunk (memory bound).
      out: a folder for `results.csv`, `chunks/` and `manifest.json`; rerunning with the
        same folder resumes. None keeps everything in memory.
      static: more parameter names to pass as Python values (e.g. integers that fix
        array shapes); strings and booleans are always static.
      config: what identifies the sweep in the manifest (default: a description of `f`,
        the design and the seed); a folder holding another config's results is refused.
      progress: show a tqdm bar over chunks (default: when there is more than one).

    Returns:
      A `SweepResult`; `result.values(name)` gives one statistic per point.

    >>> import jax.numpy as jnp
    >>> f = lambda key, p: {"y": p["a"] * p["b"]}
    >>> r = run(f, grid(a=[1.0, 2.0], b=[10.0, 20.0]))
    >>> r.values("y").tolist()
    [10.0, 20.0, 20.0, 40.0]
    """
    t_start = time.perf_counter()
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(design, Design):
        raise TypeError(f"design must come from grid() or random(), got {type(design).__name__}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    key = jax.random.key(seed) if isinstance(seed, int | np.integer) else seed
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise TypeError(f"seed must be an int or a jax.random.key, got {seed!r}")
    static = set(static)
    unknown = sorted(static - set(design.names))
    if unknown:
        raise ValueError(f"static names {unknown} are not parameters of the design")
    static_names = [n for n in design.names if n in static or design.points[n].dtype == object]
    traced_names = [n for n in design.names if n not in static_names]
    n = len(design)

    # Groups of points with equal static values, in order of first appearance.
    group_of: dict[tuple, list[int]] = {}
    for i in range(n):
        items = tuple(
            (
                name,
                design.points[name][i].item()
                if hasattr(design.points[name][i], "item")
                else design.points[name][i],
            )
            for name in static_names
        )
        group_of.setdefault(items, []).append(i)

    # Check every group (traces f once, compiles nothing) before touching the folder.
    order: dict[tuple, list[str]] = {}
    for items, rows in group_of.items():
        names = order.setdefault(items, [])
        shapes = jax.eval_shape(
            partial(_program, _Recording(f, names), items),
            key,
            np.zeros(1, np.int32),
            _traced_params(design, traced_names, np.asarray(rows[:1])),
        )
        for name, s in shapes.items():
            if s.shape != (1,):
                raise ValueError(
                    f"statistic {name!r} must be a scalar per point, got shape {s.shape[1:]}"
                )
    statistics = list(dict.fromkeys(s for names in order.values() for s in names))

    if config is None:
        config = {"function": _describe(f), "design": design.spec, "static": sorted(static)}
    config = {**config, "seed": np.asarray(jax.random.key_data(key)).tolist()}
    chash = _config_hash(config)

    folder = Path(out) if out is not None else None
    lead = jax.process_index() == 0
    done_rows: dict[int, list[list[str]]] = {}
    if folder is not None and lead:
        manifest = _open_folder(folder, config, chash, n, design.names)
        done_rows = _read_chunks(folder, design.names, n)
    done = np.zeros(n, bool)
    done[list(done_rows)] = True
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        done = np.asarray(multihost_utils.broadcast_one_to_all(done))

    mesh = Mesh(np.array(jax.devices()), ("points",))
    n_dev = mesh.size
    sharding = NamedSharding(mesh, PartitionSpec("points"))
    plan = []
    for items, rows in group_of.items():
        todo = np.asarray([i for i in rows if not done[i]], dtype=np.int64)
        if todo.size:
            per, padded = _chunk_sizes(todo.size, chunk_size, n_dev)
            plan += [(items, todo[s : s + per], padded) for s in range(0, todo.size, per)]

    batched = getattr(getattr(f, "spec", None), "batched", None) is not None
    batched = batched and jax.process_count() == 1
    existing = _chunk_files(folder)
    next_id = max((_chunk_id(p) for p in existing), default=-1) + 1
    from tqdm.auto import tqdm

    show = progress if progress is not None else len(plan) > 1
    new_rows: dict[int, list[list[str]]] = {}
    with tqdm(total=len(plan), unit="chunk", desc="sweep", disable=not (show and lead)) as bar:
        points_done, t0 = 0, time.perf_counter()
        for c, (items, rows, padded) in enumerate(plan):
            if batched:
                # The batched function spreads its own paths over the devices.
                params = _traced_params(design, traced_names, rows)
                keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(rows.astype(np.int32))
                outs = f.run_batched(keys, {**params, **dict(items)})
                outs = {k: np.asarray(v) for k, v in outs.items()}
            else:
                idx = np.concatenate([rows, np.full(padded - rows.size, rows[-1])])
                params = _traced_params(design, traced_names, idx)
                outs = _program_jit(
                    f,
                    items,
                    key,
                    _put(idx.astype(np.int32), sharding),
                    {k: _put(v, sharding) for k, v in params.items()},
                )
                outs = {k: _gather(v)[: rows.size] for k, v in outs.items()}
            chunk_rows = {}
            for j, i in enumerate(rows):
                base = [str(i)] + [_fmt(design.points[name][i]) for name in design.names]
                chunk_rows[int(i)] = [base + [s, _fmt(outs[s][j])] for s in order[items]]
            if folder is not None and lead:
                lines = [r for point_rows in chunk_rows.values() for r in point_rows]
                text = _rows_csv([_header(design.names), *lines])
                _write_atomic(folder / "chunks" / f"chunk-{next_id + c:06d}.csv", text)
                manifest["chunks_done"] = len(existing) + c + 1
                _write_manifest(folder, manifest)
            new_rows.update(chunk_rows)
            points_done += rows.size
            bar.set_postfix(points_per_s=f"{points_done / (time.perf_counter() - t0):.3g}")
            bar.update(1)

    all_rows = {**done_rows, **new_rows}
    ordered = [r for i in sorted(all_rows) for r in all_rows[i]]
    seconds = time.perf_counter() - t_start
    if folder is not None and lead:
        _write_atomic(folder / RESULTS, _rows_csv([_header(design.names)] + ordered))
        manifest.update(
            complete=True,
            chunks_done=len(_chunk_files(folder)),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        _write_manifest(folder, manifest)
    return SweepResult(
        _table(ordered, design),
        design.names,
        tuple(statistics),
        folder,
        len(new_rows),
        len(done_rows),
        seconds,
        n_dev,
    )


def _header(names: Sequence[str]) -> list[str]:
    return ["point", *names, "statistic", "value"]


def _table(rows: list[list[str]], design: Design) -> dict[str, np.ndarray]:
    point = np.asarray([int(r[0]) for r in rows], dtype=np.int64)
    table = {"point": point}
    for name in design.names:
        table[name] = design.points[name][point]
    table["statistic"] = np.asarray([r[-2] for r in rows], dtype=str)
    table["value"] = np.asarray([float(r[-1]) for r in rows], dtype=np.float64)
    return table


def _chunk_files(folder: Path | None) -> list[Path]:
    if folder is None or not (folder / "chunks").is_dir():
        return []
    return sorted((folder / "chunks").glob("chunk-*.csv"))


def _chunk_id(path: Path) -> int:
    return int(path.stem.split("-")[1])


def _open_folder(folder: Path, config, chash: str, n: int, names) -> dict[str, Any]:
    """Create or reopen a results folder; refuse one that holds another sweep."""
    path = folder / MANIFEST
    if path.exists():
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a readable sweep manifest: {err}") from err
        if manifest.get("config_hash") != chash:
            raise ValueError(
                f"{folder} holds the results of a different sweep (config hash "
                f"{str(manifest.get('config_hash'))[:12]}…, this one {chash[:12]}…); "
                f"use another output folder or delete it"
            )
        manifest["resumed"] = manifest.get("resumed", 0) + 1
    else:
        if folder.exists() and any(folder.iterdir()):
            raise ValueError(f"{folder} is not empty and holds no {MANIFEST}; use a new folder")
        manifest = {
            "format": _FORMAT,
            "config": config,
            "config_hash": chash,
            "key": "point i uses jax.random.fold_in(jax.random.key(seed), i); seed = key data",
            "n_points": n,
            "parameters": list(names),
            "versions": _versions(),
            "devices": {
                "count": jax.device_count(),
                "kinds": sorted({d.device_kind for d in jax.devices()}),
                "platform": jax.default_backend(),
                "processes": jax.process_count(),
            },
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "complete": False,
        }
    (folder / "chunks").mkdir(parents=True, exist_ok=True)
    for stale in [*folder.glob(".*.tmp"), *(folder / "chunks").glob(".*.tmp")]:
        stale.unlink()  # a write that a killed run left unfinished
    manifest["complete"] = False
    manifest["chunks_done"] = len(_chunk_files(folder))
    _write_manifest(folder, manifest)
    return manifest


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    _write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")


def _read_chunks(folder: Path, names: Sequence[str], n: int) -> dict[int, list[list[str]]]:
    """Rows of the finished chunk files, by point; a point in two chunks is an error."""
    rows: dict[int, list[list[str]]] = {}
    header = _header(names)
    for path in _chunk_files(folder):
        with open(path, newline="", encoding="utf-8") as fh:
            lines = list(csv.reader(fh))
        if not lines or lines[0] != header:
            raise ValueError(f"{path} does not have the columns {header}; folder corrupted")
        mine: dict[int, list[list[str]]] = {}
        for line in lines[1:]:
            i = int(line[0])
            if not 0 <= i < n or i in rows:
                raise ValueError(f"{path}: point {i} is out of range or already written")
            mine.setdefault(i, []).append(line)
        rows.update(mine)
    return rows


# --------------------------------------------------------------------------- configs


class ConfigError(ValueError):
    """A bad sweep config; the message names the file and the key."""


@dataclass(frozen=True)
class SweepConfig:
    """A sweep read from a TOML file, ready for `run(**config.run_kwargs())`.

    Attributes:
      path: the TOML file.
      function: the bound sweep function.
      design: the points.
      seed, chunk_size, out, static: as in `run` (`out` may be None).
      config: the normalized config recorded in the manifest and hashed.
    """

    path: Path
    function: SweepFn
    design: Design
    seed: int
    chunk_size: int
    out: Path | None
    static: tuple[str, ...]
    config: dict[str, Any]

    def run(self, *, out: str | os.PathLike | None = None, **kwargs: Any) -> SweepResult:
        """Run the sweep (`out` overrides the config's `sweep.out`)."""
        return run(
            self.function,
            self.design,
            seed=self.seed,
            chunk_size=kwargs.pop("chunk_size", self.chunk_size),
            out=out if out is not None else self.out,
            static=self.static,
            config=self.config,
            **kwargs,
        )


_SWEEP_KEYS = {"function", "seed", "chunk_size", "out", "static"}
_DISTRIBUTIONS = {"uniform": uniform, "log_uniform": log_uniform, "choice": choice}


def load_config(path: str | os.PathLike) -> SweepConfig:
    """Read and check a sweep config (TOML); nothing is run or written.

    The file has a `[sweep]` table (`function`: a built-in name such as `"escape"` or
    `"package.module:attr"`; optional `seed`, `chunk_size`, `out`, `static`), an optional
    `[settings]` table (keyword settings of the function) and exactly one design table:
    `[grid]` (`name = [values]` or `name = value`) or `[random]` (`n`, optional `seed`,
    and `name = {uniform = [lo, hi]}`, `{log_uniform = [lo, hi]}`, `{choice = [...]}` or a
    fixed value). See `examples/escape_sweep.toml`.

    Raises:
      ConfigError: naming the file and the key, for a missing or unreadable file,
        unknown keys or parameters, empty axes and values of the wrong type.
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {message}")

    unknown = sorted(set(raw) - {"sweep", "settings", "grid", "random"})
    if unknown:
        raise fail(unknown[0], "unknown table; expected [sweep], [settings], [grid] or [random]")
    head = raw.get("sweep")
    if not isinstance(head, dict):
        raise fail("sweep", "missing [sweep] table with a `function` key")
    for key in sorted(set(head) - _SWEEP_KEYS):
        raise fail(f"sweep.{key}", f"unknown key; known: {sorted(_SWEEP_KEYS)}")
    name = head.get("function")
    if not isinstance(name, str):
        raise fail("sweep.function", f"must be a string (e.g. 'escape'), got {name!r}")
    spec, fn = _resolve(name, lambda m: fail("sweep.function", m))
    seed = _config_int(head.get("seed", 0), "sweep.seed", fail, minimum=0)
    chunk_size = _config_int(head.get("chunk_size", 64), "sweep.chunk_size", fail, minimum=1)
    out = head.get("out")
    if out is not None and not (isinstance(out, str) and out):
        raise fail("sweep.out", f"must be a folder name, got {out!r}")
    static = head.get("static", [])
    if not (isinstance(static, list) and all(isinstance(s, str) for s in static)):
        raise fail("sweep.static", f"must be a list of parameter names, got {static!r}")

    settings = raw.get("settings", {})
    if not isinstance(settings, dict):
        raise fail("settings", "must be a table")
    if spec is not None:
        for key, value in settings.items():
            if key not in spec.settings:
                raise fail(
                    f"settings.{key}",
                    f"unknown setting of {name!r}; known: {sorted(spec.settings)}",
                )
            _check_like(value, spec.settings[key], f"settings.{key}", fail)
        fn = spec.bind(**settings)
    elif settings:
        fn = partial(fn, **settings)

    if ("grid" in raw) == ("random" in raw):
        raise fail("grid", "give exactly one design table, [grid] or [random]")
    table = "grid" if "grid" in raw else "random"
    body = raw[table]
    if not isinstance(body, dict):
        raise fail(table, "must be a table")
    params = {k: v for k, v in body.items() if not (table == "random" and k in ("n", "seed"))}
    if not params:
        raise fail(table, "names no parameters")
    for key, value in params.items():
        if spec is not None:
            _check_parameter(spec, key, value, f"{table}.{key}", fail, table == "random")
        if table == "grid" or not isinstance(value, dict):
            if table == "random" and isinstance(value, list):
                raise fail(f"random.{key}", "give one value or {choice = [...]}, not a list")
            try:
                _as_values(key, value)
            except (TypeError, ValueError) as err:
                raise fail(f"{table}.{key}", str(err)) from err
    try:
        if table == "grid":
            design = grid(**params)
        else:
            n = _config_int(body.get("n"), "random.n", fail, minimum=1)
            rseed = _config_int(body.get("seed", seed), "random.seed", fail, minimum=0)
            dists = {}
            for key, value in params.items():
                dists[key] = _distribution(value, f"random.{key}", fail)
            design = random(n, seed=rseed, **dists)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise fail(table, str(err)) from err
    for s in static:
        if s not in design.names:
            raise fail("sweep.static", f"{s!r} is not a parameter of the [{table}] design")

    config = {
        "function": name,
        "settings": dict(getattr(fn, "settings", settings)),
        "design": design.spec,
        "static": sorted(static),
    }
    out_path = Path(out) if out is not None else None
    return SweepConfig(path, fn, design, seed, chunk_size, out_path, tuple(static), config)


def _resolve(name: str, fail) -> tuple[SweepFunction | None, Callable | None]:
    if name in BUILTIN:
        return BUILTIN[name], None
    if ":" not in name:
        raise fail(
            f"unknown sweep function {name!r}; built in: {sorted(BUILTIN)}, or 'module:attr'"
        )
    import importlib

    module, _, attr = name.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise fail(f"cannot import {name!r}: {err}") from err
    if isinstance(obj, SweepFunction):
        return obj, None
    if not callable(obj):
        raise fail(f"{name!r} is not callable")
    return None, obj


def _config_int(value: Any, key: str, fail, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(key, f"must be an integer, got {value!r}")
    if value < minimum:
        raise fail(key, f"must be >= {minimum}, got {value}")
    return value


def _check_like(value: Any, default: Any, key: str, fail) -> None:
    """A setting must have the type of its default (an int is fine for a float)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    elif isinstance(default, float):
        ok = _kind(value) in ("int", "float") and math.isfinite(value) and value > 0
    elif isinstance(default, tuple):
        ok = isinstance(value, list) and value and all(_kind(v) in ("int", "float") for v in value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        want = {bool: "true or false", int: "a positive integer", float: "a positive number"}
        need = want.get(type(default), "a non-empty list of numbers")
        raise fail(key, f"must be {need} (like the default {default!r}), got {value!r}")


def _check_parameter(spec: SweepFunction, name: str, value: Any, key: str, fail, random_):
    if name not in spec.defaults:
        raise fail(key, f"unknown parameter; known: {sorted(spec.defaults)}")
    if isinstance(value, dict) and random_:
        if "choice" not in value:
            if name in spec.choices:
                raise fail(key, "a static choice: give one value or {choice = [...]}")
            return  # the distribution itself is checked when it is built
        values = value["choice"] if isinstance(value["choice"], list) else [value["choice"]]
    else:
        values = value if isinstance(value, list) else [value]
    if not values:
        raise fail(key, "has no values (empty list)")
    allowed = spec.choices.get(name)
    for v in values:
        if allowed is not None and v not in allowed:
            raise fail(key, f"must be one of {list(allowed)}, got {v!r}")
        if allowed is None and _kind(v) not in ("int", "float"):
            raise fail(key, f"must be numbers, got {v!r} of type {type(v).__name__}")


def _distribution(value: Any, key: str, fail) -> Distribution | Any:
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in _DISTRIBUTIONS:
        raise fail(key, f"must be one value or one of {{{', '.join(_DISTRIBUTIONS)} = [...]}}")
    kind, args = next(iter(value.items()))
    if not isinstance(args, list):
        raise fail(f"{key}.{kind}", f"must be a list, got {args!r}")
    try:
        return _DISTRIBUTIONS[kind](args) if kind == "choice" else _DISTRIBUTIONS[kind](*args)
    except TypeError as err:
        raise fail(f"{key}.{kind}", str(err)) from err
    except ValueError as err:
        raise fail(f"{key}.{kind}", str(err)) from err
