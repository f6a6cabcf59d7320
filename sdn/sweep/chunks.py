"""Chunk files that carry their own integrity record, and how they are read back.

A chunk file holds the rows of some finished points as CSV. Its name carries a SHA-256
(its seal) of the sweep's identity digest, the chunk's number and the file's bytes:
`chunk-NNNNNN-<seal>.csv`. The file and its record are therefore one file, renamed
into place in one atomic step; no sidecar can be lost or left behind.

On resume each chunk is verified before any of its rows is used: its name must parse,
its bytes must give its seal (a file cut short, edited, emptied, renamed, copied under
another number or copied in from another sweep does not), and its rows must have the
sweep's columns, points in range and numeric values, each point in one chunk only. A
chunk that fails is never read: it is moved into `quarantine/` beside `chunks/` (never
deleted), a `DamagedChunkWarning` names it and says why, and its points run again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from sdn._io import fsync_dir

CHUNKS = "chunks"
QUARANTINE = "quarantine"

__all__ = ["DamagedChunkWarning", "chunk_name", "chunk_number", "read_verified", "seal"]

Rows = dict[int, list[list[str]]]

_NAME = re.compile(r"chunk-(\d{6,})-([0-9a-f]{64})\.csv")


class DamagedChunkWarning(UserWarning):
    """A chunk file failed verification: it was moved aside and its points run again."""


def seal(identity_sha256: str, number: int, content: bytes) -> str:
    """The SHA-256 that binds a chunk's bytes to its sweep and its place in the folder.

    >>> a = seal("0" * 64, 3, b"point,a,statistic,value\\n")
    >>> a == seal("1" * 64, 3, b"point,a,statistic,value\\n")  # another sweep's
    False
    >>> a == seal("0" * 64, 4, b"point,a,statistic,value\\n")  # another place
    False
    """
    h = hashlib.sha256(f"sdn sweep chunk\n{identity_sha256}\n{number}\n".encode())
    h.update(content)
    return h.hexdigest()


def chunk_name(identity_sha256: str, number: int, content: bytes) -> str:
    """The file name of chunk `number` holding `content`: `chunk-NNNNNN-<seal>.csv`."""
    return f"chunk-{number:06d}-{seal(identity_sha256, number, content)}.csv"


def chunk_number(path: Path) -> int | None:
    """The number in a chunk file's name, or None if the name is not a chunk's."""
    match = _NAME.fullmatch(path.name)
    return int(match[1]) if match else None


def chunk_files(folder: Path) -> list[Path]:
    """Every file in `folder/chunks` named like a chunk (valid or not), by name."""
    if not (folder / CHUNKS).is_dir():
        return []
    return sorted(p for p in (folder / CHUNKS).glob("chunk-*") if p.is_file())


def read_verified(
    folder: Path, identity_sha256: str, head: Sequence[str], n_points: int, *, move: bool = True
) -> Rows:
    """The rows of every chunk that passes verification, by point.

    Args:
      folder: the results folder.
      identity_sha256: the digest of this sweep's identity (its manifest's).
      head: the columns every chunk must have.
      n_points: the design's size (points are `0 .. n_points - 1`).
      move: move each failing chunk into `quarantine/` with a warning (False: skip it
        silently, for a read-only count).
    """
    rows: Rows = {}
    for path in chunk_files(folder):
        content = path.read_bytes()
        mine, problem = _verify(path, content, identity_sha256, list(head), n_points)
        if problem is None:
            twice = sorted(set(mine) & set(rows))
            if twice:
                problem = f"it repeats point {twice[0]} of an earlier chunk"
        if problem is None:
            rows.update(mine)
        elif move:
            _quarantine(folder, path, problem)
    return rows


def _verify(
    path: Path, content: bytes, identity_sha256: str, head: list[str], n_points: int
) -> tuple[Rows, str | None]:
    """A chunk's rows by point, and what is wrong with it (None if nothing)."""
    match = _NAME.fullmatch(path.name)
    if match is None:
        return {}, "its name carries no integrity record (chunk-NNNNNN-<sha256>.csv)"
    if match[2] != seal(identity_sha256, int(match[1]), content):
        what = "empty" if not content else f"{len(content)} bytes"
        return {}, (
            f"its content ({what}) does not match its SHA-256: it was cut short, edited, "
            "renamed, or comes from another sweep"
        )
    try:
        lines = list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error) as err:
        return {}, f"it is not CSV text ({err})"
    if not lines or lines[0] != head:
        return {}, f"it does not have the columns {head}"
    mine: Rows = {}
    for k, line in enumerate(lines[1:], start=2):
        if len(line) != len(head) or not _is_point(line[0], n_points) or not _number(line[-1]):
            return {}, f"line {k} is not a row of this sweep: {line[:4]}"
        mine.setdefault(int(line[0]), []).append(line)
    return mine, None


def _is_point(text: str, n_points: int) -> bool:
    return text.isdigit() and int(text) < n_points


def _number(text: str) -> bool:
    try:
        float(text)  # "nan" and "inf" included: a statistic may be either
    except ValueError:
        return False
    return True


def _quarantine(folder: Path, path: Path, problem: str) -> None:
    """Move a failing chunk into `quarantine/` (under a free name) and say so."""
    aside = folder / QUARANTINE
    aside.mkdir(exist_ok=True)
    target, k = aside / path.name, 1
    while target.exists():
        target, k = aside / f"{path.name}.{k}", k + 1
    path.rename(target)
    fsync_dir(aside)
    fsync_dir(path.parent)
    warnings.warn(
        f"{path}: {problem}; it was not read, its points run again, and it was moved to {target}",
        DamagedChunkWarning,
        stacklevel=6,  # the caller of sdn.sweep.run
    )
