"""The rival escape laws on the same runs (docs/theory.md §6.7): Kramers, power law, Lévy.

The testbed is §6.3's finite-sum walled basin (`sdn.experiments.escape.walled_basin`:
`ℓ_i = h u_i (w − c_i)²/2`, absorbing walls where the loss has risen by `ΔL`, the
gradient-noise variance at the minimum held at `σ_g` for every `h`), on a 2-D grid of
barrier heights `ΔL` and curvatures `h`. Four dynamics leave each basin from `w*`:

- `sgd`: real minibatch SGD (`noise.minibatch`, the `"sgd"` solver);
- `pld`: the power-law SDE with the moments measured at `w*`;
- `langevin`: constant noise `C = σ_g`;
- `alpha_stable`: GD plus symmetric α-stable noise, scaled so that `α = 2` would be
  Langevin's Gaussian (`c = sqrt(σ_g/2) b^{1/2 − 1/α}`), of the index `alpha` or, by
  default, the index measured from SGD's own gradient noise at the minimum by the block
  estimator (`sdn.stats.block_tail_index`, as Şimşekli et al. 2019 do), kept in
  `[ALPHA_RANGE]`.
- `gaussian_sgd`: SGD with its noise made Gaussian: steps of `η` as SGD's, each
  `w − η (∇L + ξ)` with `ξ ~ N(0, C(w)/b)` of the minibatch's own covariance at `w` (the
  power-law model of the measured moments is that covariance exactly here, the per-sample
  gradients being affine in `w`).

Swapping one part of SGD's noise at a time: `sgd` against `gaussian_sgd` is the law of
the noise (a minibatch's discrete, heavy-tailed draws against a normal of the same
covariance), `gaussian_sgd` against `pld` is the time step (steps of `η` against the
SDE); `swap_ratios` gives both as mean log ratios of exit times over the grid.

`sdn.stats.rank_escape_laws` fits each law's form, with a free prefactor, to each
dynamic's mean exit times over the grid and names the law that fits best, or
"undecided". The three model dynamics are the controls: each should be recognised as its
own law; real SGD is the question. The gradient noise's own stable index (block
estimator) is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import numpy as np

from sdn import domains, noise, stats
from sdn.experiments.claims import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    REPORTED,
    SUPPORTED,
    Claim,
    Section,
    outputs,
    ratio_verdict,
)
from sdn.experiments.escape import _affine_grad, _sample_grad, basin_exits, walled_basin

DYNAMICS = ("sgd", "pld", "langevin", "alpha_stable", "gaussian_sgd")
DISCRETE = ("sgd", "gaussian_sgd")
"""The dynamics that step once per learning rate (SGD's own steps, exits seen at steps)."""
SWAPS = {"noise law": ("sgd", "gaussian_sgd"), "time step": ("gaussian_sgd", "pld")}
"""Each swap of one part of SGD's noise: the dynamic with the part, the one without."""
OWN_LAW = {
    "pld": "power_law",
    "langevin": "kramers",
    "alpha_stable": "levy",
    "gaussian_sgd": "power_law",
}
"""The law each model dynamic should follow: the controls, and SGD made Gaussian, whose
noise has the covariance the power law is derived from."""
ALPHA_RANGE = (1.1, 1.9)
"""Where a measured stable index is kept for the α-stable dynamic: near 1 the exit times
of the walled basins grow very long, near 2 the law is Langevin's."""


@dataclass(frozen=True)
class EscapeLawsConfig:
    """The grid and the sizes of §6.7 (defaults: the quick, CPU sizes)."""

    curvatures: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    barriers: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3)
    learning_rate: float = 0.1
    batch_size: int = 1
    sigma_g: float = 1.0
    var_u: float = 1.0
    alpha: float | None = None  # None: measured from SGD's gradient noise
    n_samples: int = 1000
    n_paths: int = 500
    sde_substeps: int = 4  # SDE steps per SGD step, at least
    max_curvature_dt: float = 0.01  # and H·dt at most this
    max_time: float = 1e5
    dynamics: tuple[str, ...] = DYNAMICS
    seed: int = 0

    def __post_init__(self):
        if len(self.curvatures) < 2 or len(self.barriers) < 2:
            raise ValueError(
                f"need at least 2 curvatures and 2 barriers, got {self.curvatures!r} and "
                f"{self.barriers!r}"
            )
        if any(not h > 0 for h in self.curvatures) or any(not d > 0 for d in self.barriers):
            raise ValueError("curvatures and barriers must be positive")
        if self.alpha is not None and not 0 < self.alpha < 2:
            raise ValueError(f"alpha must lie in (0, 2), got {self.alpha!r}")
        unknown = set(self.dynamics) - set(DYNAMICS)
        if unknown:
            raise ValueError(f"dynamics must be among {DYNAMICS}, got {sorted(unknown)}")

    @classmethod
    def quick(cls) -> EscapeLawsConfig:
        return cls()

    @classmethod
    def full(cls) -> EscapeLawsConfig:
        return cls(
            curvatures=(0.25, 0.5, 1.0, 2.0, 4.0),
            barriers=(0.1, 0.15, 0.2, 0.25, 0.3, 0.4),
            n_paths=4000,
        )

    @classmethod
    def tiny(cls) -> EscapeLawsConfig:
        """Sizes for tests."""
        return cls(curvatures=(0.5, 1.0, 2.0), barriers=(0.1, 0.2), n_paths=200, n_samples=200)


