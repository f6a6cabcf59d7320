"""The documentation: the site builds with ``--strict``, every reference resolves inside the
project, the theory page names functions and tests that exist, and the repository URL is
written in one place (``pyproject.toml``) that the notebooks and the README agree with."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
REPO_URL = PYPROJECT["project"]["urls"]["Repository"]

# Team-internal notes that users never get; built from pieces so this file passes its own test.
FORBIDDEN = ("SCIENCE" + ".md", "PERFORMANCE" + ".md", "shared" + "/")
SCANNED = ["sdn", "notebooks", "README.md", "docs", "scripts"]
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".yml", ".yaml", ".txt", ".js", ".css", ".csv"}


def _scanned_files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = REPO / name
        if path.is_file():
            files.append(path)
        else:
            files += [p for p in sorted(path.rglob("*")) if p.suffix in TEXT_SUFFIXES]
    return files


def forbidden_mentions(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{path}:{n}: {name}" for name in FORBIDDEN if name in line]
    return found


def test_no_reference_to_files_users_do_not_have(tmp_path):
    files = _scanned_files()
    assert len(files) > 50 and REPO / "README.md" in files
    assert forbidden_mentions(files) == []
    # The check can fail: a file that mentions one of the names is caught.
    bad = tmp_path / "bad.py"
    bad.write_text(f'"""Fine.\n\nSee {FORBIDDEN[0]} §3."""\n')
    assert forbidden_mentions([bad]) == [f"{bad}:3: {FORBIDDEN[0]}"]


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    """`mkdocs build --strict`: a broken link, anchor or API reference, or a page missing
    from the nav, fails the build."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "optim" / "index.html").read_text()
    assert "add_state_dependent_noise" in api  # the reference is generated from the code
    assert (tmp_path / "site" / "theory" / "index.html").exists()


def _api_targets() -> set[str]:
    targets = set()
    for page in (DOCS / "api").glob("*.md"):
        targets |= set(re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), re.MULTILINE))
    return targets


def test_api_reference_covers_every_public_module():
    targets = _api_targets()
    modules = [p.stem for p in (REPO / "sdn").glob("*.py") if not p.stem.startswith("_")]
    modules += [p.parent.name for p in (REPO / "sdn").glob("*/__init__.py")]
    for name in modules:
        if name in ("__init__",):
            continue
        assert any(t == f"sdn.{name}" or t.startswith(f"sdn.{name}.") for t in targets) or (
            name in ("sde", "ensemble") and {"sdn.SDE", "sdn.simulate"} <= targets
        ), f"sdn.{name} has no API page"
    import sdn

    for name in sdn.__all__:
        obj = getattr(sdn, name)
        if not isinstance(obj, type(sdn)) and name not in ("DIVERGED", "EXITED", "INSIDE"):
            assert f"sdn.{name}" in targets, f"sdn.{name} is not in the API reference"


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_theory_page_names_functions_and_tests_that_exist():
    text = (DOCS / "theory.md").read_text()
    functions = set(re.findall(r"`(sdn(?:\.\w+)+)`", text))
    tests = set(re.findall(r"`(tests/test_\w+\.py)::(\w+)`", text))
    assert len(functions) > 30 and len(tests) > 40, (len(functions), len(tests))
    missing = []
    for dotted in sorted(functions):
        try:
            _resolve(dotted)
        except (ImportError, AttributeError):
            missing.append(dotted)
    for file, name in sorted(tests):
        source = (REPO / file).read_text() if (REPO / file).exists() else ""
        if not re.search(rf"^\s*def {name}\(", source, re.MULTILINE):
            missing.append(f"{file}::{name}")
    assert missing == []


def test_theory_keeps_the_section_numbers_the_code_cites():
    headings = re.findall(r"^#{2,3} (\d(?:\.\d)?)\.? ", (DOCS / "theory.md").read_text(), re.M)
    assert headings[:6] == ["1", "2", "3", "4", "5", "6"]
    assert [h for h in headings if "." in h] == [f"6.{i}" for i in range(1, 9)]
    cited = set()
    for path in _scanned_files():
        cited |= set(re.findall(r"docs/theory\.md §(\d(?:\.\d)?)", path.read_text()))
    assert cited and cited <= set(headings), cited - set(headings)


# ------------------------------------------------------------------ the repository URL


def _owner_name(url: str) -> str:
    return re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", url).group(1)


def notebook_install_urls() -> dict[str, str]:
    urls = {}
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        source = "".join(json.loads(path.read_text())["cells"][1]["source"])
        urls[path.name] = re.search(r'^REPO = "([^"]+)"', source, re.MULTILINE).group(1)
    return urls


def readme_repository_urls(text: str) -> list[str]:
    """owner/name of every GitHub, raw-content and Colab URL in the text."""
    return re.findall(
        r"https://(?:github\.com|raw\.githubusercontent\.com|colab\.research\.google\.com/github)"
        r"/([\w.-]+/[\w.-]+)/",
        text,
    )


def test_repository_url_is_written_once_and_everything_agrees():
    owner_name = _owner_name(REPO_URL)
    # The notebooks' install cells.
    urls = notebook_install_urls()
    assert len(urls) == len(list((REPO / "notebooks").glob("*.ipynb"))) >= 6, urls
    assert set(urls.values()) == {REPO_URL}, urls
    # Each notebook's own Colab badge opens that notebook, and every repository URL in a
    # notebook is this one.
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        badge = (
            f"https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/{path.name}"
        )
        assert badge in "".join(json.loads(text)["cells"][0]["source"]), path.name
        assert set(readme_repository_urls(text)) <= {owner_name}, path.name
    # The README: badges, figure and documentation links.
    readme = (REPO / "README.md").read_text()
    found = readme_repository_urls(readme)
    assert len(found) >= 8 and set(found) == {owner_name}, set(found)
    # One Colab badge per notebook, each opening that notebook.
    for name in urls:
        badge = f"https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/{name}"
        assert badge in readme, name
    # The docs site and the other project URLs.
    mkdocs = (REPO / "mkdocs.yml").read_text()
    assert f"repo_url: {REPO_URL}\n" in mkdocs
    for key, url in PYPROJECT["project"]["urls"].items():
        if "github.com" in url:
            assert url.startswith(REPO_URL), (key, url)


def test_repository_url_check_can_fail():
    moved = (REPO / "README.md").read_text().replace("sdn-dev/sdn/blob", "someone/else/blob", 1)
    assert set(readme_repository_urls(moved)) == {_owner_name(REPO_URL), "someone/else"}


def test_version_is_written_once():
    import sdn

    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sdn.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:\.dev\d+|rc\d+)?", sdn.__version__)
    changelog = (REPO / "CHANGELOG.md").read_text()
    # the released version has its section (work after it goes under "## Unreleased")
    assert re.search(rf"^## {re.escape(sdn.__version__)} — \d{{4}}-\d\d-\d\d$", changelog, re.M)
    assert (REPO / "sdn" / "py.typed").exists()
