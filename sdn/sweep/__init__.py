"""Parameter sweeps at scale: designs, a chunked sharded runner, resumable tidy results.

A sweep is a function `f(key, params) -> {statistic: value}` that maps one point of
parameter space to scalar statistics, plus a design over named parameters:
`grid(**axes)` (the Cartesian product) or `random_design(n, **distributions)`.

The parts, bottom to top:

- `designs`: `grid`, `random_design` and its distributions (`uniform`, `log_uniform`,
  `choice`).
- `functions`: `SweepFunction`, a sweep function with declared parameters and settings;
  `builtin`: the built-in ones, `escape` and `stationary`.
- `program`: one chunk of points as one jitted, vmapped program whose point axis is
  sharded over all devices (a `Mesh` over points, chunks padded to a multiple of the
  device count). `sdn.simulate` and `sdn.first_exit_time` notice that they are traced
  and run as pure code, so a sweep function may call them with traced parameters.
- `identity`, `lock`, `chunks`, `storage`: the results folder. A folder holds one sweep
  (its identity: the function's code and bound values, the design, the seed and the
  `sdn` version, or a name the user gives), is written by one run at a time (a lock
  file), and holds every row once whatever moment a run was killed at. Every chunk
  file's name carries a SHA-256 of its bytes bound to the identity; a chunk that fails
  it on resume (cut short, edited, another sweep's) is moved into `quarantine/` with a
  `DamagedChunkWarning` and its points run again.
- `runner`: `run`, which ties them together; `results`: `SweepResult`, the table.
- `configs`: `load_config`, a sweep from a TOML file (`sdn sweep CONFIG.toml`).

How the runner works, and why:

- Static choices (string or bool parameters, such as a solver or a noise family, and
  any name passed in `static=`) split the points into groups; each group is compiled
  once and its static values reach `f` as Python values.
- Point `i` gets the key `fold_in(key, i)`, so results do not depend on the chunk size,
  the number of devices or on resuming.
- With `out=DIR` every chunk's rows are written to `DIR/chunks/` atomically, next to a
  JSON manifest (the sweep's identity, package versions, devices). Rerunning the same
  sweep into the same folder skips the points already written and gives the same final
  `DIR/results.csv` as an uninterrupted run; a different sweep in the same folder is
  refused with a message that says what differs.
- Memory is bounded by the chunk size (points per chunk × what `f` holds per point).

Several hosts: call `jax.distributed.initialize()` in every process first, then run the
same sweep in all of them. `jax.devices()` is then the global device list, each chunk is
sharded over every device of every host, results are gathered, and process 0 alone
locks, reads and writes `out` (the list of finished points is broadcast from it). The
tests run this with two processes on one machine (CPU devices need
``jax.config.update("jax_cpu_collectives_implementation", "gloo")`` before
``jax.distributed.initialize``); the table equals a one-process run's, except that
there each point's paths run on their own rather than batched with the chunk's other
points, so the float32 sums of `sem` may differ in the last digit.

The results are a tidy table: one row per point and statistic, with the columns
`point`, the parameters, `statistic` and `value`.
"""

from sdn.sweep.builtin import BUILTIN, escape, stationary
from sdn.sweep.chunks import DamagedChunkWarning
from sdn.sweep.configs import ConfigError, SweepConfig, load_config
from sdn.sweep.designs import (
    Design,
    Distribution,
    choice,
    grid,
    log_uniform,
    random_design,
    uniform,
)
from sdn.sweep.functions import SweepFunction
from sdn.sweep.identity import UnidentifiableFunction
from sdn.sweep.lock import FolderLocked
from sdn.sweep.results import SweepResult
from sdn.sweep.runner import SweepInterrupted, run
from sdn.sweep.storage import FolderError

__all__ = [
    "BUILTIN",
    "ConfigError",
    "DamagedChunkWarning",
    "Design",
    "Distribution",
    "FolderError",
    "FolderLocked",
    "SweepConfig",
    "SweepFunction",
    "SweepInterrupted",
    "SweepResult",
    "UnidentifiableFunction",
    "choice",
    "escape",
    "grid",
    "load_config",
    "log_uniform",
    "random_design",
    "run",
    "stationary",
    "uniform",
]


def __getattr__(name: str):
    if name == "random":
        raise AttributeError(
            "sdn.sweep.random was renamed sdn.sweep.random_design (so that "
            "`from sdn.sweep import *` does not hide the standard library's random)"
        )
    raise AttributeError(f"module 'sdn.sweep' has no attribute {name!r}")
