"""sdn: state-dependent gradient noise in JAX.

Noise models (`sdn.noise`) are the shared core; SDEs and their integrators
(`sdn.SDE`, `sdn.simulate`, `sdn.first_exit_time`) and the optax transform
(`sdn.optim`) are built on them.
"""

from sdn import noise

__version__ = "0.1.0"

__all__ = ["noise"]
