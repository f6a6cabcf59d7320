"""One writer per results folder: an exclusive lock file naming its owner's pid and host.

The lock file is created atomically (it appears with its content or not at all). A
second run on the folder reads the owner and stops with a message naming it. A lock
left by a process that no longer exists (killed, or its machine restarted) is stale:
the next run on the same host sees that the pid is gone and takes the lock over. A lock
held from another host cannot be checked from here; the message says how to remove it
once that run is known to be gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from sdn._io import fsync_dir, temporary_name

LOCK = "lock"

__all__ = ["FolderLocked", "Lock"]


class FolderLocked(ValueError):
    """The results folder is being written by another run."""


class Lock:
    """The exclusive lock of a results folder, held from `acquire` to `release`."""

    def __init__(self, path: Path, owner: dict):
        self.path, self.owner = path, owner

    @classmethod
    def acquire(cls, folder: Path) -> Lock:
        """Take the folder's lock, reclaiming a stale one; `FolderLocked` if it is held."""
        path = folder / LOCK
        owner = _describe(os.getpid())
        for _ in range(5):
            if _create(path, owner):
                return cls(path, owner)
            holder = _read(path)
            if holder is None:
                continue  # it vanished between our attempt and our read: try again
            if not _is_stale(holder):
                raise FolderLocked(_busy_message(folder, holder))
            _reclaim(path, holder)
        raise FolderLocked(f"{folder}: could not take {LOCK} (other runs keep taking it)")

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if _read(self.path) == self.owner:
            self.path.unlink(missing_ok=True)
            fsync_dir(self.path.parent)


def _describe(pid: int) -> dict:
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "process_start": _process_start(pid),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _create(path: Path, owner: dict) -> bool:
    """Create `path` holding `owner`, atomically; False if it exists."""
    text = json.dumps(owner) + "\n"
    tmp = temporary_name(path)
    tmp.write_text(text, encoding="utf-8")
    try:
        os.link(tmp, path)  # fails if `path` exists; the lock appears whole
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: create exclusively, then write
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def _read(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"unreadable": str(path)}
    return owner if isinstance(owner, dict) else {"unreadable": str(path)}


def _is_stale(holder: dict) -> bool:
    """Whether the lock's owner is known to be gone (only checkable on this host)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if os.name == "nt":  # os.kill(pid, 0) would end the process there, not probe it
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, owned by someone else
    start = _process_start(pid)
    recorded = holder.get("process_start")
    # Alive, unless the pid now belongs to a later process (pid reuse) or a zombie.
    return start == "zombie" or (start is not None and recorded is not None and start != recorded)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), 'zombie', or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


def _reclaim(path: Path, holder: dict) -> None:
    """Remove a stale lock, without removing a fresh one another run took meanwhile."""
    aside = path.with_name(f".{LOCK}.{os.getpid()}.stale.tmp")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return  # another run reclaimed it first
    if _read(aside) not in (holder, None):  # we moved another run's fresh lock: put it back
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)


def _busy_message(folder: Path, holder: dict) -> str:
    if "unreadable" in holder:
        return (
            f"{folder} is locked by {folder / LOCK}, which cannot be read; if no sweep is "
            f"writing this folder, delete {folder / LOCK} and rerun"
        )
    where = f"process {holder.get('pid')} on host {holder.get('host')!r}"
    since = f" since {holder['since']}" if "since" in holder else ""
    here = holder.get("host") == socket.gethostname()
    advice = (
        "wait for it to finish or stop it, then rerun to resume"
        if here
        else f"if that run is gone, delete {folder / LOCK} and rerun to resume"
    )
    return f"{folder} is being written by another sweep ({where}{since}); {advice}"
