"""The `sdn demo` run: power-law dynamic against Langevin, tails measured and predicted."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np
from scipy import stats

import sdn
from sdn import noise


@dataclass(frozen=True)
class DemoResult:
    """Stationary samples of PLD and Langevin with the predicted laws' quantiles."""

    quantiles: np.ndarray  # probabilities
    pld: np.ndarray  # PLD samples
    langevin: np.ndarray  # Langevin samples (same σ_g)
    pld_predicted: np.ndarray  # Student-t quantiles (docs/theory.md §3)
    langevin_predicted: np.ndarray  # Gaussian quantiles
    df: float
    scale: float
    gaussian_sd: float

    def table(self) -> str:
        q_pld = np.quantile(self.pld, self.quantiles)
        q_lan = np.quantile(self.langevin, self.quantiles)
        rows = [
            f"{'quantile':>9} | {'PLD measured':>12} {'Student-t':>10} | "
            f"{'Langevin':>9} {'Gaussian':>9}"
        ]
        for p, a, b, c, d in zip(
            self.quantiles, q_pld, self.pld_predicted, q_lan, self.langevin_predicted
        ):
            rows.append(f"{p:>9.4f} | {a:>12.4f} {b:>10.4f} | {c:>9.4f} {d:>9.4f}")
        return "\n".join(rows)


def run_demo(
    *,
    learning_rate: float = 0.1,
    batch_size: int = 1,
    curvature: float = 1.0,
    sigma_g: float = 1.0,
    sigma_h: float = 5.0,
    n_paths: int = 20_000,
    dt: float = 0.005,
    n_steps: int = 2_000,
    seed: int = 0,
) -> DemoResult:
    """Stationary ensembles of PLD and Langevin on `L = h x²/2`, with the theory beside.

    PLD has `C = σ_g + σ_H x²`; its stationary law is a Student-t with
    `ν = 1 + 2bh/(ησ_H)` and scale `sqrt(σ_g/(σ_H ν))` (docs/theory.md §3). Langevin has
    `C = σ_g`, stationary Gaussian of variance `η σ_g/(2bh)`.
    """
    key = jax.random.key(seed)
    k1, k2 = jax.random.split(key)

    def grad(w):
        return curvature * w

    pld = sdn.sgd_sde(grad, noise.power_law(sigma_g, sigma_h), learning_rate, batch_size)
    lan = sdn.sgd_sde(grad, noise.isotropic(sigma_g), learning_rate, batch_size)
    kw = dict(dt=dt, n_steps=n_steps, n_paths=n_paths)
    x_pld = np.asarray(sdn.simulate(k1, pld, 0.0, **kw))
    x_lan = np.asarray(sdn.simulate(k2, lan, 0.0, **kw))
    nu = 1 + 2 * batch_size * curvature / (learning_rate * sigma_h)
    scale = math.sqrt(sigma_g / (sigma_h * nu))
    sd = math.sqrt(learning_rate * sigma_g / (2 * batch_size * curvature))
    q = np.array([0.5, 0.9, 0.99, 0.999, 0.9999])
    return DemoResult(
        quantiles=q,
        pld=x_pld,
        langevin=x_lan,
        pld_predicted=stats.t(nu, scale=scale).ppf(q),
        langevin_predicted=stats.norm(scale=sd).ppf(q),
        df=nu,
        scale=scale,
        gaussian_sd=sd,
    )


def plot_demo(result: DemoResult, path) -> None:
    """Log-density histograms of both ensembles with their predicted densities."""
    from sdn.experiments.plots import subplots

    fig, ax = subplots(figsize=(6.4, 4.2))
    lim = float(np.quantile(np.abs(result.pld), 0.9995))
    bins = np.linspace(-lim, lim, 121)
    grid = np.linspace(-lim, lim, 400)
    ax.hist(result.pld, bins, density=True, alpha=0.45, label="PLD ensemble")
    ax.hist(result.langevin, bins, density=True, alpha=0.45, label="Langevin ensemble")
    ax.plot(
        grid,
        stats.t(result.df, scale=result.scale).pdf(grid),
        "C0",
        label=f"Student-t, ν = {result.df:.2f}",
    )
    ax.plot(grid, stats.norm(scale=result.gaussian_sd).pdf(grid), "C1", label="Gaussian")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, None)
    ax.set_xlabel("x = w − w*")
    ax.set_ylabel("stationary density")
    ax.set_title("Power-law dynamic has heavy tails; Langevin does not")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
