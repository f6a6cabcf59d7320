"""sdn: state-dependent gradient noise in JAX.

Noise models (`sdn.noise`) are the shared core; SDEs and their integrators
(`sdn.SDE`, `sdn.sgd_sde`, `sdn.simulate`, `sdn.first_exit_time`) and the optax
transform (`sdn.optim`) are built on them. Theory (`sdn.theory`), statistics
(`sdn.stats`) and landscapes (`sdn.landscapes`) are pure math; `sdn.train`,
`sdn.experiments`, `sdn.sweep` and `sdn.report` sit on top and are imported on first use.
"""

import importlib

from sdn import domains, engine, landscapes, noise, solvers, stats, theory
from sdn.engine import (
    DIVERGED,
    EXITED,
    INSIDE,
    SDE,
    EngineConfig,
    ExitResult,
    ExitStatus,
    Trajectory,
    first_exit_time,
    first_exit_time_per_path,
    sgd_sde,
    simulate,
    simulate_trajectory,
)

__version__ = "1.0.0"

_LAZY = ("optim", "train", "experiments", "sweep", "report")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"sdn.{name}")
    raise AttributeError(f"module 'sdn' has no attribute {name!r}")


__all__ = [
    "DIVERGED",
    "EXITED",
    "INSIDE",
    "SDE",
    "EngineConfig",
    "ExitResult",
    "ExitStatus",
    "Trajectory",
    "domains",
    "engine",
    "experiments",
    "first_exit_time",
    "first_exit_time_per_path",
    "landscapes",
    "noise",
    "optim",
    "report",
    "sgd_sde",
    "simulate",
    "simulate_trajectory",
    "solvers",
    "stats",
    "sweep",
    "theory",
    "train",
]