@dataclass(frozen=True)
class EscapeLawsResult:
    """Tidy rows, one per (dynamic, curvature, barrier), the rankings per dynamic and the
    stable index of SGD's gradient noise at the minimum."""

    config: EscapeLawsConfig
    rows: list[dict] = field(default_factory=list)
    rankings: dict[str, stats.EscapeLawRanking] = field(default_factory=dict)
    noise_index: stats.BlockTailIndex | None = None
    alpha: float = math.nan  # the α-stable dynamic's index (given or measured)

    def select(self, dynamic: str) -> list[dict]:
        return [r for r in self.rows if r["dynamic"] == dynamic]

    def fit_rows(self) -> list[dict]:
        """One row per (dynamic, law): the fitted multiplier `k`, Δχ² and the verdict."""
        return ranking_rows(self.rankings)

    def table(self) -> str:
        lines = [f"{'dynamic':13} {'law':10} {'k':>8} {'± se':>7} {'χ²/dof':>8} {'Δχ²':>8}  best"]
        for r in self.fit_rows():
            lines.append(
                f"{r['dynamic']:13} {r['law']:10} {r['k']:8.3f} {r['k_se']:7.3f} "
                f"{r['chi2_per_dof']:8.2f} {r['delta_chi2']:8.1f}  {r['best']}"
            )
        if self.noise_index is not None:
            ni = self.noise_index
            lines += ["", f"SGD's gradient noise at w*: block stable index {float(ni.index):.2f} "
                      f"(95% CI {float(ni.low):.2f}–{float(ni.high):.2f}); "
                      f"the α-stable dynamic's index {self.alpha:.2f}"]  # fmt: skip
        for sw in swap_ratios(self).values():
            lines.append(
                f"swap {sw['part']}: τ {sw['with_part']} / τ {sw['without']} = {sw['ratio']:.3f} "
                f"(95% CI {sw['ratio_low']:.3f}–{sw['ratio_high']:.3f}; per point "
                f"{sw['low']:.3f}–{sw['high']:.3f}, χ²/dof {sw['chi2_per_dof']:.2f})"
            )
        return "\n".join(lines)


def ranking_rows(rankings: dict[str, stats.EscapeLawRanking]) -> list[dict]:
    """One row per (dynamic, law) of rankings by dynamic: `k`, its error, `χ²/dof`, Δχ²
    and the dynamic's best law (the fits tables of §6.7, on the finite sum and the network)."""
    return [
        dict(
            dynamic=dyn,
            law=law,
            k=fit.k,
            k_se=fit.k_se,
            chi2_per_dof=fit.chi2_per_dof,
            delta_chi2=ranking.delta_chi2[law],
            best=ranking.best.value,
        )
        for dyn, ranking in rankings.items()
        for law, fit in ranking.fits.items()
    ]


def _stable_scale(cfg: EscapeLawsConfig, alpha: float) -> float:
    # the SDE's noise term is (η/b)^(1 − 1/α) c dL; with c = sqrt(σ_g/2) b^(1/2 − 1/α) a
    # step of length η jumps η sqrt(σ_g/(2b)) S, Langevin's Gaussian at α = 2
    return math.sqrt(cfg.sigma_g / 2) * cfg.batch_size ** (0.5 - 1 / alpha)


