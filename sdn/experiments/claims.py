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
