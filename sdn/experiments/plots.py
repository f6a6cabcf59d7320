"""Figures for the experiments; every function takes a result object and a path.

Kept apart from the experiments so that tests can check numbers without drawing.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """`(figure, axes)` like `pyplot.subplots`, on a bare `Figure`.

    A bare figure needs no global backend, so drawing here never switches the backend of
    a user's notebook or session (and leaves no figure open in pyplot's registry).
    """
    from matplotlib.figure import Figure

    figsize = kwargs.pop("figsize", None)
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------- §6.2, §6.3


def plot_tails(result, path) -> None:
    """Survival functions `P(|x| > q)` of SGD, PLD and Langevin against the theory (log-log)."""
    from sdn import theory

    m, cfg = result.moments, result.config
    law = theory.power_law_stationary(
        m["curvature"], cfg.learning_rate, cfg.batch_size, m["sigma_g"], m["sigma_h"]
    )
    gauss = theory.gaussian_stationary(
        m["curvature"], cfg.learning_rate, cfg.batch_size, m["sigma_g"]
    )
    fig, ax = subplots(figsize=(6.4, 4.4))
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


def plot_noise_tails(result, path) -> None:
    """Block-estimated stable index of a network's gradient noise against the batch size:
    pooled over coordinates (95% CI), pooled after standardising each coordinate, and the
    median per coordinate; SGD's iterates beside them; `α = 2` is the Gaussian."""
    noise = [r for r in result.rows if r["quantity"] == "noise"]
    b = np.array([r["batch_size"] for r in noise], float)
    fig, ax = subplots(figsize=(6.4, 4.4))
    pooled = np.array([r["pooled_alpha"] for r in noise])
    err = np.array(
        [[r["pooled_alpha"] - r["pooled_low"], r["pooled_high"] - r["pooled_alpha"]] for r in noise]
    ).T
    ax.errorbar(b, pooled, yerr=err, fmt="o-", color="C3", capsize=3, label="pooled (95% CI)")
    ax.plot(b, [r["standardized_alpha"] for r in noise], "s--", color="C0",
            label="pooled, each coordinate standardised")  # fmt: skip
    ax.plot(b, [r["median_coordinate_alpha"] for r in noise], "^:", color="C2",
            label="median over coordinates")  # fmt: skip
    for r in result.rows:
        if r["quantity"] == "iterates":
            ax.errorbar([r["batch_size"]], [r["pooled_alpha"]],
                        yerr=[[r["pooled_alpha"] - r["pooled_low"]],
                              [r["pooled_high"] - r["pooled_alpha"]]],
                        fmt="D", color="C1", capsize=3, label="SGD iterates, pooled")  # fmt: skip
    ax.axhline(2.0, color="0.5", lw=1, ls="--", label="Gaussian (α = 2)")
    ax.set_xscale("log")
    ax.set_xlabel("batch size b")
    ax.set_ylabel("stable index α (block estimator)")
    ax.set_title("Tail index of real gradient noise")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_escape(result, path) -> None:
    """Mean escape time against sharpness `h` and against barrier `ΔL`, log scale."""
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
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


# --------------------------------------------------------------------------- §6.1, §6.4


def plot_covariance(result, path) -> None:
    """Gradient-noise variance along each direction against `t`, with the quadratic fit
    and the second-order (Taylor) prediction (docs/theory.md §6.1)."""
    names = list(dict.fromkeys(r["direction"] for r in result.profiles))
    fig, axes = subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        t = np.array([r["t"] for r in result.profiles if r["direction"] == name])
        v = np.array([r["directional_variance"] for r in result.profiles if r["direction"] == name])
        fit = next(
            f for f in result.fits if f["direction"] == name and f["quantity"] == "directional"
        )
        grid = np.linspace(t.min(), t.max(), 100)
        ax.plot(t, v, "o", color="C0", ms=4, label="measured vᵀC(w* + t v)v")
        quad = fit["sigma_g"] + 2 * fit["sigma_gh"] * grid + fit["sigma_h"] * grid**2
        ax.plot(grid, quad, "-", color="C3", label=f"quadratic fit, R² {fit['r2_quadratic']:.3f}")
        taylor = (
            fit["taylor_sigma_g"]
            + 2 * fit["taylor_sigma_gh"] * grid
            + fit["taylor_sigma_h"] * grid**2
        )
        ax.plot(grid, taylor, "--", color="C2", label="2nd-order prediction at w*")
        ax.set_title(name)
        ax.set_xlabel("t")
    axes[0][0].set_ylabel("per-sample gradient variance along v")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