def run_escape_laws(
    config: EscapeLawsConfig | None = None, *, progress: bool = False
) -> EscapeLawsResult:
    """Mean exit times of each dynamic over the `(ΔL, h)` grid, and the rival laws ranked
    on each dynamic's times (docs/theory.md §6.7)."""
    cfg = config or EscapeLawsConfig()
    key = jax.random.key(cfg.seed)
    k_u, k_c, k_run = jax.random.split(key, 3)
    v = cfg.var_u
    u = jax.random.gamma(k_u, 1 / v, (cfg.n_samples, 1)) * v
    c0 = jax.random.normal(k_c, (cfg.n_samples, 1))
    eta, b = cfg.learning_rate, cfg.batch_size
    # SGD's per-sample gradient noise at w*: the basins differ only by scale, so one h
    # gives its stable index for all
    first = walled_basin(u, c0, cfg.curvatures[0], cfg.sigma_g)
    g = np.asarray(jax.vmap(_sample_grad, (None, 0))(first.minimum, first.data)).ravel()
    noise_index = stats.block_tail_index(g - g.mean())
    alpha = cfg.alpha
    if alpha is None:
        alpha = float(np.clip(noise_index.index, *ALPHA_RANGE))
    rows = []
    for i, h in enumerate(cfg.curvatures):
        prob = walled_basin(u, c0, h, cfg.sigma_g)
        w_star, hess = prob.minimum, float(prob.hessian[0])
        sg, sgh, sh = (float(np.asarray(m)[0]) for m in prob.gradient_noise_moments())
        models = {
            "sgd": noise.minibatch(_sample_grad, prob.data, b),
            "pld": noise.power_law(sg, sh, prob.minimum, sgh),
            "gaussian_sgd": noise.power_law(sg, sh, prob.minimum, sgh),
            "langevin": noise.isotropic(sg),
            "alpha_stable": noise.alpha_stable(alpha, _stable_scale(cfg, alpha)),
        }
        grad = jax.tree_util.Partial(_affine_grad, hess, w_star)
        for j, dl in enumerate(cfg.barriers):
            xb = math.sqrt(2 * dl / hess)
            dom = domains.box(w_star - xb, w_star + xb)
            for m, name in enumerate(cfg.dynamics):
                key = jax.random.fold_in(k_run, (i * len(cfg.barriers) + j) * 8 + m)
                s = basin_exits(
                    key,
                    cfg,
                    grad,
                    models[name],
                    w_star,
                    dom,
                    hess,
                    sgd=name in DISCRETE,
                    progress=progress,
                )
                rows.append(
                    dict(dynamic=name, curvature=hess, barrier=dl, sigma_g=sg, sigma_h=sh, **s)
                )
    rankings = {}
    for name in cfg.dynamics:
        sel = [r for r in rows if r["dynamic"] == name]
        cols = {k: np.array([r[k] for r in sel]) for k in sel[0]}
        rankings[name] = stats.rank_escape_laws(
            cols["barrier"],
            cols["curvature"],
            cols["mean_time"],
            cols["sem"],
            lr=eta,
            batch_size=b,
            sigma_g=cols["sigma_g"],
            sigma_h=cols["sigma_h"],
            alpha=alpha,
        )
    return EscapeLawsResult(cfg, rows, rankings, noise_index, alpha)


def swap_ratios(result: EscapeLawsResult) -> dict[str, dict]:
    """Per swap of `SWAPS` whose two dynamics ran: the mean over the grid of
    `log(τ_with / τ_without)`, the exit times with the part against those without it.

    Each grid point's log ratio has the standard error `sqrt((sem/τ)² + (sem'/τ')²)`; the
    mean is weighted by their inverse squares, and its standard error is widened by
    `sqrt(χ²/dof)` where the points scatter more than their errors allow (the ratio then
    depends on the point: `low`/`high` give its range).
    """
    out = {}
    for part, (a, b) in SWAPS.items():
        ra = {(r["curvature"], r["barrier"]): r for r in result.select(a)}
        rb = {(r["curvature"], r["barrier"]): r for r in result.select(b)}
        keys = sorted(set(ra) & set(rb))
        if not keys:
            continue
        ta = np.array([ra[k]["mean_time"] for k in keys])
        tb = np.array([rb[k]["mean_time"] for k in keys])
        ea = np.array([ra[k]["sem"] for k in keys]) / ta
        eb = np.array([rb[k]["sem"] for k in keys]) / tb
        logs, se = np.log(ta / tb), np.hypot(ea, eb)
        w = 1 / se**2
        mean = float(np.sum(w * logs) / np.sum(w))
        dof = max(len(keys) - 1, 1)
        chi2 = float(np.sum(w * (logs - mean) ** 2)) / dof
        err = math.sqrt(max(chi2, 1.0) / np.sum(w))
        out[part] = dict(
            part=part,
            with_part=a,
            without=b,
            log_ratio=mean,
            se=err,
            ratio=math.exp(mean),
            ratio_low=math.exp(mean - 1.96 * err),
            ratio_high=math.exp(mean + 1.96 * err),
            low=float(np.exp(logs.min())),
            high=float(np.exp(logs.max())),
            chi2_per_dof=chi2,
            points=len(keys),
        )
    return out


