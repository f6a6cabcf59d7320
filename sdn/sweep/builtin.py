"""The built-in sweeps: SGD's SDE on a quadratic basin, known by name to configs and the CLI.

`escape`: mean first exit time from a walled basin (docs/theory.md §4).
`stationary`: quantiles of the (near-)stationary law (docs/theory.md §3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from sdn.sweep.functions import SweepFunction

Array = jax.Array

__all__ = ["BUILTIN", "escape", "stationary"]


def _sgd_on_quadratic(p: Mapping[str, Any]):
    """The SGD SDE on `L = h x²/2` with PLD (`σ_g + σ_H x²`) or Langevin (`σ_g`) noise."""
    from sdn import noise
    from sdn.engine import sgd_sde

    h = p["curvature"]
    if p["noise"] == "pld":
        model = noise.power_law(p["sigma_g"], p["sigma_h"])
    else:
        model = noise.isotropic(p["sigma_g"])
    return sgd_sde(jax.tree_util.Partial(_scaled, h), model, p["learning_rate"], p["batch_size"])


def _scaled(h, w):
    return h * w


_SDE_DEFAULTS = {
    "noise": "pld",
    "solver": "euler_maruyama",
    "learning_rate": 0.1,
    "batch_size": 1,
    "curvature": 1.0,
    "sigma_g": 1.0,
    "sigma_h": 2.0,
}
_SDE_CHOICES = {"noise": ("pld", "langevin"), "solver": ("euler_maruyama", "milstein", "heun")}


def _exit_statistics(time: Array, status: Array) -> dict[str, Array]:
    """Mean exit time over exited paths, its standard error and the counts (last axis)."""
    from sdn.engine import DIVERGED, EXITED, INSIDE

    exited = status == EXITED
    n = jnp.sum(exited, axis=-1)
    t = jnp.where(exited, time, 0.0)
    mean = jnp.sum(t, axis=-1) / jnp.maximum(n, 1)
    dev = jnp.where(exited, jnp.square(time - mean[..., None]), 0.0)
    var = jnp.sum(dev, axis=-1) / jnp.maximum(n - 1, 1)
    return {
        "mean_time": jnp.where(n > 0, mean, jnp.nan),
        "sem": jnp.where(n > 1, jnp.sqrt(var / jnp.maximum(n, 1)), jnp.nan),
        "exited": n,
        "inside": jnp.sum(status == INSIDE, axis=-1),
        "diverged": jnp.sum(status == DIVERGED, axis=-1),
    }


def _escape(key, p, *, n_paths: int, dt: float, max_steps: int, bridge: bool, increments: str):
    from sdn import domains
    from sdn.engine import first_exit_time

    sde = _sgd_on_quadratic(p)
    wall = jnp.asarray(p["wall"], jnp.result_type(float))
    r = first_exit_time(
        key,
        sde,
        jnp.zeros((), wall.dtype) + p["x0"],
        domains.interval(-wall, wall),
        dt=dt,
        n_steps=max_steps,
        n_paths=n_paths,
        solver=p["solver"],
        boundary_correction=bridge,
        increments=increments,
    )
    return _exit_statistics(r.time, r.status)


def _escape_batched(
    keys, p, *, n_paths: int, dt: float, max_steps: int, bridge: bool, increments: str
):
    """`_escape` for a chunk of points as one ensemble of `P × n_paths` paths."""
    from sdn import domains
    from sdn.engine import first_exit_time_per_path

    n_points = keys.shape[0]
    numeric = {
        k: jnp.broadcast_to(jnp.asarray(v), (n_points,))
        for k, v in p.items()
        if not isinstance(v, str | bool)
    }
    static = {k: v for k, v in p.items() if isinstance(v, str | bool)}

    def one(q):
        q = {**q, **static}
        wall = jnp.asarray(q["wall"], jnp.result_type(float))
        return _sgd_on_quadratic(q), domains.Box(-wall, wall), jnp.zeros((), wall.dtype) + q["x0"]

    sde, box, w0 = jax.vmap(one)(numeric)
    sde, box, w0 = jax.tree.map(lambda a: jnp.repeat(a, n_paths, axis=0), (sde, box, w0))
    # Path j of point i keeps the key it has in `_escape`: fold_in(key_i, j).
    path_keys = jax.vmap(
        lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(jnp.arange(n_paths))
    )(keys).reshape(-1)
    r = first_exit_time_per_path(
        path_keys,
        sde,
        w0,
        box,
        dt=dt,
        n_steps=max_steps,
        solver=p["solver"],
        boundary_correction=bridge,
        increments=increments,
    )
    shape = (n_points, n_paths)
    return _exit_statistics(r.time.reshape(shape), r.status.reshape(shape))


escape = SweepFunction(
    fn=_escape,
    defaults={**_SDE_DEFAULTS, "wall": 1.0, "x0": 0.0},
    choices=_SDE_CHOICES,
    settings={
        "n_paths": 256,
        "dt": 0.01,
        "max_steps": 100_000,
        "bridge": True,
        "increments": "gaussian",
    },
    doc="mean first exit time of SGD's SDE from (−wall, wall) on L = h x²/2 (docs/theory.md §4)",
    batched=_escape_batched,
)
"""Built-in sweep: escape from a walled quadratic basin.

Statistics: `mean_time` (over exited paths; a lower bound when `inside > 0`), `sem`,
and the counts `exited`, `inside` (still inside at `max_steps`), `diverged`. The setting
`increments="two_point"` runs the engine's weak mode (right in law to `O(dt)`, several times
faster; see `sdn.simulate`).
"""


def _stationary(
    key, p, *, n_paths: int, dt: float, n_steps: int, quantiles: tuple, increments: str
):
    from sdn.engine import simulate

    x = simulate(
        key,
        _sgd_on_quadratic(p),
        p["x0"] * 1.0,
        dt=dt,
        n_steps=n_steps,
        n_paths=n_paths,
        solver=p["solver"],
        increments=increments,
    )
    q = jnp.quantile(x, jnp.asarray(quantiles, x.dtype))
    out = {f"q{prob:g}": q[i] for i, prob in enumerate(quantiles)}
    out["median_abs"] = jnp.median(jnp.abs(x))
    out["finite"] = jnp.sum(jnp.isfinite(x))
    return out


stationary = SweepFunction(
    fn=_stationary,
    defaults={**_SDE_DEFAULTS, "x0": 0.0},
    choices=_SDE_CHOICES,
    settings={
        "n_paths": 4096,
        "dt": 0.01,
        "n_steps": 2000,
        "quantiles": (0.5, 0.9, 0.99, 0.999),
        "increments": "gaussian",
    },
    doc="quantiles of x = w − w* after n_steps of SGD's SDE on L = h x²/2 (docs/theory.md §3)",
)
"""Built-in sweep: the (near-)stationary law of SGD's SDE on a quadratic.

Statistics: quantiles `q<p>` of `x` at the probabilities of the `quantiles` setting,
`median_abs` and `finite` (paths with a finite end state). PLD's law is a Student-t whose
variance may not exist (ν ≤ 2), so quantiles are reported, not moments.
"""

BUILTIN: dict[str, SweepFunction] = {"escape": escape, "stationary": stationary}
"""Sweep functions known by name to configs and to the command line."""
