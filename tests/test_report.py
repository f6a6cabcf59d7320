"""`sdn reproduce`: the report is written from the run's own numbers."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sdn.experiments.tails import TailsConfig
from sdn.report import reproduce

REPO = Path(__file__).resolve().parent.parent
STORED_QUICK_REPORT = REPO / "docs" / "figures" / "report_quick.md"
REGENERATE = (
    "sdn reproduce --quick --out sdn-out/quick && cp sdn-out/quick/report.md "
    "docs/figures/report_quick.md && cp sdn-out/quick/*.png docs/figures/"
)


def _platform(report_text: str) -> str:
    """Where a report was made: devices, machine and jax version (its numbers depend on it)."""
    return re.search(r" s on (.*?)\. Every number", report_text).group(1)


def _comparable(report_text: str) -> list[str]:
    """The report without what changes from run to run of the same code: the date, the
    runtimes, and the `seconds` column of a section's table."""
    lines, drop_last_column = [], False
    for line in report_text.splitlines():
        line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, \d+ s on", "<date>, <seconds> on", line)
        if re.fullmatch(r"Runtime [0-9.]+ s\.", line):
            continue
        if line.startswith("```"):
            drop_last_column = False
        elif line.rstrip().endswith(" seconds"):
            drop_last_column = True
        if drop_last_column:
            line = line.rstrip().rsplit(None, 1)[0]
        lines.append(line.rstrip())
    return lines


def test_comparable_ignores_only_dates_and_runtimes():
    text = STORED_QUICK_REPORT.read_text()
    assert _comparable(re.sub(r"Runtime [0-9.]+ s", "Runtime 1.5 s", text)) == _comparable(text)
    changed = text.replace("| supported |", "| **not supported** |", 1)
    assert changed != text and _comparable(changed) != _comparable(text)


def _nu(report_text: str) -> float:
    return float(re.search(r"Student-t of §3 \(ν = ([0-9.]+)\)", report_text).group(1))


def test_report_follows_the_parameters(tmp_path):
    small = dict(n_paths=500, n_steps=200, n_samples=200)
    texts = []
    for lr in (0.2, 0.4):
        out = tmp_path / f"lr{lr}"
        reproduce(
            out,
            sections=["tails"],
            configs={"tails": TailsConfig(learning_rate=lr, **small)},
            log=lambda s: None,
        )
        texts.append((out / "report.md").read_text())
        assert (out / "tails.csv").exists() and (out / "tails.png").exists()
        assert (out / "manifest.json").exists()
    # ν = 1 + 2bh/(ησ_H): doubling η roughly halves ν − 1, and the report shows it.
    nu_a, nu_b = _nu(texts[0]), _nu(texts[1])
    assert nu_a != nu_b
    assert (nu_a - 1) / (nu_b - 1) == pytest.approx(2.0, rel=1e-3)
    assert "| 6.2 |" in texts[0] and "verdict" in texts[0]


def test_bad_section_and_mode(tmp_path):
    with pytest.raises(ValueError, match="section"):
        reproduce(tmp_path, sections=["nope"])
    with pytest.raises(ValueError, match="mode"):
        reproduce(tmp_path, mode="huge")


@pytest.mark.slow
def test_cli_quick_smoke_run(tmp_path):
    """The README's main job, exactly as a user runs it (the console script)."""
    proc = subprocess.run(
        [sys.executable, "-m", "sdn.cli", "reproduce", "--quick", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| verdict |" in report and (tmp_path / "o" / "escape.png").exists()
    for section in ("6.1", "6.2", "6.3", "6.4"):
        assert f"| {section} |" in report
    # The quick run is deterministic: the report stored in the docs must be this one.
    stored = STORED_QUICK_REPORT.read_text()
    if _platform(stored) != _platform(report):
        pytest.skip(f"stored report made on {_platform(stored)}, this run on {_platform(report)}")
    diff = list(difflib.unified_diff(_comparable(stored), _comparable(report), lineterm="", n=0))
    assert not diff, (
        "docs/figures/report_quick.md is out of date; regenerate it with\n  "
        + REGENERATE
        + "\n"
        + "\n".join(diff[:40])
    )
