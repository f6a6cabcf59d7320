"""The README's and the guides' code runs, and prints what the page says it prints.

A ``python`` block followed directly by a ``text`` block must print that text: the same
words, and numbers within 10% (or one unit of their last printed digit), so an API change
or a change in behaviour shows up here. README blocks run each on its own (a reader copies
one); a guide's blocks run in order in one interpreter, as a reader follows the page. A block
right after ``<!-- not run: REASON -->`` is skipped (e.g. it needs several hosts).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
GUIDES = sorted((REPO / "docs" / "guides").glob("*.md"))
MARKER = "----8<---- sdn block {} ----8<----"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
NUMBER = re.compile(r"[-−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def code_blocks(text: str) -> list[tuple[str, str | None]]:
    """(python source, the text it should print or None) for each block that runs."""
    blocks = []
    matches = list(FENCE.finditer(text))
    for i, m in enumerate(matches):
        if m.group(1) != "python":
            continue
        before = text[: m.start()].rstrip()
        if before.endswith("-->") and "<!-- not run:" in before[before.rfind("<!--") :]:
            continue
        expected = None
        if i + 1 < len(matches):
            nxt = matches[i + 1]
            if nxt.group(1) == "text" and not text[m.end() : nxt.start()].strip():
                expected = nxt.group(2)
        blocks.append((m.group(2), expected))
    return blocks


def _numbers_match(expected: str, actual: str) -> bool:
    e, a = float(expected.replace("−", "-")), float(actual.replace("−", "-"))
    decimals = len(expected.split(".")[1]) if "." in expected and "e" not in expected else 0
    return abs(a - e) <= max(0.1 * abs(e), 10.0**-decimals) + 1e-12


def output_mismatch(expected: str, actual: str) -> str | None:
    """Why `actual` is not what `expected` shows, or None when it is."""
    exp_lines, act_lines = expected.strip().splitlines(), actual.strip().splitlines()
    if len(exp_lines) != len(act_lines):
        return f"{len(act_lines)} lines printed, {len(exp_lines)} shown:\n{actual}"
    for e, a in zip(exp_lines, act_lines):
        if NUMBER.split(" ".join(e.split())) != NUMBER.split(" ".join(a.split())):
            return f"printed {a!r}, shown {e!r}"
        for x, y in zip(NUMBER.findall(e), NUMBER.findall(a)):
            if not _numbers_match(x, y):
                return f"printed {a!r}, shown {e!r} ({y} is not {x} within 10%)"
    return None


def run_blocks(blocks: list[tuple[str, str | None]], cwd: Path) -> list[str]:
    """Run the blocks in order in one fresh interpreter; the stdout of each."""
    script = "\n".join(
        f"{code}\nprint({MARKER.format(i)!r}, flush=True)" for i, (code, _) in enumerate(blocks)
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = proc.stdout.split("\n")
    parts, current = [], []
    for line in outputs:
        if line == MARKER.format(len(parts)):
            parts.append("\n".join(current))
            current = []
        else:
            current.append(line)
    assert len(parts) == len(blocks), proc.stdout[-3000:]
    return parts


def _check(blocks, tmp_path):
    for (code, expected), printed in zip(blocks, run_blocks(blocks, tmp_path)):
        if expected is not None:
            assert output_mismatch(expected, printed) is None, (
                code[:200] + "\n...\n" + output_mismatch(expected, printed)
            )


README_BLOCKS = code_blocks(README.read_text())


def test_readme_has_four_examples_that_show_their_output():
    assert len(README_BLOCKS) == 4
    assert all(expected for _, expected in README_BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_block_runs_on_its_own(index, tmp_path):
    _check([README_BLOCKS[index]], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("path", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_runs_top_to_bottom(path, tmp_path):
    blocks = code_blocks(path.read_text())
    if not blocks:
        pytest.skip(f"{path.name} has no python blocks")
    _check(blocks, tmp_path)


def test_output_check_can_fail():
    shown = "Monte Carlo: 187 ± 4\nquadrature:  192.4"
    assert output_mismatch(shown, "Monte Carlo: 190 ± 3\nquadrature:  192.4") is None
    assert output_mismatch(shown, "Monte Carlo: 250 ± 4\nquadrature:  192.4")  # a number
    assert output_mismatch(shown, "Monte Carlo: 187 ± 4\nexact:  192.4")  # a word
    assert output_mismatch(shown, "Monte Carlo: 187 ± 4")  # a line


def _readme_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Two commands") :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def _normalized(command: str) -> list[str]:
    words = [w for w in shlex.split(command) if w != "-q"]
    words = ["python" if w == "python3" else w for w in words]
    # `python -m pip` is `pip`
    out = []
    for w in words:
        if w == "pip" and out[-2:] == ["python", "-m"]:
            out[-2:] = ["pip"]
        else:
            out.append(w)
    return out


def test_the_two_commands_and_ci_run_the_same_tests():
    main, tests = _readme_commands()
    assert _normalized(main) == ["pip", "install", "-e", ".", "&&", "sdn", "reproduce"]
    assert _normalized(tests) == ["pip", "install", "-e", ".[dev]", "&&", "python", "-m", "pytest"]
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert _normalized(ci) == _normalized(tests), ci
