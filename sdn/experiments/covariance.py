"""Is the gradient-noise covariance quadratic near a minimum? (docs/theory.md §1, §6.1)

Train a ReLU MLP on scikit-learn's digits close to a minimum `w*`, then along random
unit directions and the top Hessian eigenvector `v` measure, on a grid of `t`, the
per-sample gradient variance at `w* + t v`: along `v` (`vᵀ C v`) and in total
(`tr C`), both from the per-sample backprop signals of one backward pass per `t`
(`sdn.train.network_noise_along`). Fit constant, linear and quadratic models and
report the fits and R², beside the quadratic that the second-order expansion at `w*` predicts
(`σ_g = Var(∂_v ℓ_i)`, `σ_gH = Cov(∂_v ℓ_i, ∂²_v ℓ_i)`, `σ_H = Var(∂²_v ℓ_i)`).

Each direction is probed out to the same predicted loss rise, `t_max = sqrt(2 ΔL / vᵀHv)`,
but no further than a fraction of the distance to the origin, `t_max ≤ f ‖w*‖`: along
random directions the curvature is small and the expansion fails before `ΔL` is reached.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sdn.experiments.claims import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    REPORTED,
    SUPPORTED,
    Claim,
    Section,
    combine_verdicts,
    fmt,
    outputs,
)
from sdn.train import (
    MLP,
    hessian_vector_product,
    load_digits,
    network_noise_along,
    power_law_fit,
    random_direction,
    sample_loss,
    taylor_coefficients,
    top_hessian_eigenvalue,
    train,
)


@dataclass(frozen=True)
class CovarianceConfig:
    """Sizes of the §6.1 measurement."""

    hidden: tuple[int, ...] = (64, 64)
    steps: int = 4000
    batch_size: int = 64
    learning_rate: float = 0.1
    weight_decay: float = 1e-4  # a true minimum of the regularized loss
    n_random: int = 4  # random directions, beside the top eigenvector
    n_t: int = 15  # grid points in [−t_max, t_max]
    loss_rise: float = 0.1  # ΔL of the quadratic model at t_max
    max_step: float = 0.1  # and t_max ≤ max_step · ‖w*‖
    power_iters: int = 100
    seed: int = 0
    chunk_size: int | None = None  # samples per chunk of the Taylor coefficients' jvp

    @classmethod
    def quick(cls) -> CovarianceConfig:
        return cls(hidden=(32,), steps=600, n_random=2, n_t=9, power_iters=50)


@dataclass(frozen=True)
class CovarianceResult:
    """Profiles (tidy rows, one per direction and `t`) and fits (one per direction and
    quantity) of the §6.1 measurement."""

    config: CovarianceConfig
    train_accuracy: float
    test_accuracy: float
    train_loss: float
    top_eigenvalue: float
    eigen_residual: float
    profiles: list[dict] = field(default_factory=list)
    fits: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        head = (
            f"{'direction':10} {'quantity':12} {'t_max':>7} {'R² const':>8} {'R² lin':>7} "
            f"{'R² quad':>7} {'σ_g':>10} {'σ_gH':>10} {'σ_H':>10} {'σ_H Taylor':>10}"
        )
        lines = [head]
        for f in self.fits:
            lines.append(
                f"{f['direction']:10} {f['quantity']:12} {f['t_max']:7.3f} "
                f"{f['r2_constant']:8.3f} {f['r2_linear']:7.3f} {f['r2_quadratic']:7.4f} "
                f"{f['sigma_g']:10.3g} {f['sigma_gh']:10.3g} {f['sigma_h']:10.3g} "
                f"{f['taylor_sigma_h']:10.3g}"
            )
        return "\n".join(lines)


# Long on purpose: the measurement's steps in the order docs/theory.md §6.1 gives them.
def run_covariance(config: CovarianceConfig | None = None, *, progress: bool = False):
    """Run the §6.1 measurement on the digits MLP and return a `CovarianceResult`."""
    cfg = config or CovarianceConfig()
    t0 = time.perf_counter()
    data = load_digits(seed=cfg.seed)
    n_classes = data.n_classes

    def model_fn(rngs):
        return MLP(data.x_train.shape[1], cfg.hidden, n_classes, rngs=rngs)

    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(cfg.learning_rate))
    res = train(
        model_fn,
        data,
        tx,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        seeds=[cfg.seed],
        progress=progress,
    )
    w_star = res.seed_params(0)
    apply = res.apply
    ell = sample_loss(apply)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def full_loss(p):
        return jnp.mean(jax.vmap(ell, (None, 0))(p, (x, y)))

    key = jax.random.key(cfg.seed + 1)
    k_eig, k_dirs = jax.random.split(key)
    eig = jax.jit(lambda p, k: top_hessian_eigenvalue(k, full_loss, p, num_iters=cfg.power_iters))(
        w_star, k_eig
    )
    directions = [("top_eigen", eig.vector)] + [
        (f"random_{i}", random_direction(k, w_star))
        for i, k in enumerate(jax.random.split(k_dirs, cfg.n_random))
    ]
    curvature_along = jax.jit(
        lambda v: sum(
            jnp.vdot(a, b)
            for a, b in zip(
                jax.tree.leaves(v),
                jax.tree.leaves(hessian_vector_product(full_loss, w_star, v)),
            )
        )
    )

    model = nnx.merge(res.graphdef, w_star)  # at w*; the probes move along v from here
    w_norm = float(jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree.leaves(w_star))))
    profiles, fits = [], []
    for name, v in directions:
        curv = float(curvature_along(v))
        t_max = min(math.sqrt(2 * cfg.loss_rise / max(curv, 1e-12)), cfg.max_step * w_norm)
        ts = np.linspace(-t_max, t_max, cfg.n_t)
        prof = network_noise_along(model, x, y, v, ts)
        taylor = taylor_coefficients(ell, w_star, (x, y), v, chunk_size=cfg.chunk_size or 256)
        for i, t in enumerate(prof.t):
            profiles.append(
                dict(
                    direction=name,
                    t=float(t),
                    directional_variance=float(prof.directional[i]),
                    trace_variance=float(prof.trace[i]),
                    loss=float(prof.loss[i]),
                )
            )
        for quantity, y_values in (("directional", prof.directional), ("trace", prof.trace)):
            fit = power_law_fit(prof.t, y_values)
            r2 = fit.r_squared
            fits.append(
                dict(
                    direction=name,
                    quantity=quantity,
                    curvature=curv,
                    t_max=t_max,
                    r2_constant=r2["constant"],
                    r2_linear=r2["linear"],
                    r2_quadratic=r2["quadratic"],
                    sigma_g=fit.sigma_g,
                    sigma_gh=fit.sigma_gh,
                    sigma_h=fit.sigma_h,
                    sigma_g_se=fit.stderr[0],
                    sigma_gh_se=fit.stderr[1],
                    sigma_h_se=fit.stderr[2],
                    taylor_sigma_g=taylor.sigma_g if quantity == "directional" else math.nan,
                    taylor_sigma_gh=taylor.sigma_gh if quantity == "directional" else math.nan,
                    taylor_sigma_h=taylor.sigma_h if quantity == "directional" else math.nan,
                )
            )
    return CovarianceResult(
        config=cfg,
        train_accuracy=float(res.train_accuracy[0, -1]),
        test_accuracy=float(res.test_accuracy[0, -1]),
        train_loss=float(res.train_loss[0, -1]),
        top_eigenvalue=float(eig.value),
        eigen_residual=float(eig.residual),
        profiles=profiles,
        fits=fits,
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- the report


def quadratic_covariance_verdict(fits: Sequence[dict]) -> tuple[str, str]:
    """Verdict on §6.1 from the directional fits (`sigma_h`, `sigma_h_se`, `r2_*` each).

    A direction shows the claim when the quadratic fit is best and `σ_H > 2 se`; it
    refutes it when `σ_H + 2 se < 0` (no positive curvature term fits) or when `σ_H > 2 se`
    yet a lower-order fit is better; otherwise it is inconclusive.
    """
    if not fits:
        return INCONCLUSIVE, "no directional fit"
    verdicts = []
    for f in fits:
        lo, hi = f["sigma_h"] - 2 * f["sigma_h_se"], f["sigma_h"] + 2 * f["sigma_h_se"]
        best = f["r2_quadratic"] >= max(f["r2_linear"], f["r2_constant"])
        name = f.get("direction", "a direction")
        if lo > 0 and best:
            verdicts.append((SUPPORTED, f"σ_H > 2 se and the quadratic fit best in {name}"))
        elif hi < 0 or (lo > 0 and not best):
            why = "σ_H + 2 se < 0" if hi < 0 else "a lower-order fit is better"
            verdicts.append((NOT_SUPPORTED, f"{name}: {why}"))
        else:
            verdicts.append((INCONCLUSIVE, f"{name}: σ_H's 2-se interval holds 0"))
    verdict, reason = combine_verdicts(verdicts)
    if verdict == SUPPORTED:
        reason = f"σ_H > 2 se and the quadratic fit best in all {len(fits)} directions"
    return verdict, reason


def covariance_section(out: Path, mode: str, config=None) -> Section:
    """§6.1: is the gradient-noise covariance of a real network quadratic in `t`?"""
    from sdn.experiments import plots
    from sdn.experiments.covariance import CovarianceConfig, run_covariance

    cfg = config or (CovarianceConfig.quick() if mode == "quick" else CovarianceConfig())
    res = run_covariance(cfg)
    sec = Section("covariance", "§6.1 The noise covariance is quadratic", config=asdict(cfg))
    csvs = {"covariance_profiles": res.profiles, "covariance_fits": res.fits}
    outputs(sec, out, res, plots.plot_covariance, csvs)
    directional = [f for f in res.fits if f["quantity"] == "directional"]
    quad_best = [
        f
        for f in directional
        if f["r2_quadratic"] >= max(f["r2_linear"], f["r2_constant"])
        and f["sigma_h"] > 2 * f["sigma_h_se"]
    ]
    verdict = quadratic_covariance_verdict(directional)
    r2 = ", ".join(f"{f['direction']} {f['r2_quadratic']:.3f}" for f in directional)
    sec.claims.append(
        Claim(
            "6.1",
            "Per-sample gradient variance along a direction v grows quadratically in t "
            "around w* (σ_g + 2σ_gH t + σ_H t², σ_H > 0)",
            f"quadratic fit best with σ_H > 2 se in {len(quad_best)} of {len(directional)} "
            f"directions; R² quadratic: {r2}",
            "all directions (docs/theory.md §1)",
            *verdict,
        )
    )
    top = [f for f in directional if f["direction"].startswith("top")]
    if top:
        f = top[0]
        sec.claims.append(
            Claim(
                "6.1",
                "Along the top Hessian eigenvector the curvature term σ_H matches the "
                "second-order (Taylor) prediction Var_i(v·H_i v)",
                f"σ_H = {fmt(f['sigma_h'])} ± {fmt(f['sigma_h_se'])}",
                f"Taylor {fmt(f['taylor_sigma_h'])}",
                REPORTED,
            )
        )
    sec.claims.append(
        Claim(
            "6.1",
            "The network sits near a minimum (the expansion's premise)",
            f"train loss {res.train_loss:.4f}, train accuracy {100 * res.train_accuracy:.1f}%, "
            f"top Hessian eigenvalue {res.top_eigenvalue:.3g}",
            "small loss, positive curvature",
            SUPPORTED if res.top_eigenvalue > 0 else NOT_SUPPORTED,
            f"top eigenvalue {res.top_eigenvalue:.3g} {'>' if res.top_eigenvalue > 0 else '<='} 0",
        )
    )
    return sec