def swap_verdict(swap: dict) -> tuple[str, str]:
    """Whether swapping the part changed the exit times: its ratio's 95% interval
    excludes 1 (it matters), lies within 1/1.1–1.1 (it does not), or neither
    (`sdn.experiments.claims.ratio_verdict`)."""
    return ratio_verdict(swap["ratio_low"], swap["ratio_high"])


def recognition_verdict(result: EscapeLawsResult, dynamic: str) -> tuple[str, str]:
    """Whether the ranking names `dynamic`'s own law (the controls of §6.7)."""
    ranking, own = result.rankings[dynamic], OWN_LAW[dynamic]
    fit = ranking.fits[own]
    text = f"best {ranking.best.value}; own law k = {fit.k:.2f} ± {fit.k_se:.2f}"
    rivals = ", ".join(f"{law} Δχ² {d:.1f}" for law, d in ranking.delta_chi2.items() if law != own)
    if ranking.best.value == own:
        return SUPPORTED, f"{text} ({rivals})"
    if ranking.best.value == "undecided":
        return INCONCLUSIVE, f"{text}: a rival within the noise ({rivals})"
    return NOT_SUPPORTED, f"{text} ({rivals})"


# --------------------------------------------------------------------------- the report


def escape_laws_section(out: Path, mode: str, config=None) -> Section:
    """§6.7: the rival escape laws ranked on the same runs."""
    from sdn.experiments import plots

    cfg = config or (EscapeLawsConfig.quick() if mode == "quick" else EscapeLawsConfig.full())
    res = run_escape_laws(cfg)
    sec = Section("escape_laws", "§6.7 The rival escape laws", config=asdict(cfg))
    csvs = {
        "escape_laws": res.rows,
        "escape_laws_fits": res.fit_rows(),
        "escape_laws_swaps": list(swap_ratios(res).values()),
    }
    outputs(sec, out, res, plots.plot_escape_laws, csvs)
    grid = f"{len(cfg.barriers)} barriers × {len(cfg.curvatures)} curvatures"
    controls = "The ranking recognises each law on its own dynamic: "
    for dyn, claim in (
        ("pld", controls + "the power-law SDE follows the power law"),
        ("langevin", controls + "Langevin follows Kramers' law"),
        ("alpha_stable", controls + f"α-stable noise (α = {res.alpha:.2f}) follows the Lévy law"),
        (
            "gaussian_sgd",
            "SGD with its noise made Gaussian (the minibatch's covariance at each state, "
            "steps of η) follows the power law",
        ),
    ):
        if dyn in res.rankings:
            verdict, reason = recognition_verdict(res, dyn)
            sec.claims.append(
                Claim(
                    "6.7",
                    claim,
                    f"{res.rankings[dyn].best.value} ({grid})",
                    OWN_LAW[dyn],
                    verdict,
                    reason,
                )
            )
    if "sgd" in res.rankings:
        r = res.rankings["sgd"]
        fits = "; ".join(
            f"{law} k = {f.k:.2f} ± {f.k_se:.2f}, Δχ² {r.delta_chi2[law]:.1f}"
            for law, f in r.fits.items()
        )
        ni = res.noise_index
        sec.claims.append(
            Claim(
                "6.7",
                "Which law real SGD's escape follows on the finite-sum basin",
                f"{r.best.value}: {fits}",
                f"gradient noise stable index {float(ni.index):.2f} (95% CI {float(ni.low):.2f}–"
                f"{float(ni.high):.2f})",
                REPORTED,
            )
        )
    labels = {
        "noise law": "the law of SGD's noise (minibatch draws against a normal of the same "
        "covariance, both in steps of η)",
        "time step": "the time step (steps of η against the SDE, both Gaussian)",
    }
    for part, sw in swap_ratios(res).items():
        sec.claims.append(
            Claim(
                "6.7",
                f"Swapping one part of SGD's noise changes its exit times: {labels[part]}",
                f"τ {sw['with_part']} / τ {sw['without']} = {sw['ratio']:.3g} (95% CI "
                f"{sw['ratio_low']:.3g}–{sw['ratio_high']:.3g}); per point "
                f"{sw['low']:.3g}–{sw['high']:.3g} (χ²/dof {sw['chi2_per_dof']:.3g}, "
                f"{sw['points']} points)",
                "1 where the part does not matter",
                *swap_verdict(sw),
            )
        )
    return sec


__all__ = [
    "DISCRETE",
    "DYNAMICS",
    "OWN_LAW",
    "SWAPS",
    "EscapeLawsConfig",
    "EscapeLawsResult",
    "escape_laws_section",
    "recognition_verdict",
    "ranking_rows",
    "run_escape_laws",
    "swap_ratios",
    "swap_verdict",
]
