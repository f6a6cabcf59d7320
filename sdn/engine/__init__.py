"""The engine: many paths of an SDE, many steps, many devices.

- `sde`: `SDE` and `sgd_sde`, the equations.
- `solvers`: `EulerMaruyama`, `Milstein`, `Heun`, `SGD`, one step of one path each.
- `domains`: `interval`, `box`, `from_function`, for first exits.
- `config`: `EngineConfig`, every setting chosen for speed.
- `blocks`: one block of steps of one path (its increments drawn through `sdn.noise`).
- `sharding`: chunks, the device mesh, the static/dynamic split of inputs.
- `simulate`: `simulate` and `simulate_trajectory`.
- `exits`: `first_exit_time`, `first_exit_time_per_path`; `lanes`, their scheduler.
- `results`: `Trajectory`, `ExitResult`, `ExitStatus`.
- `inputs`: the drivers' argument checks, with errors that name the argument.
"""

from sdn.engine import domains, solvers
from sdn.engine.config import EngineConfig
from sdn.engine.exits import first_exit_time, first_exit_time_per_path
from sdn.engine.results import DIVERGED, EXITED, INSIDE, ExitResult, ExitStatus, Trajectory
from sdn.engine.sde import SDE, sgd_sde
from sdn.engine.simulate import simulate, simulate_trajectory

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
    "first_exit_time",
    "first_exit_time_per_path",
    "sgd_sde",
    "simulate",
    "simulate_trajectory",
    "solvers",
]
