"""Sweep configs: a TOML file that names a sweep function, its settings and a design.

`load_config(path)` reads and checks a file (see `examples/escape_sweep.toml`) and
returns a `SweepConfig`, whose `run()` runs it; `sdn sweep CONFIG.toml` does both.
Every error names the file and the key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sdn.sweep.builtin import BUILTIN
from sdn.sweep.designs import (
    Design,
    Distribution,
    _as_values,
    _kind,
    choice,
    grid,
    log_uniform,
    random_design,
    uniform,
)
from sdn.sweep.functions import SweepFn, SweepFunction, setting_problem
from sdn.sweep.results import SweepResult
from sdn.sweep.runner import run

__all__ = ["ConfigError", "SweepConfig", "load_config"]


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
      config: the file's content, normalized (function, settings, design, static).
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
        """Run the sweep (`out` overrides the config's `sweep.out`; `kwargs` go to `run`)."""
        return run(
            self.function,
            self.design,
            seed=self.seed,
            chunk_size=kwargs.pop("chunk_size", self.chunk_size),
            out=out if out is not None else self.out,
            static=self.static,
            **kwargs,
        )


_SWEEP_KEYS = {"function", "seed", "chunk_size", "out", "static"}
_DISTRIBUTIONS = {"uniform": uniform, "log_uniform": log_uniform, "choice": choice}


# Long on purpose: one check per key of the config file, each naming the key in its error.
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
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder; give a TOML file")
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
            design = random_design(n, seed=rseed, **dists)
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
    problem = setting_problem(value, default)
    if problem:
        raise fail(key, problem)


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
