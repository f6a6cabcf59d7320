"""A fresh virtual environment: install from the repository as the README says, run both
commands' entry points (issue 6). Slow: it resolves every dependency with pip."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_fresh_venv_install_runs_the_main_job_and_tests(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args, **kw):
        proc = subprocess.run(
            [str(a) for a in args], env=env, capture_output=True, text=True, timeout=1200, **kw
        )
        assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc.stdout

    # README: `pip install -e ".[dev]"` (the test command's install includes the main one's)
    run(py, "-m", "pip", "install", "-q", "-e", f"{REPO}[dev]")
    sdn_cli = env_dir / "bin" / "sdn"
    out = run(
        sdn_cli, "reproduce", "--quick", "--only", "tails", "--out", tmp_path / "o", cwd=tmp_path
    )
    assert (tmp_path / "o" / "report.md").exists(), out
    # The test command, on one quick test file, with the venv's own interpreter.
    out = run(
        py,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        REPO / "tests" / "test_engine.py",
        "-k",
        "bad_inputs or formula",
        cwd=tmp_path,
    )
    assert "passed" in out
    # Dependencies came into the venv itself, not from the interpreter running this test.
    jax_path = run(py, "-c", "import jax; print(jax.__file__)")
    assert str(env_dir) in jax_path and sys.prefix not in jax_path
