"""The report section of §6.5 (escape on a real network): its claims, from the result."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

from sdn.experiments.claims import Claim, Section, Verdict, fmt, outputs, ratio_verdict
from sdn.experiments.network_escape.experiment import (
    ESCAPE_RATIO_CLAIM,
    NetworkEscapeConfig,
    escape_ratio_verdict,
    run_network_escape,
)

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, REPORTED = Verdict


def network_escape_section(out: Path, mode: str, config=None) -> Section:
    """§6.5: escape from a sharp and a flat minimum of a real network, SGD against the
    power-law and Langevin predictions along the top Hessian eigenvector."""
    from sdn.experiments import plots

    cfg = config or (NetworkEscapeConfig.quick() if mode == "quick" else NetworkEscapeConfig.full())
    res = run_network_escape(cfg)
    sec = Section("network_escape", "§6.5 Escape on a real network", config=asdict(cfg))
    minima = [dict(minimum=k, **v) for k, v in res.minima.items()]
    csvs = {"network_escape": res.rows, "network_escape_minima": minima}
    outputs(sec, out, res, plots.plot_network_escape, csvs)
    flat, sharp = res.minima["flat"], res.minima["sharp"]
    sec.claims.append(
        Claim(
            "6.5",
            "Two minima of the same training loss and clearly different sharpness (the sharp "
            "one the flat one rescaled, docs/theory.md §6.5)",
            f"top eigenvalue {fmt(sharp['curvature'])} vs {fmt(flat['curvature'])} "
            f"(× {sharp['curvature'] / flat['curvature']:.2f}); train loss "
            f"{sharp['train_loss']:.4f} vs {flat['train_loss']:.4f}",
            "a factor ≥ 3",
            SUPPORTED if sharp["curvature"] >= 3 * flat["curvature"] else NOT_SUPPORTED,
        )
    )
    claim = ESCAPE_RATIO_CLAIM
    word, reason = escape_ratio_verdict(res)
    pld = flat["pred_power_law"] / sharp["pred_power_law"]
    lan = flat["pred_langevin"] / sharp["pred_langevin"]
    measured = "not measured"
    if "sgd" in cfg.dynamics:
        ratio, se = res.ratio("sgd")
        measured = (
            f"SGD {ratio:.3g} (95% CI {ratio * math.exp(-1.96 * se):.3g}–"
            f"{ratio * math.exp(1.96 * se):.3g})"
        )
    sec.claims.append(
        Claim(
            "6.5",
            claim + " (flat/sharp ratio of mean escape steps along v)",
            measured,
            f"power law {fmt(pld)}, Langevin (Kramers) {fmt(lan)}",
            word,
            reason,
        )
    )
    by = {(r["minimum"], r["dynamics"]): r for r in res.rows}
    if ("flat", "power_law") in by:
        sec.claims.append(
            Claim(
                "6.5",
                "Gradient descent plus the fitted power law escapes as its 1-D prediction says",
                "flat {:.0f} ± {:.0f}, sharp {:.1f} ± {:.1f} steps".format(
                    by["flat", "power_law"]["mean_steps"],
                    by["flat", "power_law"]["stderr"],
                    by["sharp", "power_law"]["mean_steps"],
                    by["sharp", "power_law"]["stderr"],
                ),
                f"flat {fmt(flat['pred_power_law'])}, sharp {fmt(sharp['pred_power_law'])}",
                REPORTED,
            )
        )
    sec.claims += swap_claims(res)
    acc = "; ".join(
        f"{r['minimum']} {r['dynamics']} {100 * r['test_accuracy']:.1f}%" for r in res.rows
    )
    sec.claims.append(
        Claim(
            "6.5",
            "Final test accuracy after each escape dynamic (mean over chains)",
            acc,
            f"at the minima {100 * flat['test_accuracy']:.1f}%",
            REPORTED,
        )
    )
    return sec


SWAPS = (
    (
        ("sgd", "gaussian"),
        "Swapping one part of SGD's noise changes its escape: the law of the noise "
        "(minibatch draws against a normal of the minibatch's covariance at each state)",
    ),
    (
        ("gaussian", "power_law"),
        "Swapping one part of SGD's noise changes its escape: the state dependence of "
        "the whole network (its covariance at each state against the 1-D power law along v)",
    ),
)
"""The parts of SGD's noise swapped one at a time: (with the part, without it), claim."""


def swap_claims(res) -> list[Claim]:
    """One claim per swap of `SWAPS` whose dynamics ran at both minima: the ratios of mean
    escape steps with their 95% intervals, judged at the flat minimum (`ratio_verdict`;
    inconclusive where a chain never left, the mean steps being then censored)."""
    by = {(r["minimum"], r["dynamics"]): r for r in res.rows}
    out = []
    for (a, b), claim in SWAPS:
        if not all((m, d) in by for m in ("flat", "sharp") for d in (a, b)):
            continue
        parts, ci = [], {}
        for m in ("flat", "sharp"):
            ra, rb = by[m, a], by[m, b]
            ratio = ra["mean_steps"] / rb["mean_steps"]
            se = math.hypot(ra["stderr"] / ra["mean_steps"], rb["stderr"] / rb["mean_steps"])
            ci[m] = (ratio * math.exp(-1.96 * se), ratio * math.exp(1.96 * se))
            parts.append(f"{m} {ratio:.3g} ({ci[m][0]:.3g}–{ci[m][1]:.3g})")
        word, reason = ratio_verdict(*ci["flat"])
        if any(by[m, d]["censored"] for m in ("flat", "sharp") for d in (a, b)):
            word, reason = INCONCLUSIVE, "censored escapes: some chains never left"
        out.append(
            Claim(
                "6.5",
                claim + "; verdict at the flat minimum",
                f"mean steps {a}/{b}: " + "; ".join(parts),
                "1 where the part does not matter",
                word,
                reason,
            )
        )
    return out
