"""A sweep's results folder: one sweep per folder, one writer at a time, every row once.

The folder `DIR` holds:

- `manifest.json`: the sweep's identity (`sdn.sweep.identity`) and how it ran
  (versions, devices, times). Written first, before any result.
- `chunks/chunk-NNNNNN.csv`: the rows of the points finished so far, one file per
  chunk; each file is complete or absent (`sdn._io.write_atomic`).
- `results.csv`: the whole table, written once every point is done.
- `lock`: the pid and host of the run writing the folder, while it runs
  (`sdn.sweep.lock`).

The chunk files are the record of what is done; nothing else is needed to resume. So
a run killed at any moment resumes with every row once: before its manifest exists
(the folder then holds at most a lock and temporary files, and starts over), between
a chunk file and anything after it (the chunk counts), or during a chunk write (only a
`.chunk-….tmp` file exists, which is removed and its points run again).
"""

from __future__ import annotations

import csv
import json
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sdn._io import write_atomic
from sdn.sweep.identity import differences, digest
from sdn.sweep.lock import LOCK, Lock
from sdn.sweep.results import RESULTS, header, rows_csv

MANIFEST = "manifest.json"
CHUNKS = "chunks"
FORMAT = 2  # format 1 (sdn 0.1.0) identified a sweep by its function's module.qualname only

__all__ = ["FolderError", "ResultsFolder", "saved_points"]

Rows = dict[int, list[list[str]]]


class FolderError(ValueError):
    """A results folder this sweep cannot use: another sweep's, foreign, or damaged."""


