"""What the drivers return: `Trajectory`, `ExitResult` and the exit statuses by name."""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

import jax
import numpy as np

Array = jax.Array


class ExitStatus(enum.IntEnum):
    """How a first-exit path ended (stored as these integers in `ExitResult.status`).

    `EXITED` (0): left the domain. `INSIDE` (1): still inside after `n_steps` steps.
    `DIVERGED` (2): its state became non-finite.
    """

    EXITED = 0
    INSIDE = 1
    DIVERGED = 2


EXITED, INSIDE, DIVERGED = ExitStatus.EXITED, ExitStatus.INSIDE, ExitStatus.DIVERGED
RUNNING = 3
"""The status of a path not yet finished (never in a result)."""


class Trajectory(NamedTuple):
    """Saved states (or observables) of an ensemble.

    Attributes:
      time: `(n_saves,)` times `t0 + k · save_every · dt`, starting with `t0`.
      value: `(n_paths, n_saves, *shape)` the saved states or `observe(state)`.
    """

    time: Array
    value: Array


class ExitResult(NamedTuple):
    """First exits of an ensemble from a domain.

    Attributes:
      time: `(n_paths,)` exit times (`t0 + n_steps · dt` for paths still inside).
      position: `(n_paths, *shape)` the first state found outside (the last finite
        state for diverged paths, the final state for paths still inside).
      status: `(n_paths,)` an `ExitStatus` per path, as `int8`: `EXITED`, `INSIDE` or
        `DIVERGED`.
      steps: `(n_paths,)` steps taken.
    """

    time: Array
    position: Array
    status: Array
    steps: Array

    def summary(self) -> dict[str, float]:
        """Counts per status and the mean exit time with its standard error.

        Only exited paths enter the mean; if some paths are still inside, the mean is a
        lower bound, and `inside > 0` says so.
        """
        status = np.asarray(self.status)
        times = np.asarray(self.time, dtype=np.float64)[status == EXITED]
        n = times.size
        return {
            "exited": int(n),
            "inside": int(np.sum(status == INSIDE)),
            "diverged": int(np.sum(status == DIVERGED)),
            "mean_time": float(times.mean()) if n else math.nan,
            "sem": float(times.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        }
