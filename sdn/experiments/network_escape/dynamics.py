"""The noisy dynamics of §6.5, each an `sdn.sgd_sde` stepped by the engine's `sgd` solver.

Every dynamic is SGD's SDE `dw = −∇L dt + sqrt(η C(w)/b) dB` with `dt = η`, so that one
step of the `sgd` solver is `w − η (∇L(w) + ξ)`, `Cov ξ = C(w)/b`; only the noise model
differs (all from `sdn.noise`):

* ``sgd``: `noise.minibatch`, a real batch of `b` samples (with replacement) each step;
* ``anisotropic``: `noise.empirical` of the centred per-sample gradients at `w*`,
  `C = C(w*)` (Zhu et al. 2019);
* ``power_law``: the same plus the fitted rise along the top eigenvector `v`,
  `C(w) = C(w*) + σ_H (v·x)² vvᵀ` (`RiseAlong`, a `noise.power_law` on `t = v·x`);
* ``langevin``: `noise.isotropic` with the trace of `C(w*)`;
* ``alpha_stable``: `noise.alpha_stable`, coordinate `j` of SGD's jump `η ξ_j` with scale
  `η sqrt(C_jj(w*)/(2b))` (the Gaussian of the same variance at `α = 2`);
* ``gaussian``: `noise.minibatch_gaussian`, a normal of the minibatch's covariance
  `C(w)/b` at the current state of the whole network: SGD with only the law of its noise
  swapped (docs/theory.md §6.7).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sdn import noise as noise_models
from sdn._checks import pytree_dataclass
from sdn._deprecation import key_first
from sdn.engine import SDE, sgd_sde, simulate, simulate_trajectory
from sdn.experiments.network_escape.basin import Basin
from sdn.experiments.network_escape.measure import BasinNoise
from sdn.noise import NoiseModel

Array = jax.Array

DYNAMICS = ("sgd", "power_law", "langevin", "anisotropic", "alpha_stable", "gaussian")


@pytree_dataclass
class RiseAlong(NoiseModel):
    """A noise model plus a one-dimensional one along a unit direction `v`.

    `ζ = base(w) + rise(t) v` with `t = v·(w − center)` and independent increments, so
    `C(w) = C_base(w) + C_rise(t) vvᵀ`. With `base = noise.empirical(G)` and
    `rise = noise.power_law(0, σ_H)` this is the power law fitted along `v` on top of the
    gradient covariance at the minimum. Gaussian increments only.
    """

    base: NoiseModel
    rise: NoiseModel
    direction: Array
    center: Array
    diagonal = False

    def _t(self, w: Array) -> Array:
        return jnp.dot(self.direction, w - self.center)

    def variance(self, w: Array) -> Array:
        return self.base.variance(w) + self.rise.variance(self._t(w)) * self.direction**2

    def covariance(self, w: Array) -> Array:
        v = self.direction
        return self.base.covariance(w) + self.rise.variance(self._t(w)) * jnp.outer(v, v)

    def standard(self, key: Array, w: Array, dt: Any = None, increments: str = "gaussian") -> Any:
        k_base, k_rise = jax.random.split(key)
        return (
            self.base.standard(k_base, w, dt, increments),
            self.rise.standard(k_rise, self._t(w), dt, increments),
        )

    def block(
        self, key: Array, w: Array, dt: Array | float, n: int, increments: str = "gaussian"
    ) -> Any:
        k_base, k_rise = jax.random.split(key)
        return (
            self.base.block(k_base, w, dt, n, increments),
            self.rise.block(k_rise, self._t(w), dt, n, increments),
        )

    def diffusion(self, w: Array, dw: Any) -> Array:
        base, rise = dw
        return self.base.diffusion(w, base) + self.rise.diffusion(self._t(w), rise) * self.direction

    def check_state(self, w: Array) -> None:
        self.base.check_state(w)


def noise_model(name: str, noise: BasinNoise, basin: Basin, *, batch_size: int, alpha: float):
    """The `sdn.noise` model of dynamic `name` at a measured basin (see the module doc)."""
    if name == "sgd":
        return noise_models.minibatch(basin.sample_grad, basin.data, batch_size)
    if name == "gaussian":
        return noise_models.minibatch_gaussian(basin.sample_grad, basin.data, batch_size)
    if name in ("anisotropic", "power_law"):
        # empirical's factors give the unbiased S = GᵀG/(m − 1); (m − 1)/m makes it the
        # per-sample covariance GᵀG/m, whose diagonal is `coord_sigma_g`
        m = noise.centred_grads.shape[0]
        model = noise_models.empirical(noise.centred_grads, alpha_g=(m - 1) / m)
        if name == "anisotropic":
            return model
        rise = noise_models.power_law(0.0, max(noise.sigma_h, 0.0))
        return RiseAlong(model, rise, noise.direction, basin.w_star)
    if name == "langevin":
        return noise_models.isotropic(jnp.mean(noise.coord_sigma_g))
    if name == "alpha_stable":
        # the SDE's noise term is (η/b)^(1 − 1/α) c dt^(1/α) S with dt = η: η b^(1/α − 1) c S,
        # which is η sqrt(C_jj/(2b)) S for c = sqrt(C_jj/2) b^(1/2 − 1/α)
        scale = jnp.sqrt(noise.coord_sigma_g / 2) * batch_size ** (0.5 - 1 / alpha)
        return noise_models.alpha_stable(alpha, jnp.maximum(scale, jnp.finfo(scale.dtype).tiny))
    raise ValueError(f"dynamics must be one of {DYNAMICS}, got {name!r}")


def escape_sde(
    basin: Basin,
    noise: BasinNoise,
    name: str,
    *,
    learning_rate: float,
    batch_size: int,
    alpha: float = 1.5,
) -> SDE:
    """SGD's SDE at a basin with the noise of dynamic `name`; step it with ``solver="sgd"``."""
    model = noise_model(name, noise, basin, batch_size=batch_size, alpha=alpha)
    return sgd_sde(jax.grad(basin.loss), model, learning_rate, batch_size)


