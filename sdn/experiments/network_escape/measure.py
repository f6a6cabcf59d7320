"""What §6.5 measures at a minimum, and the one-dimensional prediction along `v`."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sdn import theory
from sdn._deprecation import key_first
from sdn.experiments.network_escape.basin import Basin
from sdn.train import noise_along, power_law_fit, top_hessian_eigenvalue

Array = jax.Array

MONITOR_SHIFT = 0.5826  # −ζ(1/2)/√(2π): the overshoot of a Gaussian random walk


class BasinNoise(NamedTuple):
    """The noise of a basin at its minimum and the 1-D theory along its top eigenvector.

    Attributes:
      curvature: `h`, the top Hessian eigenvalue; `direction` its unit eigenvector.
      sigma_g: `Var_i(v·∇ℓ_i)` at `w*`, measured.
      sigma_gh, sigma_h: the rise along `v`, from the quadratic `σ_g + 2σ_gH t + σ_H t²`
        fitted to `Var_i(v·∇ℓ_i)` at `w* + t v` by `sdn.train.power_law_fit`; `stderr`
        and `r2_quadratic` are that fit's, for judging the profile's shape.
      coord_sigma_g: `(P,)` the diagonal of `C(w*)`, the per-sample gradient variances.
      centred_grads: `(m, P)` centred per-sample gradients at `w*`, so that
        `C(w*) = GᵀG/m` (the anisotropic noise is `sdn.noise.empirical` of them).
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
    centred_grads: Array
    loss_star: float


@key_first("measure_basin", new="measure_basin(key, basin, ...)", old_position=1)
def measure_basin(
    key: Array,
    basin: Basin,
    *,
    n_reference: int = 512,
    n_t: int = 9,  # odd, so that t = 0 is on the grid
    loss_rise: float = 0.05,
    power_iters: int = 100,
) -> BasinNoise:
    """Measure `h`, `v`, the power law `σ_g + 2σ_gH t + σ_H t²` of `Var_i(v·∇ℓ_i)` along
    `v`, and `C(w*)` through `m = min(n_reference, n)` centred per-sample gradients.

    The profile's grid reaches the loss rise `loss_rise` of the quadratic model,
    `|t| ≤ sqrt(2 loss_rise / h)`.
    """
    if n_t < 3 or n_t % 2 == 0:
        raise ValueError(f"n_t must be odd and >= 3 (t = 0 on the grid), got {n_t}")
    k_eig, k_ref = jax.random.split(key)
    eig = jax.jit(lambda w, k: top_hessian_eigenvalue(k, basin.loss, w, num_iters=power_iters))(
        basin.w_star, k_eig
    )
    h = float(eig.value)
    v = eig.vector
    t_max = math.sqrt(2 * loss_rise / max(h, 1e-12))
    ts = np.linspace(-t_max, t_max, n_t)
    prof = noise_along(basin.sample_loss, basin.w_star, basin.data, v, ts)
    fit = power_law_fit(prof.t, prof.directional)
    # σ_g is the variance measured at w* itself (t = 0 is on the grid), not the fit's
    # intercept: the anisotropic and Langevin dynamics carry C(w*) exactly, and the
    # profile is not exactly quadratic, so the intercept can be off by tens of percent
    sigma_g = float(prof.directional[n_t // 2])
    n = basin.n
    idx = jax.random.choice(k_ref, n, (min(n_reference, n),), replace=False)
    sub = jax.tree.map(lambda a: a[idx], basin.data)
    g = jax.lax.map(lambda d: basin.sample_grad(basin.w_star, d), sub, batch_size=64)
    g = g - g.mean(axis=0)
    return BasinNoise(
        curvature=h,
        direction=v,
        sigma_g=sigma_g,
        sigma_gh=fit.sigma_gh,
        sigma_h=fit.sigma_h,
        stderr=fit.stderr,
        r2_quadratic=fit.r_squared["quadratic"],
        coord_sigma_g=jnp.mean(g * g, axis=0),
        centred_grads=g,
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
        t = theory.mean_first_passage_time(
            lambda x: -h * x, sig2, 0.0, lo, hi, n_grid=8193, rtol=1e-3
        )
        return float(t) / eta

    pld = steps(lambda x: sg + sh * x * x)
    lan = steps(lambda x: sg + 0.0 * x)
    return Prediction(pld, lan, xb)
