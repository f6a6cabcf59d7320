"""Deprecated: the drivers moved to `sdn.engine` (`sdn.simulate`, `sdn.first_exit_time`, ...).

Every public name of the old module still resolves, with a `DeprecationWarning` naming
its new place; the old speed knobs (`BLOCK_STEPS`, `DEFAULT_CHUNK`, ...) are fields of
`sdn.EngineConfig` now and read from its defaults.
"""

from __future__ import annotations

import importlib

from sdn._deprecation import warn_deprecated

_MOVED = {
    "simulate": "sdn.engine.simulate",
    "Trajectory": "sdn.engine.results",
    "ExitResult": "sdn.engine.results",
    "EXITED": "sdn.engine.results",
    "INSIDE": "sdn.engine.results",
    "DIVERGED": "sdn.engine.results",
    "first_exit_time": "sdn.engine.exits",
    "first_exit_time_per_path": "sdn.engine.exits",
    "TWO_POINT_SHIFT": "sdn.engine.blocks",
    "SDE": "sdn.engine.sde",
    "INCREMENTS": "sdn.noise",
}
_KNOBS = {
    "BLOCK_STEPS": "block_steps",
    "TWO_POINT_WORDS": "two_point_words",
    "TWO_POINT_EXIT_WORDS": "two_point_exit_words",
    "DEFAULT_CHUNK": "chunk_size",
}


def __getattr__(name: str):
    if name in _MOVED:
        module = _MOVED[name]
        warn_deprecated(f"sdn.ensemble.{name}", f"{module}.{name}")
        return getattr(importlib.import_module(module), name)
    if name in _KNOBS:
        from sdn.engine.config import EngineConfig

        field = _KNOBS[name]
        warn_deprecated(f"sdn.ensemble.{name}", f"sdn.EngineConfig().{field}")
        return getattr(EngineConfig.for_backend("cpu"), field)
    if name == "ACCELERATOR_CHUNK":
        from sdn.engine.config import EngineConfig

        new = 'EngineConfig.for_backend("gpu").chunk_size'
        warn_deprecated("sdn.ensemble.ACCELERATOR_CHUNK", new)
        return EngineConfig.for_backend("gpu").chunk_size
    raise AttributeError(f"module 'sdn.ensemble' has no attribute {name!r}")
