"""Atomic files: a reader sees the old file or the whole new one, never a part of it.

Every file `sdn` writes for later reading (sweep chunks and manifests, report tables,
saved training records) goes through `write_atomic`: the text is written to a
temporary file beside the target, flushed to disk, renamed over the target, and the
folder itself is flushed so that the rename survives a power cut. A process killed at
any moment leaves either the old file or the new one, plus at worst a temporary file
named `.NAME.PID.tmp` that readers ignore.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["fsync_dir", "temporary_name", "write_atomic"]


def temporary_name(path: Path) -> Path:
    """Where `write_atomic` stages `path`'s new content: `.NAME.PID.tmp` beside it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Replace the file at `path` with `data` (text as UTF-8) in one atomic step.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomic(p, "one\\n").read_text()
    'one\\n'
    >>> sorted(q.name for q in p.parent.iterdir())  # no temporary file is left behind
    ['a.txt']
    """
    path = Path(path)
    tmp = temporary_name(path)
    binary = isinstance(data, bytes)
    try:
        with open(tmp, "wb" if binary else "w", **({} if binary else _TEXT)) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


_TEXT = {"encoding": "utf-8", "newline": ""}


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except PermissionError:  # Windows cannot open a folder; its renames are durable
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems without it
            raise
    finally:
        os.close(fd)
