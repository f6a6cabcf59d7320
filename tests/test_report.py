"""`sdn reproduce`: the report is written from the run's own numbers."""

from __future__ import annotations

import difflib
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sdn import report
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


# Chaotic runs: the sharp minimum's power-law chains run away (ν < 2, docs/theory.md §6.5);
# their floating-point results differ between CPUs under the same platform string (seen:
# 44.2% test accuracy against 43.7% stored). A line of the report that holds such a number
# is compared within a relative tolerance; a number stated as `x ± e` there within 3 e.
CHAOTIC_LINES = {
    r"^sharp\s+power_law\s": 0.10,  # §6.5 table: the runaway chains' row
    r"Final test accuracy after each escape dynamic": 0.10,  # §6.5 claim: the same chains
}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?%?|nan|inf")
_STATED = re.compile(rf"({_NUMBER.pattern})\s*±\s*({_NUMBER.pattern})")


def _value(token: str) -> float:
    return float(token.rstrip("%"))


def _within(stored: str, fresh: str, rel: float, error: float | None) -> bool:
    a, b = _value(stored), _value(fresh)
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return stored == fresh
    if abs(a) >= 1e6:  # a runaway loss: only its order of magnitude is reproducible
        return b != 0 and abs(math.log10(abs(b) / abs(a))) <= 1.0
    if error is not None and abs(a - b) <= 3 * error:
        return True
    return abs(a - b) <= rel * max(abs(a), abs(b))


def compare_reports(stored: str, fresh: str) -> list[str]:
    """Where a fresh report differs from the stored one beyond what its run reproduces.

    Text and every number are compared exactly, except on the lines `CHAOTIC_LINES`
    names: there each number within its relative tolerance, or within 3 of its stated
    errors. Returns one message per difference, naming the line, the number and how far
    it moved."""
    old, new = _comparable(stored), _comparable(fresh)
    if len(old) != len(new):
        diff = difflib.unified_diff(old, new, lineterm="", n=0)
        return [f"the reports have {len(old)} and {len(new)} lines", *list(diff)[:40]]
    problems = []
    for i, (a, b) in enumerate(zip(old, new, strict=True)):
        if a == b:
            continue
        rel = next((r for pat, r in CHAOTIC_LINES.items() if re.search(pat, a)), None)
        nums_a, nums_b = _NUMBER.findall(a), _NUMBER.findall(b)
        if rel is None or _NUMBER.sub("#", a) != _NUMBER.sub("#", b) or len(nums_a) != len(nums_b):
            problems.append(f"line {i + 1} changed:\n  stored: {a}\n  fresh:  {b}")
            continue
        errors = {m.start(1): _value(m.group(2)) for m in _STATED.finditer(a)}
        starts = [m.start() for m in _NUMBER.finditer(a)]
        for start, x, y in zip(starts, nums_a, nums_b, strict=True):
            if x != y and not _within(x, y, rel, errors.get(start)):
                problems.append(
                    f"line {i + 1}: {x} moved to {y} (by {_value(y) - _value(x):+.3g}, "
                    f"beyond {rel:.0%} or 3 stated errors): {a}"
                )
    return problems


def _nudge(text: str, pattern: str, factor: float) -> tuple[str, str, str]:
    """`text` with the first number after `pattern` multiplied by `factor`; the number
    before and after, as printed."""
    m = re.search(pattern + r"(\d+\.\d)", text)
    old = m.group(1)
    new = f"{float(old) * factor:.1f}"
    return text[: m.start(1)] + new + text[m.end(1) :], old, new


def test_the_comparison_tolerates_chaotic_numbers_and_catches_moved_ones():
    stored = STORED_QUICK_REPORT.read_text()
    assert compare_reports(stored, stored) == []
    # the runaway chains on another CPU (the reported case: 43.7% against 44.2%, +1.1%):
    # within the tolerance, in the claim and in the table's row
    claim = r"sharp power_law "
    row = r"\nsharp +power_law +[0-9.]+ +[0-9.]+ +[0-9.]+ +"
    chaotic, _, _ = _nudge(stored, claim, 1.011)
    chaotic, _, _ = _nudge(chaotic, row, 1.011)
    assert chaotic != stored and compare_reports(stored, chaotic) == []
    # the same number moved beyond its tolerance is named, with the distance
    far, old, new = _nudge(stored, claim, 1.25)
    (problem,) = compare_reports(stored, far)
    assert f"{old}% moved to {new}% (by +" in problem
    # a deterministic number is compared exactly, even inside its stated error
    m = re.search(r"σ_H = (\d+\.\d+) ± (\d+\.\d+)", stored)
    moved_value = f"{float(m.group(1)) + 0.1:.{len(m.group(1).split('.')[1])}f}"
    moved = stored.replace(m.group(0), f"σ_H = {moved_value} ± {m.group(2)}")
    (problem,) = compare_reports(stored, moved)
    assert f"σ_H = {m.group(1)}" in problem and f"σ_H = {moved_value}" in problem
    assert compare_reports(stored, stored.replace("| supported:", "| not supported:", 1))