def plot_large_batch(result, path) -> None:
    """Test accuracy over training (mean ± sd over seeds) per method, and final accuracy
    against the top Hessian eigenvalue per seed (docs/theory.md §6.4)."""
    fig, (ax1, ax2) = subplots(1, 2, figsize=(11, 4.2))
    for i, (name, (steps, acc)) in enumerate(result.history.items()):
        mean, sd = 100 * acc.mean(0), 100 * acc.std(0)
        ax1.plot(steps, mean, color=f"C{i}", label=name)
        ax1.fill_between(steps, mean - sd, mean + sd, color=f"C{i}", alpha=0.2)
        rows = [r for r in result.rows if r["method"] == name]
        ax2.plot(
            [r["top_eigenvalue"] for r in rows],
            [100 * r["test_accuracy"] for r in rows],
            "o",
            color=f"C{i}",
            label=name,
        )
    ax1.set_xlabel("step")
    ax1.set_ylabel("test accuracy %")
    ax1.set_title("Test accuracy (mean ± sd over seeds)")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("top Hessian eigenvalue at the end")
    ax2.set_ylabel("final test accuracy %")
    ax2.set_title("Accuracy against sharpness, one point per seed")
    _save(fig, path)


# --------------------------------------------------------------------------- §6.5


def plot_network_escape(result, path) -> None:
    """Zhu et al.'s escaping efficiency `E[L(w_t) − L(w*)]` against steps, one panel per
    minimum and one line per dynamic, log scale (docs/theory.md §6.5)."""
    cfg = result.config
    names = list(result.minima)
    fig, axes = subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for i, dyn in enumerate(cfg.dynamics):
            eff = np.asarray(result.efficiency[name, dyn], np.float64)
            steps = cfg.record_every * np.arange(1, eff.size + 1)
            ax.plot(steps, np.where(eff > 0, eff, np.nan), color=f"C{i}", lw=1.5, label=dyn)
        ax.axhline(cfg.barrier, color="k", ls=":", lw=1, label="ΔL (the barrier along v)")
        ax.set_yscale("log")
        # chains of infinite variance (a power law with ν < 2) would hide the others
        if ax.get_ylim()[1] > 1e2:
            ax.set_ylim(None, 1e2)
            ax.text(0.99, 0.98, "axis cut at 100", transform=ax.transAxes, ha="right", va="top")
        m = result.minima[name]
        ax.set_title(f"{name} minimum: h = {m['curvature']:.3g}, L(w*) = {m['train_loss']:.3g}")
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("E[L(w_t) − L(w*)] over chains")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


def plot_noise_scale(result, path) -> None:
    """`B_simple` over training, one line per seed (a `TrainResult` with a monitor)."""
    if result.noise_scale is None:
        raise ValueError(
            "the run has no noise scale: train it with noise_scale=NoiseScaleMonitor()"
        )
    fig, ax = subplots(figsize=(6.4, 4.0))
    steps = np.asarray(result.steps)
    for k, seed in enumerate(result.seeds):
        simple = np.asarray(result.noise_scale.simple[k])
        ok = np.isfinite(simple) & (simple > 0)
        ax.semilogy(steps[ok], simple[ok], lw=1.5, label=f"seed {seed}")
    ax.set_xlabel("step")
    ax.set_ylabel("B_simple = tr C / ‖∇L‖²")
    ax.set_title("Gradient noise scale during training (moving averages)")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_escape_laws(result, path) -> None:
    """Mean exit time against the barrier, one line per curvature, a panel per dynamic."""
    dyns = list(result.rankings)
    fig, axes = subplots(1, len(dyns), figsize=(3.4 * len(dyns), 3.6), squeeze=False)
    for ax, dyn in zip(axes[0], dyns, strict=True):
        rows = result.select(dyn)
        for k, h in enumerate(sorted({r["curvature"] for r in rows})):
            sel = sorted((r for r in rows if r["curvature"] == h), key=lambda r: r["barrier"])
            ax.errorbar(
                [r["barrier"] for r in sel],
                [r["mean_time"] for r in sel],
                yerr=[r["sem"] for r in sel],
                color=f"C{k}",
                marker="o",
                ms=3,
                lw=1.2,
                label=f"h = {h:.2g}",
            )
        ax.set_yscale("log")
        ax.set_xlabel("barrier ΔL")
        ax.set_title(f"{dyn}: best {result.rankings[dyn].best.value}", fontsize=9)
    axes[0][0].set_ylabel("mean exit time")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


