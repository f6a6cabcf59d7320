"""`sdn reproduce`: run the measurements of SCIENCE.md §6, write figures, CSV and a report.

Each section runs one experiment of `sdn.experiments`, writes the CSV behind its figure,
the figure itself, and a list of claims: the measured number beside the theoretical
value or the paper's claim, and whether the measurement supports it. `report.md` is
written from those claims only, so every number in it comes from this run.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("quick", "full")


@dataclass(frozen=True)
class Claim:
    """One line of the report: what is claimed, what was measured, and the verdict."""

    section: str
    claim: str
    measured: str
    expected: str
    supported: bool | None  # None: reported, not judged


@dataclass
class Section:
    """The outcome of one section: its claims, files written, a table, and its runtime."""

    key: str
    title: str
    claims: list[Claim] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    table: str = ""
    seconds: float = 0.0
    config: dict = field(default_factory=dict)


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write tidy rows (dicts with the same keys) to CSV, atomically."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return str(x)
    return f"{x:.{digits}g}"


# --------------------------------------------------------------------------- sections


def tails_section(out: Path, mode: str, config=None) -> Section:
    """§6.2: stationary tails of SGD, PLD and Langevin."""
    from sdn.experiments import plots
    from sdn.experiments.tails import TailsConfig, run_tails

    cfg = config or (TailsConfig.quick() if mode == "quick" else TailsConfig())
    res = run_tails(cfg)
    sec = Section("tails", "§6.2 Heavy tails of the stationary law", config=asdict(cfg))
    sec.files.append(write_csv(res.rows, out / "tails.csv").name)
    plots.plot_tails(res, out / "tails.png")
    sec.files.append("tails.png")
    sec.table = res.table()
    rows = {(r["dynamic"], r["statistic"]): r for r in res.rows}
    qs = [s for (d, s) in rows if d == "pld" and s.startswith("|x| quantile")]

    def inside(dyn, stat, key):
        r = rows[(dyn, stat)]
        return r["lower"] <= r[key] <= r["upper"]

    pld_ok = all(inside("pld", q, "student_t") for q in qs)
    top = qs[-1]
    sec.claims.append(
        Claim(
            "6.2",
            "PLD with the measured σ_g, σ_H is stationary at the Student-t of §3 "
            f"(ν = {res.pld_df:.2f})",
            f"|x| quantile {top.split()[-1]}: {_fmt(rows[('pld', top)]['measured'])} "
            f"(95% CI {_fmt(rows[('pld', top)]['lower'])}–{_fmt(rows[('pld', top)]['upper'])}); "
            f"all {len(qs)} quantile CIs contain the theory: {pld_ok}",
            f"{_fmt(rows[('pld', top)]['student_t'])}",
            pld_ok,
        )
    )
    lan_ok = all(inside("langevin", q, "gaussian") for q in qs)
    sec.claims.append(
        Claim(
            "6.2",
            "Langevin with the same σ_g is Gaussian (no heavy tail)",
            f"|x| quantile {top.split()[-1]}: {_fmt(rows[('langevin', top)]['measured'])}; "
            f"all quantile CIs contain the Gaussian's: {lan_ok}",
            f"{_fmt(rows[('langevin', top)]['gaussian'])}",
            lan_ok,
        )
    )
    sgd = rows[("sgd", top)]
    heavier = sgd["lower"] > sgd["gaussian"]
    sec.claims.append(
        Claim(
            "6.2",
            "Real SGD on a finite-sum quadratic has tails far heavier than the Gaussian prediction",
            f"|x| quantile {top.split()[-1]}: {_fmt(sgd['measured'])} "
            f"(95% CI {_fmt(sgd['lower'])}–{_fmt(sgd['upper'])})",
            f"Gaussian {_fmt(sgd['gaussian'])}, Student-t {_fmt(sgd['student_t'])}",
            heavier,
        )
    )
    hill = rows[("sgd", "Hill tail index")]
    sec.claims.append(
        Claim(
            "6.2",
            "SGD's tail index is close to, not exactly at, the PLD prediction ν",
            f"Hill index {_fmt(hill['measured'])} (95% CI {_fmt(hill['lower'])}–"
            f"{_fmt(hill['upper'])}); PLD ensemble "
            f"{_fmt(rows[('pld', 'Hill tail index')]['measured'])}",
            f"ν = {_fmt(res.pld_df)}",
            None,
        )
    )
    return sec


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
    sec.files.append(write_csv(res.rows, out / "escape.csv").name)
    plots.plot_escape(res, out / "escape.png")
    sec.files.append("escape.png")
    sec.table = res.table()
    worst = 0.0
    for r in res.rows:
        if math.isfinite(r["exact_time"]) and r["sem"] > 0:
            worst = max(worst, abs(r["mean_time"] - r["exact_time"]) / r["sem"])
    sec.claims.append(
        Claim(
            "6.3",
            "Monte Carlo exit times of the diffusions agree with the exact quadrature",
            f"largest deviation {worst:.2f} standard errors over "
            f"{sum(math.isfinite(r['exact_time']) for r in res.rows)} points",
            "< 4 (plus a few % of Euler bias)",
            worst < 4.0 + 1.0,
        )
    )
    slopes = {
        d: log_time_slope(res.select("sharpness", d), "curvature")
        for d in ("sgd", "pld", "langevin", "anisotropic")
    }
    lan = slopes["langevin"]
    for name in ("sgd", "pld"):
        s, se = slopes[name]
        sec.claims.append(
            Claim(
                "6.3",
                f"{name.upper()} leaves sharp minima faster than Langevin does "
                f"(σ_g held fixed): d log τ / d log h more negative",
                f"{s:.2f} ± {se:.2f}",
                f"Langevin {lan[0]:.2f} ± {lan[1]:.2f} (theory: −1, prefactor only)",
                s < lan[0] - 4 * math.hypot(se, lan[1]),
            )
        )
    b_slopes = {
        d: log_time_slope(res.select("barrier", d), "barrier", log_x=False)
        for d in ("pld", "langevin")
    }
    eta, b, sg = config.learning_rate, config.batch_size, config.sigma_g
    (sp, sep), (sl, sel) = b_slopes["pld"], b_slopes["langevin"]
    sec.claims.append(
        Claim(
            "6.3",
            "log τ grows with the barrier more slowly for PLD (logarithmically) than for "
            "Langevin (linearly, slope 2b/(ησ_g))",
            f"d log τ / dΔL: PLD {sp:.1f} ± {sep:.1f}, Langevin {sl:.1f} ± {sel:.1f}",
            f"Langevin → {2 * b / (eta * sg):.1f}; PLD below it",
            sp < sl - 2 * math.hypot(sep, sel),
        )
    )
    return sec


SECTIONS: dict[str, Callable[..., Section]] = {
    "tails": tails_section,
    "escape": escape_section,
}


# --------------------------------------------------------------------------- the report


def _verdict(supported: bool | None) -> str:
    return {True: "supported", False: "**not supported**", None: "reported"}[supported]


def render(sections: Sequence[Section], mode: str, seconds: float) -> str:
    """The Markdown report from the sections' claims and tables."""
    import jax

    lines = [
        "# sdn reproduce — report",
        "",
        f"Mode `{mode}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{seconds:.0f} s on {jax.device_count()} {jax.devices()[0].platform} device(s) "
        f"({platform.machine()}), jax {jax.__version__}. Every number below was measured in "
        "this run; regenerate with `sdn reproduce --" + mode + " --out DIR`.",
        "",
        "| § | claim | measured | theory / paper | verdict |",
        "|---|---|---|---|---|",
    ]
    for sec in sections:
        for c in sec.claims:
            cells = (c.section, c.claim, c.measured, c.expected, _verdict(c.supported))
            lines.append("| " + " | ".join(cells) + " |")
    for sec in sections:
        lines += ["", f"## {sec.title}", ""]
        lines += [f"![{f}]({f})" for f in sec.files if f.endswith(".png")]
        lines += ["", "Data: " + ", ".join(f"`{f}`" for f in sec.files if f.endswith(".csv"))]
        lines += ["", f"Runtime {sec.seconds:.1f} s.", "", "```", sec.table, "```"]
    return "\n".join(lines) + "\n"


