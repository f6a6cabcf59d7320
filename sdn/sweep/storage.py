"""A sweep's results folder: one sweep per folder, one writer at a time, every row once.

The folder `DIR` holds:

- `manifest.json`: the sweep's identity (`sdn.sweep.identity`) and how it ran
  (versions, devices, times). Written first, before any result.
- `chunks/chunk-NNNNNN-<seal>.csv`: the rows of the points finished so far, one file
  per chunk; each file is complete or absent (`sdn._io.write_atomic`), and its name
  carries a SHA-256 of its bytes bound to the sweep's identity (`sdn.sweep.chunks`).
  A chunk that fails that check on resume is moved into `quarantine/`, with a warning
  naming it, and its points run again; no row of it reaches `results.csv`.
- `results.csv`: the whole table, written once every point is done.
- `lock`: the pid and host of the run writing the folder, while it runs
  (`sdn.sweep.lock`).

The verified chunk files are the record of what is done; nothing else is needed to
resume. So
a run killed at any moment resumes with every row once: before its manifest exists
(the folder then holds at most a lock and temporary files, and starts over), between
a chunk file and anything after it (the chunk counts), or during a chunk write (only a
`.chunk-….tmp` file exists, which is removed and its points run again). A folder that
cannot be written is refused before anything runs.
"""

from __future__ import annotations

import errno
import json
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sdn._io import write_atomic
from sdn.sweep.chunks import CHUNKS, chunk_files, chunk_name, chunk_number, read_verified
from sdn.sweep.identity import differences, digest
from sdn.sweep.lock import LOCK, Lock
from sdn.sweep.results import RESULTS, header, rows_csv

MANIFEST = "manifest.json"
# Format 1 (sdn 0.1.0) identified a sweep by its function's module.qualname only;
# format 2 trusted its chunk files as they stood (no integrity record).
FORMAT = 3

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
        self._seal_key = manifest["identity_sha256"]
        numbers = [chunk_number(p) for p in chunk_files(path)]
        self._next = max((k for k in numbers if k is not None), default=-1) + 1

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
          FolderError: the folder holds another sweep or files that are not a sweep's,
            its manifest is damaged, or it cannot be written.
          FolderLocked: another run is writing the folder.

        Warns:
          DamagedChunkWarning: for each chunk file that fails verification (moved into
            `quarantine/`; its points are not in `rows`, so they run again).
        """
        path = Path(path)
        _check_foreign(path)  # before creating anything in a folder that is not ours
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = Lock.acquire(path)
        except OSError as err:
            _refuse_if_not_writable(path, err)
            raise
        try:
            _check_foreign(path)
            manifest = _start_or_resume(path, identity, about)
            for stale in [*path.glob(".*.tmp"), *(path / CHUNKS).glob(".*.tmp")]:
                stale.unlink()  # a write that a killed run left unfinished
            names = list(about["parameters"])
            head, n = header(names), identity["design"]["n_points"]
            rows = read_verified(path, manifest["identity_sha256"], head, n)
        except OSError as err:
            lock.release()
            _refuse_if_not_writable(path, err)
            raise
        except BaseException:
            lock.release()
            raise
        return cls(path, lock, manifest, rows, names)

    def write_chunk(self, rows: Rows) -> None:
        """Save the rows of newly finished points as the next chunk file."""
        lines = [r for point_rows in rows.values() for r in point_rows]
        content = _csv(self._header, lines).encode("utf-8")
        write_atomic(self.path / CHUNKS / chunk_name(self._seal_key, self._next, content), content)
        self._next += 1
        self.rows.update(rows)

    def finish(self, ordered: list[list[str]]) -> None:
        """Write `results.csv` (every row, by point) and mark the manifest complete."""
        write_atomic(self.path / RESULTS, _csv(self._header, ordered))
        self.manifest.update(
            complete=True,
            chunks_done=len(chunk_files(self.path)),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        _write_manifest(self.path, self.manifest)

    def close(self) -> None:
        """Release the folder's lock (the run is over, finished or not)."""
        self.lock.release()


def saved_points(path: str | Path) -> int:
    """How many points have verified rows on disk in a results folder (0 if none)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
        key, names = manifest["identity_sha256"], manifest["parameters"]
        n = manifest["identity"]["design"]["n_points"]
    except (OSError, ValueError, TypeError, KeyError):
        return 0
    return len(read_verified(Path(path), key, header(names), n, move=False))


def _refuse_if_not_writable(path: Path, err: OSError) -> None:
    """Raise a clear refusal for a folder this user cannot write (others pass through)."""
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise FolderError(
            f"{path} cannot be written ({err.strerror}: {err.filename}); give a folder this "
            "user can write, or make this one writable, and rerun to resume"
        ) from err


def _check_foreign(path: Path) -> None:
    """Refuse a folder that holds something other than a sweep (or a sweep's beginning)."""
    if path.exists() and not path.is_dir():
        raise FolderError(f"{path} is a file, not a folder; give a folder for the results")
    if not path.exists() or (path / MANIFEST).exists():
        return
    # A run killed before its manifest existed leaves at most a lock, temporary files
    # and an empty chunks folder: that folder is ours to start over in.
    ours = {LOCK, CHUNKS}  # quarantine/ appears only after the manifest
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
            f"{FORMAT}) whose identity or chunks cannot be checked, so it is not resumed; "
            f"{fresh}"
        )
    if manifest.get("identity_sha256") != digest(identity):
        found = differences(manifest.get("identity", {}), identity) or ["its identity"]
        raise FolderError(
            f"{path} holds the results of a different sweep; what differs: "
            f"{'; '.join(found)}. To finish that sweep, run it as it was; {fresh}"
        )
    manifest.update(resumed=manifest.get("resumed", 0) + 1, complete=False)
    manifest["chunks_done"] = len(chunk_files(path))
    _write_manifest(path, manifest)
    (path / CHUNKS).mkdir(exist_ok=True)
    return manifest


def _write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    write_atomic(path / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")


def _csv(head: list[str], rows: list[list[str]]) -> str:
    return rows_csv([head, *rows])


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