class ResultsFolder:
    """An open results folder, locked for this run: its finished rows and its writers.

    Attributes:
      path: the folder.
      rows: `{point: its rows}` for every point already on disk.
    """

    def __init__(self, path: Path, lock: Lock, manifest: dict, rows: Rows, names: Sequence):
        self.path, self.lock, self.manifest, self.rows = path, lock, manifest, rows
        self._header = header(names)
        self._next = max((_chunk_id(p) for p in _chunk_files(path)), default=-1) + 1

    @classmethod
    def open(cls, path: str | Path, identity: Mapping[str, Any], about: Mapping[str, Any]):
        """Lock the folder, then start the sweep in it or check that it is this sweep.

        Args:
          path: the folder (created if missing).
          identity: from `sdn.sweep.identity.identify`; a folder holding another
            identity is refused, saying what differs.
          about: more to record in a new manifest: `parameters` (the design's names, the
            columns of the chunk files) and anything else worth reading later.

        Raises:
          FolderError: the folder holds another sweep, files that are not a sweep's,
            or damaged chunk files.
          FolderLocked: another run is writing the folder.
        """
        path = Path(path)
        _check_foreign(path)  # before creating anything in a folder that is not ours
        path.mkdir(parents=True, exist_ok=True)
        lock = Lock.acquire(path)
        try:
            _check_foreign(path)
            manifest = _start_or_resume(path, identity, about)
            for stale in [*path.glob(".*.tmp"), *(path / CHUNKS).glob(".*.tmp")]:
                stale.unlink()  # a write that a killed run left unfinished
            names = list(about["parameters"])
            rows = _read_chunks(path, names, identity["design"]["n_points"])
        except BaseException:
            lock.release()
            raise
        return cls(path, lock, manifest, rows, names)

    def write_chunk(self, rows: Rows) -> None:
        """Save the rows of newly finished points as the next chunk file."""
        lines = [r for point_rows in rows.values() for r in point_rows]
        write_atomic(self.path / CHUNKS / f"chunk-{self._next:06d}.csv", _csv(self._header, lines))
        self._next += 1
        self.rows.update(rows)

    def finish(self, ordered: list[list[str]]) -> None:
        """Write `results.csv` (every row, by point) and mark the manifest complete."""
        write_atomic(self.path / RESULTS, _csv(self._header, ordered))
        self.manifest.update(
            complete=True,
            chunks_done=len(_chunk_files(self.path)),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        _write_manifest(self.path, self.manifest)

    def close(self) -> None:
        """Release the folder's lock (the run is over, finished or not)."""
        self.lock.release()


def saved_points(path: str | Path) -> int:
    """How many points have their rows on disk in a results folder (0 if none)."""
    points = set()
    for chunk in _chunk_files(Path(path)):
        with open(chunk, newline="", encoding="utf-8") as fh:
            points |= {line[0] for line in list(csv.reader(fh))[1:]}
    return len(points)


def _check_foreign(path: Path) -> None:
    """Refuse a folder that holds something other than a sweep (or a sweep's beginning)."""
    if path.exists() and not path.is_dir():
        raise FolderError(f"{path} is a file, not a folder; give a folder for the results")
    if not path.exists() or (path / MANIFEST).exists():
        return
    # A run killed before its manifest existed leaves at most a lock, temporary files
    # and an empty chunks folder: that folder is ours to start over in.
    ours = {LOCK, CHUNKS}
    foreign = [p.name for p in path.iterdir() if p.name not in ours and not _temporary(p)]
    if (path / CHUNKS).is_dir():
        foreign += [f"{CHUNKS}/{p.name}" for p in (path / CHUNKS).iterdir() if not _temporary(p)]
    if foreign:
        raise FolderError(
            f"{path} is not empty and holds no {MANIFEST} (found {', '.join(sorted(foreign)[:3])})"
            f"; give a new or empty folder for the results"
        )


def _temporary(p: Path) -> bool:
    return p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp")


def _start_or_resume(path: Path, identity: Mapping[str, Any], about: Mapping[str, Any]) -> dict:
    file = path / MANIFEST
    if not file.exists():
        manifest = {
            "format": FORMAT,
            "identity": identity,
            "identity_sha256": digest(identity),
            **about,
            "key": "point i uses jax.random.fold_in(jax.random.key(seed), i); seed = key data",
            "versions": _versions(),
            "devices": _devices(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "resumed": 0,
            "complete": False,
        }
        _write_manifest(path, manifest)  # first: a folder with results always says whose
        (path / CHUNKS).mkdir(exist_ok=True)
        return manifest
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FolderError(f"{file} is not a readable sweep manifest: {err}") from err
    fresh = f"to start fresh, give another folder or delete {path}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FolderError(
            f"{path} holds a sweep written by an older sdn (manifest format "
            f"{manifest.get('format') if isinstance(manifest, dict) else '?'}, this one reads "
            f"{FORMAT}) whose identity cannot be checked, so it is not resumed; {fresh}"
        )
    if manifest.get("identity_sha256") != digest(identity):
        found = differences(manifest.get("identity", {}), identity) or ["its identity"]
        raise FolderError(
            f"{path} holds the results of a different sweep; what differs: "
            f"{'; '.join(found)}. To finish that sweep, run it as it was; {fresh}"
        )
    manifest.update(resumed=manifest.get("resumed", 0) + 1, complete=False)
    manifest["chunks_done"] = len(_chunk_files(path))
    _write_manifest(path, manifest)
    (path / CHUNKS).mkdir(exist_ok=True)
    return manifest


def _write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    write_atomic(path / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")


def _csv(head: list[str], rows: list[list[str]]) -> str:
    return rows_csv([head, *rows])


def _chunk_files(path: Path) -> list[Path]:
    if not (path / CHUNKS).is_dir():
        return []
    return sorted((path / CHUNKS).glob("chunk-*.csv"))


def _chunk_id(path: Path) -> int:
    return int(path.stem.split("-")[1])


def _read_chunks(path: Path, names: Sequence[str], n: int) -> Rows:
    """Rows of the finished chunk files, by point; a point in two chunks is an error."""
    rows: Rows = {}
    head = header(names)
    for chunk in _chunk_files(path):
        with open(chunk, newline="", encoding="utf-8") as fh:
            lines = list(csv.reader(fh))
        if not lines or lines[0] != head:
            raise FolderError(f"{chunk} does not have the columns {head}; the folder is damaged")
        mine: Rows = {}
        for line in lines[1:]:
            i = int(line[0])
            if not 0 <= i < n or i in rows:
                raise FolderError(
                    f"{chunk}: point {i} is out of range or already written; the folder is damaged"
                )
            mine.setdefault(i, []).append(line)
        rows.update(mine)
    return rows


def _versions() -> dict[str, str]:
    import jaxlib

    from sdn import __version__

    return {
        "sdn": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _devices() -> dict[str, Any]:
    return {
        "count": jax.device_count(),
        "kinds": sorted({d.device_kind for d in jax.devices()}),
        "platform": jax.default_backend(),
        "processes": jax.process_count(),
    }
