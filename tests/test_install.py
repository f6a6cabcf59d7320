"""The package as users get it (issues 6 and 12), in one fresh virtual environment.

1. ``python -m build`` makes a wheel and an sdist, and ``twine check`` accepts both.
2. The wheel alone, installed into the venv and run from a folder outside the repository,
   gives ``import sdn`` (its version is the package metadata's), ``sdn demo``,
   ``sdn reproduce --quick --only tails``, and runs a notebook top to bottom in its kernel.
3. The README's test command's install (``pip install -e ".[dev]"``) then works in the same
   venv, and the test command runs there with the venv's own interpreter.

Slow: it resolves every dependency with pip once, then reuses them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The demo's line of predictions at its defaults (η = 0.1, b = 1, σ_g = 1, σ_H = 5).
DEMO_PREDICTION = (
    "PLD predicted: Student-t with ν = 5.000, scale 0.2000; Langevin predicted: Gaussian, sd 0.2236"
)
# One notebook shows that a notebook's kernel imports the installed wheel (every notebook
# runs in tests/test_notebooks.py; running them all again here would only repeat them).
NOTEBOOKS = sorted((REPO / "notebooks").glob("01_*.ipynb"))

# Run with the venv's interpreter: the notebooks given, each with a last cell that says
# where `sdn` and the kernel came from.
RUN_NOTEBOOKS = """
import sys
from pathlib import Path

import nbclient
import nbformat

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sdn, sys\\nprint('SDN_FROM', sdn.__file__)\\nprint('KERNEL', sys.prefix)"))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": "."}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, (path, errors)
    said = "".join(o.get("text", "") for o in nb.cells[-1].outputs).split()
    print(Path(path).name, *said)
"""


@pytest.mark.slow
def test_wheel_and_editable_install_in_a_fresh_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    py, bin_dir = env_dir / "bin" / "python", env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv_env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    work = tmp_path / "work"  # outside the repository: nothing can be read from it
    work.mkdir()

    def run(*args, cwd=work, env=venv_env, **kw):
        proc = subprocess.run(
            [str(a) for a in args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=1800,
            **kw,
        )
        assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc.stdout

    # 1. Build (with the interpreter running the tests, which has `build` and `twine`).
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, REPO, env=env)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == len(sdists) == 1, list(dist.iterdir())
    out = run(sys.executable, "-m", "twine", "check", "--strict", *wheels, *sdists, env=env)
    assert out.count("PASSED") == 2, out
    assert any(
        n.endswith(".dist-info/licenses/LICENSE") for n in zipfile.ZipFile(wheels[0]).namelist()
    )
    with tarfile.open(sdists[0]) as tar:
        assert any(n.endswith("/LICENSE") for n in tar.getnames())

    # 2. The wheel alone (and what the notebooks need to run).
    run(py, "-m", "pip", "install", "-q", wheels[0], "nbclient", "nbformat", "ipykernel")
    out = run(
        py,
        "-c",
        "import importlib.metadata as m, sdn; "
        "print(sdn.__file__); print(sdn.__version__ == m.version('sdn'), sdn.__version__)",
    )
    where, same_version = out.splitlines()
    assert where.startswith(str(env_dir)), where
    assert same_version.startswith("True ") and f"-{same_version.split()[1]}-" in wheels[0].name
    assert (Path(where).parent / "py.typed").exists()
    # every module of the source tree is in the wheel and imports from it
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "sdn").rglob("*.py")
    )
    out = run(py, "-c", "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
              "print('imported', len(sys.argv) - 1)", *modules)  # fmt: skip
    assert out.strip() == f"imported {len(modules)}", out
    out = run(bin_dir / "sdn", "demo", "--out", work / "demo")
    assert DEMO_PREDICTION in out.splitlines(), out
    run(bin_dir / "sdn", "reproduce", "--quick", "--only", "tails", "--out", work / "o")
    assert (work / "o" / "report.md").exists()
    out = run(py, "-c", RUN_NOTEBOOKS, *NOTEBOOKS, env={**venv_env, "SDN_NOTEBOOK_SIZE": "tiny"})
    lines = out.strip().splitlines()
    assert len(lines) == len(NOTEBOOKS) == 1, out
    for line in lines:
        assert f"SDN_FROM {env_dir}" in line and f"KERNEL {env_dir}" in line, line

    # 3. The README's test command's install, and the test command on one quick test file.
    run(py, "-m", "pip", "install", "-q", "-e", f"{REPO}[dev]")
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
    )
    assert "passed" in out
    # Dependencies came into the venv itself, not from the interpreter running this test.
    jax_path = run(py, "-c", "import jax; print(jax.__file__)")
    assert str(env_dir) in jax_path and sys.prefix not in jax_path