# --------------------------------------------------------------------------- §6.8


def plot_critical_batch(result, path) -> None:
    """Per model: steps to the target against the batch size with the fitted
    `S = S_min(1 + B_crit/B)`; examples against steps with the hyperbola
    `(S/S_min − 1)(E/E_min − 1) = 1`; `B_simple` over training, one line per batch size
    (docs/theory.md §6.8)."""
    names = list(result.models)
    fig, axes = subplots(len(names), 3, figsize=(14, 4.0 * len(names)), squeeze=False)
    for (ax1, ax2, ax3), name in zip(axes, names, strict=True):
        m = result.models[name]
        fit = m["fit"]
        ok = [r for r in result.rows if r["model"] == name and r["reached"]]
        summ = [s for s in result.summary if s["model"] == name and s["reached"]]
        b = np.array([r["batch_size"] for r in ok], float)
        ax1.plot(b, [r["steps"] for r in ok], "o", color="0.6", ms=3, label="runs")
        ax1.errorbar(
            [s["batch_size"] for s in summ],
            [s["steps_mean"] for s in summ],
            yerr=[np.nan_to_num(s["steps_sem"]) for s in summ],
            fmt="o",
            color="C0",
            label="mean ± se",
        )
        ax2.plot([r["steps"] for r in ok], [r["examples"] for r in ok], "o", color="C0", ms=3)
        if fit is not None and b.size:
            grid = np.geomspace(b.min() / 2, b.max() * 2, 200)
            ax1.plot(grid, fit.steps_at(grid), color="C1", label="S_min(1 + B_crit/B)")
            ax1.axhline(fit.s_min, color="C1", ls=":", lw=1)
            ax2.plot(fit.steps_at(grid), fit.examples_at(grid), color="C1", label="fitted law")
            ax2.axvline(fit.s_min, color="C1", ls=":", lw=1, label="S_min")
            ax2.axhline(fit.e_min, color="C1", ls="--", lw=1, label="E_min")
            if math.isfinite(fit.b_crit) and fit.b_crit > 0:
                ax1.axvline(fit.b_crit, color="C1", ls="--", lw=1, label="B_crit")
        if np.isfinite(m["b_simple"]):
            ax1.axvline(m["b_simple"], color="C2", ls="--", lw=1, label="B_simple at target")
            ax3.axhline(m["b_simple"], color="C2", ls="--", lw=1, label="B_simple (pooled)")
        if fit is not None and math.isfinite(fit.b_crit) and fit.b_crit > 0:
            ax3.axhline(fit.b_crit, color="C1", ls="--", lw=1, label="B_crit (fit)")
        sizes = [bs for (mod, bs) in result.history if mod == name]
        for i, bs in enumerate(sizes):
            steps, simple = result.history[name, bs]
            with warnings.catch_warnings():  # a column without a positive reading: NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(np.where(simple > 0, simple, np.nan), axis=0)
            ax3.plot(steps * bs, mean, color=f"C{3 + i % 7}", lw=1, label=f"B = {bs}")
        from matplotlib.ticker import NullFormatter

        for ax in (ax1, ax2):
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax2.xaxis.set_minor_formatter(NullFormatter())  # their labels overlap on a short range
        ax1.set_xlabel("batch size B")
        ax1.set_ylabel("steps S to the target")
        ax1.set_title(f"{name}: steps to train loss {result.config.target_loss:g}")
        ax1.legend(fontsize=7)
        ax2.set_xlabel("steps S")
        ax2.set_ylabel("examples E = B S")
        ax2.set_title(f"{name}: the steps–examples trade-off")
        ax2.legend(fontsize=7)
        ax3.set_xscale("log")
        ax3.set_yscale("log")
        ax3.set_xlabel("examples seen")
        ax3.set_ylabel("B_simple (seed mean)")
        ax3.set_title(f"{name}: B_simple over training")
        ax3.legend(fontsize=6, ncol=2)
    _save(fig, path)
