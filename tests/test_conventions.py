"""The 1.0 conventions, checked over the whole public API: `key` first wherever randomness
enters, no module over 600 lines, and no test or benchmark that patches the engine's globals."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import sdn

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 600
KEY_NAMES = ("key", "rng", "rng_key", "seed", "prng_key")


def _public_modules():
    names = ["sdn"]
    for info in pkgutil.walk_packages(sdn.__path__, "sdn."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        names.append(info.name)
    return [importlib.import_module(n) for n in sorted(set(names))]


def _public_callables():
    seen = {}
    for module in _public_modules():
        for name in getattr(module, "__all__", None) or dir(module):
            if name.startswith("_"):
                continue
            obj = getattr(module, name, None)
            if inspect.isfunction(obj) and obj.__module__.startswith("sdn"):
                seen.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
            elif inspect.isclass(obj) and obj.__module__.startswith("sdn"):
                for meth_name, meth in vars(obj).items():
                    if meth_name.startswith("_") or not inspect.isfunction(meth):
                        continue
                    seen.setdefault(f"{obj.__module__}.{obj.__qualname__}.{meth_name}", meth)
    return seen


def key_position_violations(callables: dict) -> list[str]:
    """Public functions whose random key is not their first parameter."""
    bad = []
    for qualname, fn in callables.items():
        try:
            params = list(inspect.signature(inspect.unwrap(fn)).parameters.values())
        except (TypeError, ValueError):
            continue
        if params and params[0].name in ("self", "cls"):
            params = params[1:]
        names = [p.name for p in params]
        # a data set or an experiment made from plain settings takes `seed=` by keyword
        hits = [
            p.name
            for p in params
            if p.name in KEY_NAMES and not (p.name == "seed" and p.kind is p.KEYWORD_ONLY)
        ]
        if hits and names[0] not in KEY_NAMES:
            bad.append(f"{qualname}({', '.join(names)})")
    return bad


def test_key_is_the_first_parameter_wherever_randomness_enters():
    callables = _public_callables()
    assert len(callables) > 100  # the scan reaches the whole package
    assert key_position_violations(callables) == []


def test_the_scan_finds_a_key_in_the_wrong_place():
    def late(params, key):
        return params

    def first(key, params):
        return params

    def data(n, *, seed=0):
        return n

    def positional_seed(n, seed=0):
        return n

    found = key_position_violations(
        {"late": late, "first": first, "data": data, "positional_seed": positional_seed}
    )
    assert found == ["late(params, key)", "positional_seed(n, seed)"]


def test_no_module_is_over_600_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in sorted((REPO / "sdn").rglob("*.py"))
        if (n := p.read_text().count("\n")) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize("folder", ["tests", "benchmarks"])
def test_no_test_or_benchmark_patches_engine_globals(folder):
    pattern = re.compile(
        r"monkeypatch\.setattr\(\s*sdn\.(ensemble|engine)"
        r"|sdn\.(ensemble|engine)(\.\w+)*\.[A-Z_]+\s*="
    )
    hits = [
        f"{p.relative_to(REPO)}:{i}"
        for p in sorted((REPO / folder).rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
