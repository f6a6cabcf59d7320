"""Designs: the points of a sweep, one value per point for every named parameter.

`grid(**axes)` is the Cartesian product of lists of values; `random_design(n, ...)` draws
`n` points from a distribution per parameter (`uniform`, `log_uniform`, `choice`).
Numbers become float64 or int64 arrays (traced when the sweep runs); strings and
booleans are static choices (each value compiles its own program).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Design", "Distribution", "choice", "grid", "log_uniform", "random_design", "uniform"]


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
    """A law to draw one parameter from in a `random_design`."""

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
    if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
        raise TypeError(f"choice: values must be a list, got {values!r}")
    if len(values) == 0:
        raise ValueError("choice: values is empty; give at least one value")
    _as_values("choice", list(values))
    return Distribution("choice", tuple(values))


def random_design(n: int, *, seed: int = 0, **distributions: Distribution | Any) -> Design:
    """`n` points with each parameter drawn independently from its distribution.

    Each parameter draws from its own stream, seeded by `(seed, its name)`, so adding a
    parameter does not change the others' values. A plain value is a fixed parameter.

    >>> d = random_design(3, seed=1, learning_rate=log_uniform(1e-3, 1e-1), batch_size=8)
    >>> len(d), sorted(d.names)
    (3, ['batch_size', 'learning_rate'])
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not distributions:
        raise ValueError("random_design needs at least one parameter")
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