def test_comparable_ignores_only_dates_and_runtimes():
    text = STORED_QUICK_REPORT.read_text()
    assert _comparable(re.sub(r"Runtime [0-9.]+ s", "Runtime 1.5 s", text)) == _comparable(text)
    changed = text.replace("| supported:", "| not supported:", 1)
    assert changed != text and _comparable(changed) != _comparable(text)


def test_report_files_and_first_lines(tmp_path):
    out = tmp_path / "r"
    reproduce(
        out,
        sections=["tails"],
        configs={"tails": TailsConfig(n_paths=500, n_steps=200, n_samples=200)},
        log=lambda s: None,
    )
    for name in ("tails.csv", "tails.png", "manifest.json"):
        assert (out / name).exists()
    text = (out / "report.md").read_text()
    head = "\n".join(text.splitlines()[:6])
    assert "Smoke size" in head and "§6.2" in head and report.RESULTS_PAGE in head
    # the header's numbers are this run's: its seconds, its devices and its jax
    import json

    import jax

    seconds = json.loads((out / "manifest.json").read_text())["seconds"]
    platform = f"{jax.device_count()} {jax.devices()[0].platform} device(s)"
    assert f", {seconds:.0f} s on {platform} (" in head, head
    assert f"jax {jax.__version__}." in head
    assert "Sections §6.2 ran at quick (smoke) size" in head
    assert "sdn reproduce --full" in head
    assert "| 6.2 |" in text and "verdict" in text


# --------------------------------------------------------------------------- verdicts
# The verdict logic on constructed inputs: for each section a supported, an unsupported
# and an inconclusive case, so a verdict rests on what the run could show.


@pytest.mark.parametrize(
    "diff, se, effect, verdict",
    [
        (3.0, 1.0, 2.0, report.SUPPORTED),  # interval [1, 5] excludes 0
        (-1.0, 0.2, 2.0, report.NOT_SUPPORTED),  # [-1.4, -0.6] excludes the effect
        (1.0, 0.4, 2.0, report.SUPPORTED),  # [0.2, 1.8]: shows an effect, if smaller
        (1.0, 1.0, 2.0, report.INCONCLUSIVE),  # [-1, 3] holds 0 and 2
        (math.nan, 1.0, 2.0, report.INCONCLUSIVE),
    ],
)
def test_effect_verdict(diff, se, effect, verdict):
    got, reason = report.effect_verdict(diff, se, effect)
    assert got == verdict and reason


def test_tails_verdicts():
    # §6.2, PLD: the CI holds the Student-t and excludes the Gaussian
    assert report.interval_verdict(2.93, 4.27, 3.59, 2.1)[0] == report.SUPPORTED
    assert report.interval_verdict(3.7, 4.27, 3.59, 2.1)[0] == report.NOT_SUPPORTED
    v, reason = report.interval_verdict(1.5, 6.0, 3.59, 2.1)
    assert v == report.INCONCLUSIVE and "2.1" in reason
    # SGD heavier than Gaussian
    assert report.heavier_tail_verdict(4.24, 7.2, 2.1, 3.59)[0] == report.SUPPORTED
    assert report.heavier_tail_verdict(1.9, 2.5, 2.1, 3.59)[0] == report.NOT_SUPPORTED
    assert report.heavier_tail_verdict(1.9, 5.0, 2.1, 3.59)[0] == report.INCONCLUSIVE


def _fit(direction, sigma_h, se, r2=(0.0, 0.5, 0.9)):
    return dict(direction=direction, sigma_h=sigma_h, sigma_h_se=se, r2_constant=r2[0],
                r2_linear=r2[1], r2_quadratic=r2[2])  # fmt: skip


def test_covariance_verdicts():
    good = [_fit("top", 1.0, 0.1), _fit("random_0", 0.5, 0.1)]
    assert report.quadratic_covariance_verdict(good)[0] == report.SUPPORTED
    worse = [*good, _fit("random_1", 0.5, 0.1, r2=(0.0, 0.95, 0.9))]
    v, reason = report.quadratic_covariance_verdict(worse)
    assert v == report.NOT_SUPPORTED and "random_1" in reason
    assert report.quadratic_covariance_verdict([*good, _fit("r", -1.0, 0.1)])[0] == (
        report.NOT_SUPPORTED
    )
    v, reason = report.quadratic_covariance_verdict([*good, _fit("random_2", 0.1, 0.2)])
    assert v == report.INCONCLUSIVE and "random_2" in reason


