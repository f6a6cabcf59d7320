"""Figures for the experiments; every function takes a result object and a path.

Kept apart from the experiments so that tests can check numbers without drawing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


# --------------------------------------------------------------------------- §6.2, §6.3


def plot_tails(result, path) -> None:
    """Survival functions `P(|x| > q)` of SGD, PLD and Langevin against the theory (log-log)."""
    plt = _pyplot()
    from sdn import theory

    m, cfg = result.moments, result.config
    law = theory.power_law_stationary(
        m["curvature"], cfg.learning_rate, cfg.batch_size, m["sigma_g"], m["sigma_h"]
    )
    gauss = theory.gaussian_stationary(
        m["curvature"], cfg.learning_rate, cfg.batch_size, m["sigma_g"]
    )
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, color in (("sgd", "C3"), ("pld", "C0"), ("langevin", "C1")):
        x = np.sort(np.abs(result.samples[name]))
        surv = 1.0 - np.arange(x.size) / x.size
        ax.loglog(x, surv, color=color, lw=1.5, label=f"{name} ensemble")
    grid = np.geomspace(0.05, float(np.max(np.abs(result.samples["sgd"]))), 200)
    ax.loglog(
        grid, 2 * np.asarray(law.sf(grid)), "C0--", label=f"Student-t, ν = {result.pld_df:.2f}"
    )
    ax.loglog(grid, 2 * np.asarray(gauss.sf(grid)), "C1--", label="Gaussian (Langevin)")
    ax.set_ylim(0.5 / result.samples["sgd"].size, 1.2)
    ax.set_xlim(0.05, None)
    ax.set_xlabel("|x| = |w − w*|")
    ax.set_ylabel("P(|x| > value)")
    ax.set_title("Stationary tails: SGD and PLD are power laws, Langevin is Gaussian")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_escape(result, path) -> None:
    """Mean escape time against sharpness `h` and against barrier `ΔL`, log scale."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"sgd": "C3", "pld": "C0", "langevin": "C1", "anisotropic": "C2"}
    for ax, sweep, x in ((axes[0], "sharpness", "curvature"), (axes[1], "barrier", "barrier")):
        for name, color in colors.items():
            rows = result.select(sweep, name)
            xs = np.array([r[x] for r in rows])
            t = np.array([r["mean_time"] for r in rows])
            se = np.array([r["sem"] for r in rows])
            ax.errorbar(
                xs,
                t,
                yerr=2 * se,
                fmt="o",
                color=color,
                ms=4,
                capsize=2,
                label=f"{name} (Monte Carlo ± 2 se)",
            )
            exact = np.array([r["exact_time"] for r in rows])
            if np.all(np.isfinite(exact)):
                ax.plot(xs, exact, "-", color=color, lw=1, alpha=0.8)
        ax.set_yscale("log")
        if sweep == "sharpness":
            ax.set_xscale("log")
            ax.set_xlabel("curvature h (barrier fixed)")
        else:
            ax.set_xlabel("barrier ΔL (curvature fixed)")
        ax.set_ylabel("mean escape time τ")
    axes[0].set_title("Sharp minima: SGD and PLD leave fast (lines: exact)")
    axes[1].set_title("Barrier height")
    axes[0].legend(fontsize=7)
    _save(fig, path)