def reproduce(
    out: str | Path = "sdn-out",
    *,
    mode: str = "quick",
    sections: Sequence[str] | None = None,
    configs: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Run the sections of SCIENCE.md §6, write figures, CSV and `report.md` into `out`.

    Args:
      out: output folder (created).
      mode: `"quick"` (CPU minutes) or `"full"` (the sizes a GPU affords).
      sections: which sections to run (default: all, in order).
      configs: per-section experiment configs that replace the mode's defaults.
      log: where progress lines go.

    Returns:
      The path of `report.md`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    names = list(SECTIONS) if sections is None else list(sections)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section {unknown[0]!r}; choose from {list(SECTIONS)}")
    configs = configs or {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done = []
    for name in names:
        log(f"[{name}] running ({mode})")
        t = time.perf_counter()
        sec = SECTIONS[name](out, mode, configs.get(name))
        sec.seconds = time.perf_counter() - t
        for c in sec.claims:
            log(f"[{name}] {_verdict(c.supported):>17}: {c.claim} — {c.measured}")
        done.append(sec)
    total = time.perf_counter() - start
    report = out / "report.md"
    report.write_text(render(done, mode, total))
    manifest = {
        "mode": mode,
        "seconds": total,
        "sections": {s.key: {"config": _jsonable(s.config), "seconds": s.seconds} for s in done},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    log(f"wrote {report} ({total:.0f} s)")
    return report


def _jsonable(x):
    if is_dataclass(x):
        x = asdict(x)
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
