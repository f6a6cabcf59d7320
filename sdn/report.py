"""`sdn reproduce`: run the measurements of docs/theory.md §6, write figures, CSV and a report.

Each section runs one experiment of `sdn.experiments`, writes the CSV behind its figure,
the figure itself, and a list of claims: the measured number beside the theoretical
value or the paper's claim, and whether the measurement supports it. `report.md` is
written from those claims only, so every number in it comes from this run.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdn._io import write_atomic

# Each section lives beside its experiment; the report gathers them. The verdict helpers
# and constants are re-exported here, where earlier versions defined them.
from sdn.experiments.claims import (  # noqa: F401 (re-exported)
    Claim,
    Section,
    Verdict,
    combine_verdicts,
    effect_verdict,
    fmt,
    interval_verdict,
    write_csv,
)
from sdn.experiments.covariance import (  # noqa: F401
    covariance_section,
    quadratic_covariance_verdict,
)
from sdn.experiments.critical_batch import critical_batch_section
from sdn.experiments.escape import (  # noqa: F401
    ESCAPE_BIAS,
    ESCAPE_Z_MAX,
    escape_agreement_text,
    escape_agreement_verdict,
    escape_section,
)
from sdn.experiments.escape_laws import escape_laws_section
from sdn.experiments.large_batch import (  # noqa: F401
    PAPER_GAP,
    large_batch_section,
    large_batch_verdicts,
)
from sdn.experiments.network_escape.section import network_escape_section
from sdn.experiments.noise_tails import (  # noqa: F401
    HEAVY_MARGIN,
    heavy_index_verdict,
    noise_tails_section,
)
from sdn.experiments.sde_regime import sde_regime_section
from sdn.experiments.tails import heavier_tail_verdict, tails_section  # noqa: F401

MODES = ("quick", "full")

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, REPORTED = Verdict
VERDICTS = tuple(Verdict)

RESULTS_PAGE = "docs/results.md"
"""Where the full-size results stand, made by `sdn reproduce --full`."""


SECTIONS: dict[str, Callable[..., Section]] = {
    "covariance": covariance_section,
    "tails": tails_section,
    "noise_tails": noise_tails_section,
    "escape": escape_section,
    "large_batch": large_batch_section,
    "network_escape": network_escape_section,
    "escape_laws": escape_laws_section,
    "critical_batch": critical_batch_section,
    "sde_regime": sde_regime_section,
}


# --------------------------------------------------------------------------- the report


def _verdict(claim: Claim) -> str:
    text = {
        SUPPORTED: "supported",
        NOT_SUPPORTED: "**not supported**",
        INCONCLUSIVE: "inconclusive at this size",
        REPORTED: "reported",
    }[claim.verdict]
    return f"{text}: {claim.reason}" if claim.reason else text


def _size_lines(sections: Sequence[Section], mode: str) -> list[str]:
    """The report's opening words on run size: which sections ran at smoke size."""
    if mode != "quick" or not sections:
        return []
    names = ", ".join(sec.title.split(" ")[0] for sec in sections)
    return [
        f"**Smoke size.** Sections {names} ran at quick (smoke) size: a verdict here says "
        'what this small run can show, and "inconclusive at this size" where it cannot. '
        f"The full-size results stand in {RESULTS_PAGE}, made by "
        "`sdn reproduce --full --out DIR`.",
        "",
    ]


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
        *_size_lines(sections, mode),
        "| § | claim | measured | theory / paper | verdict |",
        "|---|---|---|---|---|",
    ]
    for sec in sections:
        for c in sec.claims:
            cells = (c.section, c.claim, c.measured, c.expected, _verdict(c))
            lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
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
    """Run the sections of docs/theory.md §6, write figures, CSV and `report.md` into `out`.

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
            log(f"[{name}] {c.verdict:>13}: {c.claim} — {c.measured}")
        done.append(sec)
    total = time.perf_counter() - start
    report = out / "report.md"
    write_atomic(report, render(done, mode, total))
    manifest = {
        "mode": mode,
        "seconds": total,
        "sections": {s.key: {"config": _jsonable(s.config), "seconds": s.seconds} for s in done},
    }
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, default=str))
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
