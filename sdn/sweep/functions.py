"""Sweep functions with declared parameters: what configs and the command line can run.

A plain sweep function is any `f(key, params) -> {statistic: scalar}`. A `SweepFunction`
adds what a config file or a command line needs to check its input before running:
the parameters it reads (with defaults), the allowed values of its static choices,
and its keyword settings; `bind(**settings)` turns it into a plain sweep function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

Array = jax.Array
SweepFn = Callable[[Array, dict[str, Any]], Mapping[str, Array]]

__all__ = ["SweepFn", "SweepFunction"]


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
        for name, value in settings.items():
            problem = setting_problem(value, self.settings[name])
            if problem:
                kind = ValueError if _same_kind(value, self.settings[name]) else TypeError
                raise kind(f"setting {name} {problem}")
        merged = {**self.settings, **settings}
        return _Bound(self, tuple((k, _freeze(v)) for k, v in sorted(merged.items())))


def setting_problem(value: Any, default: Any) -> str | None:
    """What is wrong with a setting's value, judged by its default's type, or None.

    Integers must be whole numbers >= 1 (sizes, step counts), floats positive finite
    numbers (an integer will do), tuples non-empty lists of numbers, booleans booleans.
    """
    if isinstance(default, bool):
        ok, need = isinstance(value, bool), "must be true or false"
    elif isinstance(default, int):
        ok = _number(value) and isinstance(value, int | np.integer) and value >= 1
        need = "must be >= 1 (a whole number"
    elif isinstance(default, float):
        ok = _number(value) and math.isfinite(value) and value > 0
        need = "must be > 0 (a finite number"
    elif isinstance(default, tuple):
        ok = isinstance(value, list | tuple) and len(value) > 0 and all(map(_number, value))
        need = "must be a non-empty list of numbers"
    else:
        ok, need = isinstance(value, type(default)), f"must be a {type(default).__name__}"
    if ok:
        return None
    like = f", like the default {default!r})" if need.endswith("number") else ""
    return f"{need}{like}, got {value!r}"


def _same_kind(value: Any, default: Any) -> bool:
    """Whether `value` has the type of `default` (so only its value is wrong)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return _number(value) and isinstance(value, int | np.integer)
    if isinstance(default, float):
        return _number(value)
    if isinstance(default, tuple):
        return isinstance(value, list | tuple)
    return isinstance(value, type(default))


def _number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


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
