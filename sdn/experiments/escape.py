"""Escape times (docs/theory.md §4, §6.3): sharp against flat minima, and barrier height.

The landscape is the finite-sum walled basin: `ℓ_i = h_i (w − c_i)²/2` with
`h_i = h u_i` (`u_i` fixed across the sweep, mean 1, variance `Var u`), and absorbing
walls at `w* ± x_b`, `x_b = sqrt(2ΔL/H)` (`H = h · mean u_i`), so the barrier is `ΔL`
for every `h`. The
centres `c_i` are rescaled for each `h` so that the gradient-noise variance at the
minimum is the same `σ_g` for every `h` (the family of docs/theory.md §4 in which Langevin
depends on `h` only through its prefactor).

Four dynamics escape from each basin, every one from `w*`:

- `sgd`: real minibatch SGD (`noise.minibatch`, the `"sgd"` solver, one step per `η`);
- `pld`: the power-law SDE with the moments `σ_g, σ_gH, σ_H` measured at `w*`;
- `langevin`: constant noise `C = σ_g`;
- `anisotropic`: constant Hessian-aligned noise `C = σ_g h / h_ref` (`Σ ∝ H`, equal to
  Langevin's at the flattest minimum `h_ref`),

and the three diffusions have an exact mean exit time by quadrature
(`sdn.theory.log_mean_first_passage_time`), computed for the whole sweep in one
vmapped call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import sdn
from sdn import domains, landscapes, noise, theory
from sdn.experiments.claims import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    Claim,
    Section,
    effect_verdict,
    outputs,
)

DYNAMICS = ("sgd", "pld", "langevin", "anisotropic")


@dataclass(frozen=True)
class EscapeConfig:
    """Sizes and parameters of the escape experiment (defaults: the quick, CPU sizes)."""

    curvatures: tuple[float, ...] = tuple(float(h) for h in np.geomspace(0.25, 16, 8))
    barriers: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3)
    barrier: float = 0.25  # ΔL for the sharpness sweep
    curvature: float = 1.0  # h for the barrier sweep
    learning_rate: float = 0.1
    batch_size: int = 1
    sigma_g: float = 1.0
    var_u: float = 1.0
    reference_curvature: float | None = None  # h_ref of the anisotropic noise (None: min h)
    n_samples: int = 1000
    n_paths: int = 2000
    sde_substeps: int = 4  # SDE steps per SGD step, at least
    max_curvature_dt: float = 0.01  # and H·dt at most this (Euler's bias grows with H·dt)
    max_time: float = 1e5
    seed: int = 0

    @classmethod
    def tiny(cls) -> EscapeConfig:
        """Sizes for tests and smoke runs."""
        return cls(curvatures=(0.5, 2.0, 8.0), barriers=(0.1, 0.2), n_paths=300, n_samples=200)


@dataclass(frozen=True)
class EscapeResult:
    """Tidy rows, one per (sweep, dynamic, curvature, barrier)."""

    config: EscapeConfig
    rows: list[dict] = field(default_factory=list)

    def select(self, sweep: str, dynamic: str) -> list[dict]:
        return [r for r in self.rows if r["sweep"] == sweep and r["dynamic"] == dynamic]

    def table(self) -> str:
        head = f"{'sweep':9} {'dynamic':12} {'h':>7} {'ΔL':>6} {'mean τ':>11} {'± sem':>9} "
        lines = [head + f"{'exact τ':>11} {'exited':>7}"]
        for r in self.rows:
            lines.append(
                f"{r['sweep']:9} {r['dynamic']:12} {r['curvature']:7.3f} {r['barrier']:6.3f} "
                f"{r['mean_time']:11.2f} {r['sem']:9.2f} {r['exact_time']:11.2f} "
                f"{r['exited']:7d}"
            )
        return "\n".join(lines)


def walled_basin(u: jax.Array, c0: jax.Array, h: float, sigma_g: float):
    """The finite-sum basin of curvature `h`, centres rescaled so `σ_g` is as asked."""
    base = landscapes.FiniteSumQuadratic({"curvature": h * u, "center": c0})
    measured = float(np.asarray(base.gradient_noise_moments().sigma_g)[0])
    scale = math.sqrt(sigma_g / measured)
    return landscapes.FiniteSumQuadratic({"curvature": h * u, "center": c0 * scale})


def _affine_grad(h, w_star, w):
    return h * (w - w_star)


def _sample_grad(w, datum):
    # ∇ℓ_i of the quadratic, as a module-level function: a bound method of a fresh
    # problem would be a new static argument for every point and defeat jit's cache.
    return datum["curvature"] * (w - datum["center"])


def _noises(prob, cfg: EscapeConfig, h: float):
    m = prob.gradient_noise_moments()
    sg, sgh, sh = (float(np.asarray(v)[0]) for v in m)
    h_ref = cfg.reference_curvature or min(cfg.curvatures)
    aniso = sg * h / h_ref
    models = {
        "sgd": noise.minibatch(_sample_grad, prob.data, cfg.batch_size),
        "pld": noise.power_law(sg, sh, prob.minimum, sgh),
        "langevin": noise.isotropic(sg),
        "anisotropic": noise.isotropic(aniso),
    }
    return models, (sg, sgh, sh, aniso)


def _exact_log_times(cfg: EscapeConfig, params: np.ndarray) -> dict[str, np.ndarray]:
    """Exact log mean exit times per diffusion; rows of `params`: (H, ΔL, σ_g, σ_gH, σ_H, C_an)."""
    eta, b = cfg.learning_rate, cfg.batch_size

    def one(p):
        h, dl, sg, sgh, sh, aniso = p
        xb = jnp.sqrt(2 * dl / h)

        def drift(x):
            return -h * x

        def log_t(var):
            return theory.log_mean_first_passage_time(drift, var, 0.0, -xb, xb)

        return jnp.stack(
            [
                log_t(lambda x: eta / b * (sg + 2 * sgh * x + sh * x * x)),
                log_t(lambda x: eta / b * sg + 0 * x),
                log_t(lambda x: eta / b * aniso + 0 * x),
            ]
        )

    out = np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(params, jnp.float32)))
    return {"pld": out[:, 0], "langevin": out[:, 1], "anisotropic": out[:, 2]}


def basin_exits(
    key, cfg, grad, model, w_star, domain, hess: float, *, sgd: bool, progress: bool = False
) -> dict:
    """Exits of `cfg.n_paths` paths of `sgd_sde(grad, model, η, b)` from `w*`: its
    summary's mean time, sem and counts. SGD steps once per `η` (the `sgd` solver); the
    diffusions take Euler–Maruyama steps of `min(η / sde_substeps, max_curvature_dt / H)`.
    Shared by §6.3 and §6.7 (any config with those fields). With `sgd` the dynamic is a
    discrete map, whatever its noise: no Brownian-bridge correction of its exits."""
    eta, b = cfg.learning_rate, cfg.batch_size
    dt = eta if sgd else min(eta / cfg.sde_substeps, cfg.max_curvature_dt / hess)
    res = sdn.first_exit_time(
        key,
        sdn.sgd_sde(grad, model, eta, b),
        w_star,
        domain,
        dt=dt,
        n_steps=int(cfg.max_time / dt),
        n_paths=cfg.n_paths,
        solver="sgd" if sgd else "euler_maruyama",
        boundary_correction=not sgd,
        progress=progress,
    )
    s = res.summary()
    return {k: s[k] for k in ("mean_time", "sem", "exited", "inside", "diverged")}


def run_escape(config: EscapeConfig | None = None, *, progress: bool = False) -> EscapeResult:
    """Mean exit times of SGD, PLD, Langevin and anisotropic noise (docs/theory.md §6.3).

    Two sweeps: over the curvature `h` at the barrier `config.barrier`
    (`sweep="sharpness"`), and over the barrier `ΔL` at `config.curvature`
    (`sweep="barrier"`). Each row holds the Monte Carlo mean exit time (exited paths
    only), its standard error, the exit counts, and the exact quadrature time for the
    three diffusions (NaN for SGD, which has none).
    """
    cfg = config or EscapeConfig()
    key = jax.random.key(cfg.seed)
    k_u, k_c, k_run = jax.random.split(key, 3)
    v = cfg.var_u
    u = jax.random.gamma(k_u, 1 / v, (cfg.n_samples, 1)) * v
    c0 = jax.random.normal(k_c, (cfg.n_samples, 1))
    points = [("sharpness", h, cfg.barrier) for h in cfg.curvatures] + [
        ("barrier", cfg.curvature, dl) for dl in cfg.barriers
    ]
    rows, params = [], []
    for i, (sweep, h, dl) in enumerate(points):
        prob = walled_basin(u, c0, h, cfg.sigma_g)
        w_star = prob.minimum
        hess = float(prob.hessian[0])  # h · mean(u_i), the basin's actual curvature
        xb = math.sqrt(2 * dl / hess)
        dom = domains.box(w_star - xb, w_star + xb)
        # ∇L(w) = H (w − w*) exactly: no sum over the n samples per step.
        grad = jax.tree_util.Partial(_affine_grad, hess, w_star)
        models, moments = _noises(prob, cfg, h)
        params.append((hess, dl, *moments))
        for j, name in enumerate(DYNAMICS):
            key = jax.random.fold_in(k_run, i * len(DYNAMICS) + j)
            s = basin_exits(
                key,
                cfg,
                grad,
                models[name],
                w_star,
                dom,
                hess,
                sgd=name == "sgd",
                progress=progress,
            )
            rows.append(
                dict(sweep=sweep, dynamic=name, curvature=h, barrier=dl, **s, exact_time=math.nan)
            )
    exact = _exact_log_times(cfg, np.array(params))
    for row in rows:
        if row["dynamic"] in exact:
            k = next(
                i
                for i, (sweep, h, dl) in enumerate(points)
                if (sweep, h, dl) == (row["sweep"], row["curvature"], row["barrier"])
            )
            row["exact_time"] = float(np.exp(exact[row["dynamic"]][k]))
    return EscapeResult(cfg, rows)


def log_time_slope(rows: list[dict], x: str, *, log_x: bool = True) -> tuple[float, float]:
    """Least-squares slope of `log τ` against `x` (or `log x`), with its standard error.

    Each point is weighted by `1/se²`, with `se = sem/τ` the delta-method error of
    `log τ`; the slope's standard error comes from those weights.
    """
    xs = np.array([r[x] for r in rows], float)
    xs = np.log(xs) if log_x else xs
    y = np.log([r["mean_time"] for r in rows])
    se = np.array([r["sem"] / r["mean_time"] for r in rows])
    w = 1 / se**2
    xm = np.sum(w * xs) / np.sum(w)
    ym = np.sum(w * y) / np.sum(w)
    sxx = np.sum(w * (xs - xm) ** 2)
    slope = np.sum(w * (xs - xm) * (y - ym)) / sxx
    return float(slope), float(1 / math.sqrt(sxx))


# --------------------------------------------------------------------------- the report


ESCAPE_Z_MAX = 4.0
"""Monte Carlo against exact escape times: the largest deviation allowed, in errors."""


ESCAPE_BIAS = 0.03
"""The time step's bias allowed in that error, as a fraction of the exact time."""