def _escape_row(deviation_in_errors, exact=100.0, sem=5.0):
    err = math.hypot(sem, report.ESCAPE_BIAS * exact)
    return dict(exact_time=exact, sem=sem, mean_time=exact + deviation_in_errors * err)


def test_escape_verdict_threshold_is_the_one_its_text_states():
    text = report.escape_agreement_text()
    z_max = float(re.search(r"< ([0-9.]+) errors", text).group(1))
    bias = float(re.search(r"([0-9.]+)% of the exact time", text).group(1)) / 100
    assert (z_max, bias) == (report.ESCAPE_Z_MAX, report.ESCAPE_BIAS)
    rows = [_escape_row(0.5), _escape_row(-1.0, exact=30.0, sem=1.0)]
    below = report.escape_agreement_verdict([*rows, _escape_row(z_max - 0.05)])
    above = report.escape_agreement_verdict([*rows, _escape_row(-(z_max + 0.05))])
    assert below[0] == report.SUPPORTED and below[2] == pytest.approx(z_max - 0.05)
    assert above[0] == report.NOT_SUPPORTED and above[2] == pytest.approx(z_max + 0.05)
    no_exact = dict(exact_time=math.nan, sem=1.0, mean_time=3.0)
    assert report.escape_agreement_verdict([no_exact])[0] == report.INCONCLUSIVE


def _summary(**methods):
    return [dict(method=m, test_acc_mean=a, test_acc_std=s) for m, (a, s) in methods.items()]


def test_large_batch_verdicts_rest_on_the_gap():
    # The quick run: small 37.2 ± 4.1 %, large 38.8 ± 2.7 %: no gap to close, so
    # no method is judged, and the gap itself is inconclusive at this size.
    quick = _summary(small_batch=(0.372, 0.041), large_batch=(0.388, 0.027),
                     power_law=(0.36, 0.03), isotropic=(0.30, 0.01))  # fmt: skip
    v = report.large_batch_verdicts(quick, seeds=2)
    assert v["small_batch"][0] == report.INCONCLUSIVE
    assert v["power_law"][0] == v["isotropic"][0] == report.INCONCLUSIVE
    assert "gap" in v["power_law"][1]
    # A reproduced gap (63.2 vs 61.0, tight seeds): a method that closes it is supported,
    # one that stays at the large-batch accuracy is not.
    full = _summary(small_batch=(0.632, 0.003), large_batch=(0.610, 0.003),
                    power_law=(0.628, 0.003), isotropic=(0.609, 0.003))  # fmt: skip
    v = report.large_batch_verdicts(full, seeds=8)
    assert v["small_batch"][0] == report.SUPPORTED
    assert v["power_law"][0] == report.SUPPORTED
    assert v["isotropic"][0] == report.NOT_SUPPORTED
    # A precise run with no gap at all refutes the gap
    none = _summary(small_batch=(0.610, 0.002), large_batch=(0.611, 0.002))
    assert report.large_batch_verdicts(none, seeds=8)["small_batch"][0] == report.NOT_SUPPORTED


def test_render_puts_the_reason_in_the_row_and_smoke_size_first():
    claim = report.Claim("6.4", "a claim", "m", "e", report.INCONCLUSIVE, "too few seeds")
    sec = report.Section("large_batch", "§6.4 Large batch", claims=[claim])
    text = report.render([sec], "quick", 1.0)
    lines = text.splitlines()
    assert any("Smoke size" in line and "§6.4" in line for line in lines[:6])
    row = next(line for line in lines if line.startswith("| 6.4 |"))
    assert row.endswith("| inconclusive at this size: too few seeds |")
    assert "Smoke size" not in report.render([sec], "full", 1.0)
    with pytest.raises(ValueError, match="verdict"):
        report.Claim("6.4", "a", "m", "e", "maybe")


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
    for section in ("6.1", "6.2", "6.3", "6.4", "6.5"):
        assert f"| {section} |" in report
    # The quick run is deterministic on one platform, up to the chaotic lines above.
    stored = STORED_QUICK_REPORT.read_text()
    if _platform(stored) != _platform(report):
        pytest.skip(
            f"numbers NOT compared: the stored report was made on {_platform(stored)}, this run "
            f"on {_platform(report)} (another device or jax draws other random numbers); "
            f"regenerate it on this platform to compare: {REGENERATE}"
        )
    problems = compare_reports(stored, report)
    assert not problems, (
        "docs/figures/report_quick.md differs beyond what its run reproduces; if the code "
        "changed the numbers on purpose, regenerate it with\n  "
        + REGENERATE
        + "\n"
        + "\n".join(problems[:40])
    )
