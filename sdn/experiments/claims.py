"""What every report section is made of: claims with a named verdict, and the files written.

Low in the experiments: each experiment's report section and `sdn.report`, which assembles
them, both import it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sdn._io import write_atomic


class Verdict(StrEnum):
    """What a run says about a claim; renders as the word the report prints."""

    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    INCONCLUSIVE = "inconclusive"
    REPORTED = "reported"


_VALUES = tuple(v.value for v in Verdict)


@dataclass(frozen=True)
class Claim:
    """One line of the report: what is claimed, what was measured, and the verdict.

    `verdict` is a `Verdict` (its plain word is accepted): "supported" or "not supported"
    only when the run could have shown the effect in question (its confidence interval
    excludes one of "no effect" and "the effect"), "inconclusive" when it could not, and "reported"
    for numbers shown without a judgement. `reason` says why, in the same row.
    """

    section: str
    claim: str
    measured: str
    expected: str
    verdict: Verdict
    reason: str = ""

    def __post_init__(self):
        if self.verdict not in _VALUES:
            raise ValueError(f"verdict must be one of {_VALUES}, got {self.verdict!r}")
        object.__setattr__(self, "verdict", Verdict(self.verdict))


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
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, text.getvalue())


def outputs(sec: Section, out: Path, res: Any, plot: Callable, csvs: dict[str, Any]) -> None:
    """Write a section's CSV files (name → rows) and its figure `<key>.png`, and take the
    result's table."""
    for name, rows in csvs.items():
        sec.files.append(write_csv(rows, out / f"{name}.csv").name)
    plot(res, out / f"{sec.key}.png")
    sec.files.append(f"{sec.key}.png")
    sec.table = res.table()


def fmt(x: float, digits: int = 3) -> str:
    """A number as the report prints it: `digits` significant digits, non-finite as is."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return str(x)
    return f"{x:.{digits}g}"


SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, REPORTED = Verdict


def effect_verdict(diff: float, se: float, effect: float, *, z: float = 2.0) -> tuple[str, str]:
    """Verdict on a claim that `diff > 0`, from its estimate, standard error and effect size.

    `effect` is the size of the effect the claim is about (from theory, the paper or this
    run). The interval `diff ± z·se` decides: above 0 → supported; below `effect` (the run
    could have shown the effect and did not) → not supported; holding both 0 and
    `effect` → inconclusive at this size.

    Example:
      >>> effect_verdict(3.0, 1.0, 2.0)[0], effect_verdict(-1.0, 0.2, 2.0)[0]
      (<Verdict.SUPPORTED: 'supported'>, <Verdict.NOT_SUPPORTED: 'not supported'>)
      >>> verdict, reason = effect_verdict(1.0, 1.0, 2.0)
      >>> verdict.value, reason
      ('inconclusive', 'the 2-se interval [-1, 3] holds both no effect (0) and the effect (2)')
    """
    if not all(math.isfinite(v) for v in (diff, se, effect)):
        return INCONCLUSIVE, "not measurable in this run (a non-finite estimate)"
    lo, hi = diff - z * se, diff + z * se
    band = f"the {z:g}-se interval [{lo:.3g}, {hi:.3g}]"
    if lo > 0:
        return SUPPORTED, f"{band} excludes 0"
    if hi < effect:
        return NOT_SUPPORTED, f"{band} excludes the effect ({effect:.3g})"
    return INCONCLUSIVE, f"{band} holds both no effect (0) and the effect ({effect:.3g})"


def ratio_verdict(low: float, high: float, *, equivalence: float = 1.1) -> tuple[str, str]:
    """Verdict on "the ratio differs from 1" from its 95% interval `[low, high]`.

    Supported when the interval excludes 1; not supported when it lies within
    `1/equivalence`–`equivalence` (whatever the difference is, it is too small to
    matter); inconclusive otherwise.

    Example:
      >>> ratio_verdict(1.2, 1.5)[0], ratio_verdict(0.95, 1.04)[0], ratio_verdict(0.8, 1.3)[0]
      (<Verdict.SUPPORTED: 'supported'>, <Verdict.NOT_SUPPORTED: 'not supported'>, \
<Verdict.INCONCLUSIVE: 'inconclusive'>)
    """
    band = f"the 95% CI [{low:.3g}, {high:.3g}]"
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE, "not measurable in this run (a non-finite estimate)"
    if low > 1 or high < 1:
        return SUPPORTED, f"{band} excludes 1"
    if 1 / equivalence < low and high < equivalence:
        return NOT_SUPPORTED, f"{band} lies within 1/{equivalence:g}–{equivalence:g}"
    return INCONCLUSIVE, f"{band} holds 1 and ratios beyond {equivalence:g}"


def interval_verdict(
    lower: float, upper: float, theory: float, alternative: float
) -> tuple[str, str]:
    """Verdict on "the quantity equals `theory`" from a confidence interval.

    Not supported when the interval excludes `theory`; supported when it holds `theory`
    and excludes `alternative` (the rival prediction, so the run could tell them apart);
    inconclusive when it holds both.

    Example:
      >>> interval_verdict(2.9, 4.3, 3.6, 2.1)[0], interval_verdict(1.0, 5.0, 3.6, 2.1)[0]
      (<Verdict.SUPPORTED: 'supported'>, <Verdict.INCONCLUSIVE: 'inconclusive'>)
    """
    band = f"the 95% CI [{lower:.3g}, {upper:.3g}]"
    if not lower <= theory <= upper:
        return NOT_SUPPORTED, f"{band} excludes the prediction {theory:.3g}"
    if lower <= alternative <= upper:
        return INCONCLUSIVE, f"{band} holds both the prediction and the rival {alternative:.3g}"
    return SUPPORTED, f"{band} holds the prediction and excludes the rival {alternative:.3g}"


def combine_verdicts(verdicts: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """All supported → supported; any not supported → that one; else the first inconclusive."""
    for wanted in (NOT_SUPPORTED, INCONCLUSIVE):
        for v in verdicts:
            if v[0] == wanted:
                return v
    return SUPPORTED, "; ".join(dict.fromkeys(r for _, r in verdicts))
