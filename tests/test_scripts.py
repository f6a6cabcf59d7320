"""The figure scripts of §6.2 and §6.3 run and write their CSV and PNG."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, files", [("tails", ("tails.csv", "tails.png")), ("escape", ("escape.csv", "escape.png"))]
)
def test_script_writes_csv_and_png(name, files, tmp_path):
    main = runpy.run_path(str(SCRIPTS / f"{name}.py"))["main"]
    main(["--quick", "--out", str(tmp_path)])
    for f in files:
        assert (tmp_path / f).stat().st_size > 0
