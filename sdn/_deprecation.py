"""Old public spellings that keep working for one release, each with a warning naming the new one.

Every rename of 1.0 goes through these three helpers, so that the message reads the same
everywhere and a test can check it with ``pytest.warns(DeprecationWarning, match=NEW)``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

REMOVED_IN = "2.0"


def warn_deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (both as a user would write them)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in sdn {REMOVED_IN}; use {new} instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_keywords(owner: str, **renames: str) -> Callable[[Callable], Callable]:
    """Accept old keyword names of a function for one release.

    ``@renamed_keywords("simulate", max_steps="n_steps")`` lets ``simulate(max_steps=5)``
    run as ``simulate(n_steps=5)`` with a warning; passing both names is a ``TypeError``.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{owner}() got both {old}= (deprecated) and {new}=; pass {new}= only"
                        )
                    warn_deprecated(f"{owner}({old}=...)", f"{owner}({new}=...)")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def deprecated_alias(fn: Callable, old: str, new: str | None = None) -> Callable:
    """A function ``old`` that warns and calls ``fn`` (the new spelling, named ``new``)."""
    new = new or f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warn_deprecated(old, new)
        return fn(*args, **kwargs)

    alias.__doc__ = f"Deprecated alias of `{new}` (removed in sdn {REMOVED_IN})."
    return alias
