"""The rival escape laws on the network: SGD from the rescaled family of §6.5 at several
scales, over several barriers along the top Hessian eigenvector (docs/theory.md §6.7).

Rescaling the layers of the flat minimum by `s` (`rescale_layers`) gives the same function
with another sharpness, so the family spans curvatures `h` at one training loss. At each
scale the basin's noise is measured along `v` (`measure_basin`: `σ_g`, `σ_H`) and each
dynamic is run once from `w*`; every barrier `ΔL` gives its wall `x_b = sqrt(2ΔL/h)` on the
same chains (the points of one scale share their chains, so their errors are correlated).
`sdn.stats.rank_escape_laws` then fits Kramers', the power law's and the Lévy form to the
mean escape steps over the `(ΔL, h)` grid. Points where a chain never left are censored
and left out of the fits (counted in `censored_points`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import jax
import numpy as np

from sdn import stats
from sdn.experiments.escape_laws import ranking_rows
from sdn.experiments.network_escape.basin import basin_from_network, rescale_layers
from sdn.experiments.network_escape.dynamics import DYNAMICS, escape_stats, run_dynamics
from sdn.experiments.network_escape.experiment import NetworkEscapeConfig, flat_minimum
from sdn.experiments.network_escape.measure import measure_basin


@dataclass(frozen=True)
class NetworkLawsConfig:
    """The scales, barriers and sizes; the network and the dynamics' `η`, `b` are
    `network`'s (§6.5's configuration)."""

    scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
    barriers: tuple[float, ...] = (0.005, 0.01, 0.02, 0.04)
    dynamics: tuple[str, ...] = ("sgd", "power_law")
    n_chains: int = 128
    n_steps: int = 2000
    network: NetworkEscapeConfig = field(default_factory=NetworkEscapeConfig)

    def __post_init__(self):
        if len(self.scales) < 2 or len(self.barriers) < 2:
            raise ValueError(
                f"need at least 2 scales and 2 barriers, got {self.scales!r} and {self.barriers!r}"
            )
        if any(not s > 0 for s in self.scales) or any(not d > 0 for d in self.barriers):
            raise ValueError("scales and barriers must be positive")
        unknown = set(self.dynamics) - set(DYNAMICS)
        if unknown:
            raise ValueError(f"dynamics must be among {DYNAMICS}, got {sorted(unknown)}")
        for name in ("n_chains", "n_steps"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 2):
                raise ValueError(f"{name} must be an int >= 2, got {v!r}")

    @classmethod
    def quick(cls) -> NetworkLawsConfig:
        net = dataclasses.replace(NetworkEscapeConfig.quick(), dynamics=("sgd",))
        return cls(scales=(1.0, 2.0, 3.0), barriers=(0.005, 0.01, 0.02), dynamics=("sgd",),
                   n_chains=64, n_steps=600, network=net)  # fmt: skip

    @classmethod
    def full(cls) -> NetworkLawsConfig:
        return cls()


@dataclass(frozen=True)
class NetworkLawsResult:
    """One row per (dynamic, scale, barrier) and the rankings per dynamic."""

    config: NetworkLawsConfig
    rows: list[dict] = field(default_factory=list)
    rankings: dict[str, stats.EscapeLawRanking] = field(default_factory=dict)
    censored_points: dict[str, int] = field(default_factory=dict)

    def select(self, dynamic: str) -> list[dict]:
        return [r for r in self.rows if r["dynamic"] == dynamic]

    def fit_rows(self) -> list[dict]:
        return ranking_rows(self.rankings)

    def table(self) -> str:
        lines = [f"{'dynamic':10} {'scale':>5} {'h':>7} {'σ_g':>8} {'σ_H':>8} {'ΔL':>6} "
                 f"{'steps':>8} {'± se':>7} {'escaped':>7}"]  # fmt: skip
        for r in self.rows:
            lines.append(
                f"{r['dynamic']:10} {r['scale']:5.2f} {r['curvature']:7.3f} {r['sigma_g']:8.4f} "
                f"{r['sigma_h']:8.3g} {r['barrier']:6.3f} {r['mean_time']:8.1f} {r['sem']:7.1f} "
                f"{r['escaped']:7.2f}"
            )
        lines.append("")
        for f in self.fit_rows():
            lines.append(
                f"{f['dynamic']:10} {f['law']:10} k {f['k']:7.3f} ± {f['k_se']:.3f}  "
                f"χ²/dof {f['chi2_per_dof']:8.2f}  Δχ² {f['delta_chi2']:8.1f}  best {f['best']}"
            )
        for dyn, n in self.censored_points.items():
            if n:
                lines.append(f"{dyn}: {n} censored points left out of the fits")
        return "\n".join(lines)


def rank_rows(
    rows: list[dict], dynamics, *, lr: float, batch_size: int, alpha: float
) -> tuple[dict, dict]:
    """`rank_escape_laws` per dynamic on its uncensored rows, and the number of censored
    (or error-free) points left out; a dynamic with fewer than 5 points or one curvature
    gets no ranking."""
    rankings, censored = {}, {}
    for dyn in dynamics:
        sel = [r for r in rows if r["dynamic"] == dyn and not r["censored"] and r["sem"] > 0]
        censored[dyn] = sum(r["dynamic"] == dyn for r in rows) - len(sel)
        if len({r["curvature"] for r in sel}) < 2 or len(sel) < 5:
            continue
        cols = {k: np.array([r[k] for r in sel]) for k in sel[0] if k != "dynamic"}
        rankings[dyn] = stats.rank_escape_laws(
            cols["barrier"], cols["curvature"], cols["mean_time"], cols["sem"],
            lr=lr, batch_size=batch_size, sigma_g=cols["sigma_g"], sigma_h=cols["sigma_h"],
            alpha=alpha,
        )  # fmt: skip
    return rankings, censored


def run_network_laws(
    config: NetworkLawsConfig | None = None, *, progress: bool = False
) -> NetworkLawsResult:
    """Mean escape steps of each dynamic over the `(ΔL, scale)` grid, and the rival laws
    ranked on them (see the module docstring)."""
    cfg = config or NetworkLawsConfig()
    net_cfg = cfg.network
    net = flat_minimum(net_cfg)
    eta, b = net_cfg.learning_rate, net_cfg.batch_size
    key = jax.random.key(net_cfg.seed + 2)
    rows = []
    for i, scale in enumerate(cfg.scales):
        params, decay = rescale_layers(net.params, scale, net_cfg.weight_decay)
        basin = basin_from_network(net.apply, params, net.x, net.y, weight_decay=decay)
        k_measure, k_run = jax.random.split(jax.random.fold_in(key, i))
        noise = measure_basin(k_measure, basin, loss_rise=max(cfg.barriers))
        h = noise.curvature
        for m, dyn in enumerate(cfg.dynamics):
            # a score (here a constant) spares run_dynamics its second run for final states
            chains = run_dynamics(
                jax.random.fold_in(k_run, m), basin, noise, dyn, learning_rate=eta,
                batch_size=b, n_chains=cfg.n_chains, n_steps=cfg.n_steps, alpha=net_cfg.alpha,
                score=lambda w: 0.0,
            )  # fmt: skip
            for dl in cfg.barriers:
                st = escape_stats(np.abs(chains.along), math.sqrt(2 * dl / h))
                rows.append(
                    dict(dynamic=dyn, scale=scale, curvature=h, sigma_g=noise.sigma_g,
                         sigma_h=max(noise.sigma_h, 0.0), barrier=dl, mean_time=st.mean,
                         sem=st.stderr, escaped=st.escaped, censored=st.censored)
                )  # fmt: skip
            if progress:
                print(f"[network_laws] scale {scale} {dyn}: h {h:.3g}", flush=True)
    rankings, censored = rank_rows(rows, cfg.dynamics, lr=eta, batch_size=b, alpha=net_cfg.alpha)
    return NetworkLawsResult(cfg, rows, rankings, censored)


__all__ = ["NetworkLawsConfig", "NetworkLawsResult", "rank_rows", "run_network_laws"]
