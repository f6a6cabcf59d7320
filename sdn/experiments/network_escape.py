"""Escape from sharp and flat minima of a real network (docs/theory.md §6.5).

From a minimum `w*` several noisy dynamics are run with the same learning rate `η`, all
on flat parameter vectors and vmapped over independent chains:

* ``sgd``: real minibatch SGD at batch size `b` (with replacement);
* ``power_law``: full-batch GD plus Gaussian noise of the *fitted* state-dependent
  model, per coordinate `C_jj(w) = σ_g,j + σ_H,j (w_j − w*_j)²`, divided by `b`;
* ``langevin``: GD plus isotropic constant noise with the trace of `C(w*)/b`;
* ``anisotropic``: GD plus constant noise with the gradient covariance `C(w*)/b` itself
  (Zhu et al. 2019), drawn as `Gᵀz/√(m b)` from `m` centred per-sample gradients `G`;
* ``alpha_stable``: GD plus symmetric α-stable noise, coordinate `j` of scale
  `sqrt(C_jj(w*)/(2b))` (the Gaussian of the same variance at `α = 2`).

Each chain records `L(w_t) − L(w*)` every `record_every` steps. The mean of that over
chains is Zhu et al.'s *escaping efficiency*; the *escape time* of a chain is the first
recorded step at which the loss has risen by more than `ΔL` (chains that never do are
censored at the last step and counted).

The prediction comes from the one-dimensional theory along the top Hessian eigenvector
`v` with eigenvalue `h`: the per-sample variance of `v·∇ℓ_i` at `w* + t v` is fitted by
`σ_g + 2σ_gH t + σ_H t²` (`sdn.train.power_law_fit`), and a loss rise `ΔL` is reached at
`|t| = x_b = sqrt(2ΔL/h)`. `sdn.theory.mean_first_passage_time` gives the mean exit time of
`dx = −h x dt + sqrt(η C(x)/b) dB` from `(−x_b, x_b)` with `C = σ_g + σ_H x²` (the power
law as the dynamics use it, cross term `σ_gH` dropped) and with `C = σ_g` (Langevin,
Kramers' setting). Exits are only seen at recorded steps, so the walls
are moved out by `0.5826 σ(x_b) sqrt(η · record_every)` (the discrete-monitoring shift of
Broadie, Glasserman and Kou 1997), which keeps the prediction right to `O(η)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sdn import theory
from sdn.train import noise_along, power_law_fit, top_hessian_eigenvalue

Array = jax.Array

DYNAMICS = ("sgd", "power_law", "langevin", "anisotropic", "alpha_stable")
MONITOR_SHIFT = 0.5826  # −ζ(1/2)/√(2π): the overshoot of a Gaussian random walk


class Basin(NamedTuple):
    """A minimum `w*` and what the dynamics need of its problem, on flat vectors.

    Attributes:
      w_star: `(P,)` the minimum.
      loss: ``w -> L(w)``, the full training loss (regulariser included).
      sample_grad: ``(w, datum) -> (P,)``, one sample's gradient (regulariser included,
        so the sample gradients average to `∇L`); `sample_loss` likewise.
      data: the samples, a pytree with leading axis `n`.
    """

    w_star: Array
    loss: Callable[[Array], Array]
    sample_grad: Callable[[Array, Any], Array]
    sample_loss: Callable[[Array, Any], Array]
    data: Any

    @property
    def n(self) -> int:
        return int(jax.tree.leaves(self.data)[0].shape[0])


def basin_from_finite_sum(problem: Any, w_star: Array | None = None) -> Basin:
    """A `Basin` of a finite-sum problem of `sdn.landscapes` (its `minimum` by default)."""
    w = jnp.ravel(problem.minimum if w_star is None else w_star)
    shape = jnp.shape(problem.minimum)

    def sample_loss(w, datum):
        return problem.sample_loss(jnp.reshape(w, shape), datum)

    def loss(w):
        return problem.loss(jnp.reshape(w, shape))

    return Basin(w, loss, jax.grad(sample_loss), sample_loss, problem.data)


def basin_from_network(
    apply: Callable, params: Any, x: Array, y: Array, *, weight_decay: float = 0.0
) -> Basin:
    """A `Basin` of a classifier ``apply(params, x) -> logits`` at `params`, with the
    cross-entropy per sample plus `weight_decay ‖w‖²/2`."""
    flat, unravel = ravel_pytree(params)

    def sample_loss(w, datum):
        xi, yi = datum
        logits = apply(unravel(w), xi[None])[0]
        ce = jax.nn.logsumexp(logits) - logits[yi]
        return ce + 0.5 * weight_decay * jnp.sum(w * w)

    def loss(w):
        return jnp.mean(jax.vmap(sample_loss, (None, 0))(w, (x, y)))

    return Basin(flat, loss, jax.grad(sample_loss), sample_loss, (x, y))


# ---------------------------------------------------------------------------------------
# What is measured at the minimum
# ---------------------------------------------------------------------------------------


class BasinNoise(NamedTuple):
    """The noise of a basin at its minimum and the 1-D theory along its top eigenvector.

    Attributes:
      curvature: `h`, the top Hessian eigenvalue; `direction` its unit eigenvector.
      sigma_g, sigma_gh, sigma_h: `Var_i(v·∇ℓ_i)` at `w*` and the quadratic fit of its
        rise along `v`; `stderr` and `r2_quadratic` are those of the unconstrained
        quadratic fit (`sdn.train.power_law_fit`), for judging the profile's shape.
      coord_sigma_g, coord_sigma_h: `(P,)` the fitted per-coordinate power law.
      centred_grads: `(m, P)` centred per-sample gradients at `w*` (the anisotropic noise).
      loss_star: `L(w*)`.
    """

    curvature: float
    direction: Array
    sigma_g: float
    sigma_gh: float
    sigma_h: float
    stderr: tuple[float, float, float]
    r2_quadratic: float
    coord_sigma_g: Array
    coord_sigma_h: Array
    centred_grads: Array
    loss_star: float


def measure_basin(
    basin: Basin,
    key: Array,
    *,
    n_reference: int = 512,
    n_t: int = 9,  # odd, so that t = 0 is on the grid
    loss_rise: float = 0.05,
    power_iters: int = 100,
) -> BasinNoise:
    """Measure `h`, `v`, the power law along `v` and per coordinate, and `C(w*)`'s factor.

    The per-coordinate fit regresses each `C_jj(w* + t v)` on `t² v_j²` over the same grid
    (`C_jj ≈ σ_g,j + σ_H,j x_j²` along the path `x = t v`); coordinates the grid barely
    moves keep `σ_H,j = 0`. The grid reaches the loss rise `loss_rise` of the quadratic
    model, `|t| ≤ sqrt(2 loss_rise / h)`.
    """
    if n_t < 3 or n_t % 2 == 0:
        raise ValueError(f"n_t must be odd and >= 3 (t = 0 on the grid), got {n_t}")
    k_eig, k_ref = jax.random.split(key)
    eig = jax.jit(lambda w, k: top_hessian_eigenvalue(basin.loss, w, k, num_iters=power_iters))(
        basin.w_star, k_eig
    )
    h = float(eig.value)
    v = eig.vector
    t_max = math.sqrt(2 * loss_rise / max(h, 1e-12))
    ts = np.linspace(-t_max, t_max, n_t)
    prof = noise_along(basin.sample_loss, basin.w_star, basin.data, v, ts, per_coordinate=True)
    fit = power_law_fit(prof.t, prof.directional)
    # σ_g is the variance at w* itself (t = 0 is on the grid); σ_gH and σ_H by least
    # squares of the rise above it, so curvature of the profile far out cannot push the
    # intercept below zero
    sigma_g = float(prof.directional[n_t // 2])
    design = np.stack([2 * prof.t, prof.t**2], axis=1)
    (sigma_gh, sigma_h), *_ = np.linalg.lstsq(design, prof.directional - sigma_g, rcond=None)
    c = np.asarray(prof.per_coordinate, np.float64)  # (T, P)
    u = (prof.t[:, None] * np.asarray(v)[None, :]) ** 2  # (T, P)
    u_c = u - u.mean(axis=0)
    denom = np.sum(u_c**2, axis=0)
    slope = np.where(
        denom > 1e-30, np.sum(u_c * (c - c.mean(axis=0)), axis=0) / np.maximum(denom, 1e-30), 0.0
    )
    coord_sigma_h = np.maximum(slope, 0.0)
    coord_sigma_g = np.maximum(c[n_t // 2], 0.0)  # the variance at t = 0, w*

    n = basin.n
    idx = jax.random.choice(k_ref, n, (min(n_reference, n),), replace=False)
    sub = jax.tree.map(lambda a: a[idx], basin.data)
    g = jax.lax.map(lambda d: basin.sample_grad(basin.w_star, d), sub, batch_size=64)
    return BasinNoise(
        curvature=h,
        direction=v,
        sigma_g=sigma_g,
        sigma_gh=float(sigma_gh),
        sigma_h=float(sigma_h),
        stderr=fit.stderr,
        r2_quadratic=fit.r_squared["quadratic"],
        coord_sigma_g=jnp.asarray(coord_sigma_g, jnp.float32),
        coord_sigma_h=jnp.asarray(coord_sigma_h, jnp.float32),
        centred_grads=g - g.mean(axis=0),
        loss_star=float(basin.loss(basin.w_star)),
    )


class Prediction(NamedTuple):
    """Mean escape steps of the 1-D power-law and Langevin dynamics along `v`."""

    power_law: float
    langevin: float
    wall: float


def predicted_escape_steps(
    noise: BasinNoise,
    *,
    barrier: float,
    learning_rate: float,
    batch_size: int,
    record_every: int = 1,
) -> Prediction:
    """Exact mean escape steps along `v` (quadrature), corrected for discrete steps.

    `x_b = sqrt(2 barrier / h)`; for each dynamic `σ²(x) = (η/b) C(x)`, times `2/(2 − ηh)`
    (the stationary variance of GD's chain `x ← (1 − ηh) x + noise` over the SDE's), and
    the walls move out by `0.5826 σ(±x_b) sqrt(η · record_every)` for the exits missed
    between records; the time `T` becomes `T/η` steps.
    """
    h, eta, b = noise.curvature, learning_rate, batch_size
    xb = math.sqrt(2 * barrier / h)
    dt = eta * record_every
    sg, sh = noise.sigma_g, max(noise.sigma_h, 0.0)

    # GD's discrete drift (1 − ηh) inflates the stationary variance by 2/(2 − ηh) over
    # the SDE's; carry that factor into the diffusion so the prediction is the chain's
    inflation = 2.0 / (2.0 - min(eta * h, 1.0))

    def steps(c):
        def sig2(x):
            return inflation * eta / b * c(x)

        lo = -xb - MONITOR_SHIFT * math.sqrt(float(sig2(-xb)) * dt)
        hi = xb + MONITOR_SHIFT * math.sqrt(float(sig2(xb)) * dt)
        t = theory.mean_first_passage_time(lambda x: -h * x, sig2, 0.0, lo, hi)
        return float(t) / eta

    pld = steps(lambda x: sg + sh * x * x)
    lan = steps(lambda x: sg + 0.0 * x)
    return Prediction(pld, lan, xb)


# ---------------------------------------------------------------------------------------
# The dynamics
# ---------------------------------------------------------------------------------------


def _noise_fn(name: str, noise: BasinNoise, w_star: Array, b: int, alpha: float):
    """``(key, w) -> ζ``, the noise added to the full gradient for one step."""
    sg, sh = noise.coord_sigma_g, noise.coord_sigma_h
    if name == "power_law":
        return lambda k, w: (
            jnp.sqrt((sg + sh * (w - w_star) ** 2) / b) * jax.random.normal(k, w.shape, w.dtype)
        )
    if name == "langevin":
        sd = jnp.sqrt(jnp.sum(sg) / (sg.size * b))
        return lambda k, w: sd * jax.random.normal(k, w.shape, w.dtype)
    if name == "anisotropic":
        g = noise.centred_grads
        m = g.shape[0]
        return lambda k, w: g.T @ jax.random.normal(k, (m,), w.dtype) / jnp.sqrt(m * b)
    if name == "alpha_stable":
        scale = jnp.sqrt(sg / (2 * b))
        from sdn import noise as noise_models

        model = noise_models.alpha_stable(alpha, 1.0)
        return lambda k, w: scale * model.increments(k, w, 1.0, 1)[0]
    raise ValueError(f"dynamics must be one of {DYNAMICS}, got {name!r}")


def run_dynamics(
    basin: Basin,
    noise: BasinNoise,
    name: str,
    key: Array,
    *,
    learning_rate: float,
    batch_size: int,
    n_chains: int,
    n_steps: int,
    record_every: int = 1,
    alpha: float = 1.5,
) -> np.ndarray:
    """`L(w_t) − L(w*)` every `record_every` steps: `(n_chains, n_steps // record_every)`."""
    eta, b, n = learning_rate, batch_size, basin.n
    w_star = basin.w_star
    grad = jax.grad(basin.loss)
    if name == "sgd":

        def step(w, k):
            idx = jax.random.randint(k, (b,), 0, n)
            batch = jax.tree.map(lambda a: a[idx], basin.data)
            g = jnp.mean(jax.vmap(basin.sample_grad, (None, 0))(w, batch), axis=0)
            return w - eta * g

    else:
        add = _noise_fn(name, noise, w_star, b, alpha)

        def step(w, k):
            return w - eta * (grad(w) + add(k, w))

    n_records = n_steps // record_every

    def chain(k):
        def record(w, kk):
            w = jax.lax.fori_loop(
                0, record_every, lambda i, w: step(w, jax.random.fold_in(kk, i)), w
            )
            return w, basin.loss(w) - noise.loss_star

        _, rise = jax.lax.scan(record, w_star, jax.random.split(k, n_records))
        return rise

    run = jax.jit(lambda keys: jax.lax.map(chain, keys, batch_size=min(n_chains, 256)))
    return np.asarray(run(jax.random.split(key, n_chains)))


class EscapeStats(NamedTuple):
    """First-passage statistics of a set of chains (steps)."""

    mean: float
    stderr: float
    escaped: float  # fraction of chains that escaped within the run
    censored: bool


def escape_times(rise: np.ndarray, barrier: float, record_every: int = 1) -> np.ndarray:
    """First step at which `L − L*` exceeds `barrier`, per chain; censored chains get the
    run's length."""
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
