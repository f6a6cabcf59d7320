"""sdn: state-dependent gradient noise in JAX.

Noise models (`sdn.noise`) are the shared core; SDEs and their integrators
(`sdn.SDE`, `sdn.sgd_sde`, `sdn.simulate`, `sdn.first_exit_time`) and the optax
transform (`sdn.optim`) are built on them.
"""

from sdn import domains, noise, solvers
from sdn.ensemble import DIVERGED, EXITED, INSIDE, ExitResult, Trajectory, first_exit_time, simulate
from sdn.sde import SDE, sgd_sde

__version__ = "0.1.0"

__all__ = [
    "DIVERGED",
    "EXITED",
    "INSIDE",
    "SDE",
    "ExitResult",
    "Trajectory",
    "domains",
    "first_exit_time",
    "noise",
    "sgd_sde",
    "simulate",
    "solvers",
]