def escape_agreement_verdict(rows: Sequence[dict]) -> tuple[str, str, float]:
    """Monte Carlo exit times against the exact quadrature: (verdict, reason, worst z).

    Each deviation is measured in the combined error `sqrt(sem² + (ESCAPE_BIAS·exact)²)`;
    supported when the largest is below `ESCAPE_Z_MAX`.
    """
    worst, n = 0.0, 0
    for r in rows:
        if math.isfinite(r["exact_time"]) and r["sem"] > 0:
            err = math.hypot(r["sem"], ESCAPE_BIAS * r["exact_time"])
            worst = max(worst, abs(r["mean_time"] - r["exact_time"]) / err)
            n += 1
    if n == 0:
        return INCONCLUSIVE, "no point with an exact time and a standard error", math.nan
    if worst < ESCAPE_Z_MAX:
        return SUPPORTED, f"largest deviation {worst:.2f} < {ESCAPE_Z_MAX:g} errors", worst
    return NOT_SUPPORTED, f"largest deviation {worst:.2f} >= {ESCAPE_Z_MAX:g} errors", worst


def escape_agreement_text() -> str:
    """The escape agreement claim's threshold, as the report prints it."""
    return (
        f"< {ESCAPE_Z_MAX:g} errors (error: the standard error and {ESCAPE_BIAS:.0%} of the "
        "exact time for the time step's bias, in quadrature)"
    )


