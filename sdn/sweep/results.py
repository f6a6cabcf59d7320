"""The tidy table of a sweep: one row per point and statistic, and how the run went.

A row is `point, <each parameter>, statistic, value`, all as text exactly as written to
CSV (`format_value`), so a table read back from disk equals the one computed.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdn.sweep.designs import Design

RESULTS = "results.csv"

__all__ = ["SweepResult"]


@dataclass(frozen=True)
class SweepResult:
    """The tidy table of a sweep and how the run went.

    Attributes:
      table: columns `point` (int), each parameter, `statistic` (str), `value` (float),
        one row per point and statistic, sorted by point.
      parameters: the parameter names.
      statistics: the statistic names, in the order `f` returned them.
      out: the results folder, or None.
      points_run / points_skipped: points computed now / found finished in `out`.
      seconds: wall time of this call.
      n_devices: devices the points were sharded over.
    """

    table: dict[str, np.ndarray]
    parameters: tuple[str, ...]
    statistics: tuple[str, ...]
    out: Path | None
    points_run: int
    points_skipped: int
    seconds: float
    n_devices: int

    @property
    def n_points(self) -> int:
        return self.points_run + self.points_skipped

    def values(self, statistic: str) -> np.ndarray:
        """One statistic for every point, `(n_points,)`, NaN where `f` did not return it."""
        if statistic not in self.statistics:
            raise ValueError(f"unknown statistic {statistic!r}; known: {list(self.statistics)}")
        out = np.full(self.n_points, np.nan)
        rows = self.table["statistic"] == statistic
        out[self.table["point"][rows]] = self.table["value"][rows]
        return out

    def format(self, parameters: Sequence[str] | None = None, max_rows: int = 50) -> str:
        """The table as text, one line per point: parameters, then statistics.

        Args:
          parameters: the parameter columns to show (default: those that vary).
          max_rows: show at most this many points (the rest are counted).
        """
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
            raise ValueError(f"max_rows must be an int >= 0, got {max_rows!r}")
        if parameters is None:
            parameters = [
                p for p in self.parameters if len(set(self.table[p].tolist())) > 1
            ] or list(self.parameters)
        unknown = [p for p in parameters if p not in self.parameters]
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}; known: {list(self.parameters)}")
        points = np.unique(self.table["point"])
        first = {}
        for row, i in enumerate(self.table["point"]):
            first.setdefault(int(i), row)
        cols = [*parameters, *self.statistics]
        lines = []
        for i in points[:max_rows]:
            r = first[int(i)]
            cells = [_short(self.table[p][r]) for p in parameters]
            cells += [_short(v) for v in (self.values(s)[i] for s in self.statistics)]
            lines.append(cells)
        width = [max([len(c), *(len(line[j]) for line in lines)]) for j, c in enumerate(cols)]
        text = ["  ".join(c.rjust(w) for c, w in zip(cols, width))]
        text += ["  ".join(c.rjust(w) for c, w in zip(line, width)) for line in lines]
        if points.size > max_rows:
            text.append(f"... {points.size - max_rows} more points")
        return "\n".join(text)

    def summary(self) -> str:
        rate = self.points_run / self.seconds if self.seconds > 0 else math.inf
        where = f", results in {self.out / RESULTS}" if self.out else ""
        return (
            f"{self.n_points} points ({self.points_run} run, {self.points_skipped} resumed) × "
            f"{len(self.statistics)} statistics in {self.seconds:.1f} s "
            f"({rate:.1f} points/s on {self.n_devices} device(s)){where}"
        )


def _short(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.5g}"
    return format_value(v)


def format_value(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return repr(float(v))
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    return str(v.item() if hasattr(v, "item") else v)


def rows_csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def header(names: Sequence[str]) -> list[str]:
    """The columns of a results table for a design with parameters `names`."""
    return ["point", *names, "statistic", "value"]


def table(rows: list[list[str]], design: Design) -> dict[str, np.ndarray]:
    """Rows (as text) to columns: `point`, the parameters, `statistic`, `value`."""
    point = np.asarray([int(r[0]) for r in rows], dtype=np.int64)
    columns = {"point": point}
    for name in design.names:
        columns[name] = design.points[name][point]
    columns["statistic"] = np.asarray([r[-2] for r in rows], dtype=str)
    columns["value"] = np.asarray([float(r[-1]) for r in rows], dtype=np.float64)
    return columns