class Chains(NamedTuple):
    """What `run_dynamics` returns: the loss rise and the displacement along the top
    eigenvector over time, and where each chain ended (or its score there)."""

    rise: np.ndarray  # (n_chains, n_records), L(w_t) − L(w*)
    along: np.ndarray  # (n_chains, n_records), v·(w_t − w*)
    final: np.ndarray | None  # (n_chains, P), w after the last step; None with `score`
    score: np.ndarray | None = None  # (n_chains,), score(w) after the last step


@key_first("run_dynamics", new="run_dynamics(key, basin, noise, name, ...)", old_position=3)
def run_dynamics(
    key: Array,
    basin: Basin,
    noise: BasinNoise,
    name: str,
    *,
    learning_rate: float,
    batch_size: int,
    n_chains: int,
    n_steps: int,
    record_every: int = 1,
    alpha: float = 1.5,
    score: Callable[[Array], Array] | None = None,
) -> Chains:
    """Run `n_chains` chains of one dynamic from `w*` for `n_steps` steps on `sdn.simulate`.

    Returns a `Chains`: `L(w_t) − L(w*)` and `v·(w_t − w*)` every `record_every` steps
    (the engine's `observe`), each `(n_chains, n_steps // record_every)`, and either the
    final states `(n_chains, P)` or, given `score` (a scalar function of the state, such
    as a test accuracy), its value after the last step `(n_chains,)`. The engine keeps
    either the observables or the states: the final states take a second run with the
    same key (the same paths), a `score` is observed with the others in one run.
    """
    sde = escape_sde(
        basin, noise, name, learning_rate=learning_rate, batch_size=batch_size, alpha=alpha
    )
    w_star, v, loss_star = basin.w_star, noise.direction, noise.loss_star

    def observe(w):
        seen = [basin.loss(w) - loss_star, jnp.dot(v, w - w_star)]
        if score is not None:
            seen.append(jnp.asarray(score(w), seen[0].dtype))
        return jnp.stack(seen)

    run = dict(dt=learning_rate, n_steps=n_steps, n_paths=n_chains, solver="sgd")
    saved = simulate_trajectory(key, sde, w_star, save_every=record_every, observe=observe, **run)
    records = np.asarray(saved.value[:, 1 : n_steps // record_every + 1])
    if score is not None:
        return Chains(records[..., 0], records[..., 1], None, records[:, -1, 2])
    final = simulate(key, sde, w_star, **run)
    return Chains(records[..., 0], records[..., 1], np.asarray(final))


class EscapeStats(NamedTuple):
    """First-passage statistics of a set of chains (steps)."""

    mean: float
    stderr: float
    escaped: float  # fraction of chains that escaped within the run
    censored: bool


def escape_times(
    rise: np.ndarray, barrier: float, record_every: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """First step at which `L − L*` exceeds `barrier`, per chain (censored chains get the
    run's length), and whether each chain escaped."""
    above = rise > barrier
    first = np.where(above.any(axis=1), above.argmax(axis=1) + 1, rise.shape[1])
    return first * record_every, above.any(axis=1)


def escape_stats(rise: np.ndarray, barrier: float, record_every: int = 1) -> EscapeStats:
    t, escaped = escape_times(rise, barrier, record_every)
    return EscapeStats(
        float(t.mean()),
        float(t.std(ddof=1) / math.sqrt(t.size)),
        float(escaped.mean()),
        bool(not escaped.all()),
    )