def escape_section(out: Path, mode: str, config=None) -> Section:
    """§6.3: escape times against sharpness and barrier height, with exact quadrature."""
    from sdn.experiments import plots
    from sdn.experiments.escape import EscapeConfig, log_time_slope, run_escape

    if config is None:
        config = (
            EscapeConfig(curvatures=(0.25, 1.0, 4.0, 16.0), barriers=(0.1, 0.2, 0.3), n_paths=600)
            if mode == "quick"
            else EscapeConfig()
        )
    res = run_escape(config)
    sec = Section("escape", "§6.3 Escape times: sharp against flat, and barrier height")
    sec.config = asdict(config)
    outputs(sec, out, res, plots.plot_escape, {"escape": res.rows})
    verdict, reason, worst = escape_agreement_verdict(res.rows)
    sec.claims.append(
        Claim(
            "6.3",
            "Monte Carlo exit times of the diffusions agree with the exact quadrature",
            f"largest deviation {worst:.2f} errors over "
            f"{sum(math.isfinite(r['exact_time']) for r in res.rows)} points",
            escape_agreement_text(),
            verdict,
            reason,
        )
    )

    def exact_slope(rows, x, log_x=True):
        # the quadrature's slope: the same fit on exact times (equal weights)
        rows = [{**r, "mean_time": r["exact_time"], "sem": r["exact_time"]} for r in rows]
        return log_time_slope(rows, x, log_x=log_x)[0]

    slopes = {
        d: log_time_slope(res.select("sharpness", d), "curvature")
        for d in ("sgd", "pld", "langevin", "anisotropic")
    }
    lan = slopes["langevin"]
    # the effect in question: how much steeper the exact PLD slope is than Langevin's
    effect = exact_slope(res.select("sharpness", "langevin"), "curvature") - exact_slope(
        res.select("sharpness", "pld"), "curvature"
    )
    for name in ("sgd", "pld"):
        s, se = slopes[name]
        sec.claims.append(
            Claim(
                "6.3",
                f"{name.upper()} leaves sharp minima faster than Langevin does "
                f"(σ_g held fixed): d log τ / d log h more negative",
                f"{s:.2f} ± {se:.2f}",
                f"Langevin {lan[0]:.2f} ± {lan[1]:.2f} (theory: −1, prefactor only); "
                f"exact PLD {effect:.2f} steeper",
                *effect_verdict(lan[0] - s, math.hypot(se, lan[1]), effect),
            )
        )
    b_slopes = {
        d: log_time_slope(res.select("barrier", d), "barrier", log_x=False)
        for d in ("pld", "langevin")
    }
    eta, b, sg = config.learning_rate, config.batch_size, config.sigma_g
    (sp, sep), (sl, sel) = b_slopes["pld"], b_slopes["langevin"]
    effect = exact_slope(res.select("barrier", "langevin"), "barrier", False) - exact_slope(
        res.select("barrier", "pld"), "barrier", False
    )
    sec.claims.append(
        Claim(
            "6.3",
            "log τ grows with the barrier more slowly for PLD (logarithmically) than for "
            "Langevin (linearly, slope 2b/(ησ_g))",
            f"d log τ / dΔL: PLD {sp:.1f} ± {sep:.1f}, Langevin {sl:.1f} ± {sel:.1f}",
            f"Langevin → {2 * b / (eta * sg):.1f}; PLD below it (exact: by {effect:.1f})",
            *effect_verdict(sl - sp, math.hypot(sep, sel), effect),
        )
    )
    return sec
