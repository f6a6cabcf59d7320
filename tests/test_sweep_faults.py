"""Every way a results folder can be damaged or a run stopped, in one table.

Each case inflicts one fault on a sweep's folder (a damaged or foreign chunk file, a
bad manifest, a full disk at one write, SIGKILL at one step of a chunk write, a folder
that cannot be written, a lock held elsewhere) and then reruns the sweep. It ends in
one of two ways: a refusal whose message names the file (and that changes nothing in
the folder), or a complete resume: every row exactly once, every value the function's
own, a damaged chunk moved into `quarantine/` and named in a warning.

Two runs writing one folder at the same moment are in `test_sweep_storage`
(`test_a_second_writer_is_refused_and_a_killed_run_resumes`) and several hosts sharing
one folder in `test_sweep` (`test_two_processes_write_the_table_of_one`,
`test_two_processes_stop_together_when_the_folder_is_busy`); the lock cases here stand
for them without the second process.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import socket
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from children import run as run_child

import sdn._io
from sdn import sweep
from sdn.sweep.chunks import seal
from sdn.sweep.lock import _process_start


def linear(key, p):
    return {"y": 2.0 * p["a"] + p["b"], "ab": p["a"] * p["b"]}


def other(key, p):  # another sweep of the same design
    return {"y": 3.0 * p["a"] + p["b"], "ab": p["a"] * p["b"]}


DESIGN = sweep.grid(a=[0.5, 1.0, 1.5, 2.0], b=[0.0, 1.0])  # 8 points, 4 chunks of 2
A, B = (DESIGN.points[n] for n in ("a", "b"))
EXPECTED = {"y": 2.0 * A + B, "ab": A * B}  # exact in float32 for these values
# The file writes of a fresh run, in order (`test_the_table_has_every_write_of_a_run`).
WRITES = ("manifest.json", *(f"chunk-00000{c}-" for c in range(4)), "results.csv", "manifest.json")


def run(out, f=linear, name="faults"):
    return sweep.run(f, DESIGN, seed=1, chunk_size=2, out=out, name=name, progress=False)


def chunks(out):
    return sorted((out / "chunks").glob("chunk-*"))


def files(out):
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def assert_complete(out, result):
    """Every row once, every value the function's own, in the table and on disk."""
    rows = read_rows(out / "results.csv")
    assert rows[0] == ["point", "a", "b", "statistic", "value"]
    keys = [(int(r[0]), r[3]) for r in rows[1:]]
    assert sorted(keys) == [(i, s) for i in range(8) for s in ("ab", "y")]  # each once
    for r in rows[1:]:
        i = int(r[0])
        assert (float(r[1]), float(r[2])) == (A[i], B[i])
        assert float(r[4]) == EXPECTED[r[3]][i], r
    on_disk = sorted(tuple(r) for c in chunks(out) for r in read_rows(c)[1:])
    assert on_disk == sorted(map(tuple, rows[1:]))  # the chunks hold each row once too
    for s, values in EXPECTED.items():
        np.testing.assert_array_equal(result.values(s), values)
    assert result.n_points == 8
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == "lock"]


@dataclass(frozen=True)
class Expect:
    """What the rerun after a fault does.

    refused: the error type of a refusal (None: the rerun resumes).
    names: what the refusal's message must name (files, the folder).
    repair: what the user does after the refusal, before resuming (None: nothing more).
    skipped: points the resume finds finished.
    quarantined: chunk files the resume must move aside with a warning.
    """

    refused: type[BaseException] | None = None
    names: tuple[str, ...] = ()
    repair: Callable[[], None] | None = None
    skipped: int = 0
    quarantined: tuple[Path, ...] = ()


# ----------------------------------------------------------------------------- the faults


def damage(edit: Callable[[bytes], bytes], which: int = 1):
    """A finished sweep whose chunk `which` is rewritten by `edit` (its name kept)."""

    def inflict(out, monkeypatch):
        run(out)
        path = chunks(out)[which]
        path.write_bytes(edit(path.read_bytes()))
        return Expect(skipped=6, quarantined=(path,))

    return inflict


def edited(content: bytes) -> bytes:
    head, rows = content.split(b"\n", 1)
    return head + b"\n" + rows.replace(b",y,", b",y,1", 1)  # 1.0 becomes 11.0, and so on


def foreign(out, monkeypatch):
    """Chunk 1 replaced by chunk 1 of another sweep (same design, another function)."""
    run(out)
    run(out.with_name("other"), f=other, name="other")
    ours, theirs = chunks(out)[1], chunks(out.with_name("other"))[1]
    ours.unlink()
    shutil.copy(theirs, out / "chunks" / theirs.name)
    return Expect(skipped=6, quarantined=(out / "chunks" / theirs.name,))


def duplicated_as(rename: Callable[[Path], str]):
    """A finished sweep with a copy of chunk 1 under another name (its points stay done)."""

    def inflict(out, monkeypatch):
        run(out)
        copy = out / "chunks" / rename(chunks(out)[1])
        shutil.copy(chunks(out)[1], copy)
        return Expect(skipped=8, quarantined=(copy,))

    return inflict


def resealed_header(out, monkeypatch):
    """Wrong columns under a correct seal: the rows are checked, not only the hash."""
    run(out)
    path = chunks(out)[2]
    content = path.read_bytes().replace(b"point,a,b,", b"point,b,a,", 1)
    key = json.loads((out / "manifest.json").read_text())["identity_sha256"]
    path.unlink()
    resealed = out / "chunks" / f"chunk-000002-{seal(key, 2, content)}.csv"
    resealed.write_bytes(content)
    return Expect(skipped=6, quarantined=(resealed,))


def bad_manifest(out, monkeypatch):
    run(out)
    (out / "manifest.json").write_bytes(b"\x00{garbage")
    return Expect(sweep.FolderError, names=(str(out / "manifest.json"), "not a readable"))


def missing_manifest(out, monkeypatch):
    run(out)
    (out / "manifest.json").unlink()
    return Expect(sweep.FolderError, names=(str(out), "manifest.json", "chunks/chunk-000000-"))


class Full(OSError):
    pass


def full_disk_at(k: int):
    """A fresh run whose k-th file write (0-based) fills the disk halfway through."""

    def inflict(out, monkeypatch):
        calls = []

        def open_(file, mode="r", **kw):
            fh = open(file, mode, **kw)
            calls.append(file)
            if len(calls) - 1 == k:
                real_write = fh.write

                def write(data):
                    real_write(data[: len(data) // 2])
                    raise OSError(errno.ENOSPC, "No space left on device", str(file))

                fh.write = write
            return fh

        monkeypatch.setattr(sdn._io, "open", open_, raising=False)
        with pytest.raises(OSError) as err:
            run(out)
        assert err.value.errno == errno.ENOSPC and str(calls[k]) in str(err.value)
        assert not list(out.rglob("*.tmp")) and not (out / "lock").exists()
        chunks_before = min(max(k - 1, 0), 4)
        return Expect(skipped=2 * chunks_before)

    return inflict


KILLED = """
import os, signal, sys
from pathlib import Path
import sdn._io
from sdn import sweep

out, step = Path(sys.argv[1]), sys.argv[2]
real_open, real_replace, real_fsync_dir = open, os.replace, sdn._io.fsync_dir
state = {"chunks": 0, "renamed": False}


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def second_chunk(name):
    return name.startswith((".chunk-", "chunk-")) and state["chunks"] == 2


def open_(file, mode="r", **kw):
    fh = real_open(file, mode, **kw)
    if Path(file).name.startswith(".chunk-"):
        state["chunks"] += 1
        if second_chunk(Path(file).name) and step == "opened":
            die()
        if second_chunk(Path(file).name) and step == "half written":
            real_write = fh.write
            fh.write = lambda data: (real_write(data[: len(data) // 2]), fh.flush(), die())
    return fh


def replace(src, dst):
    if second_chunk(Path(dst).name) and step == "written, not renamed":
        die()
    real_replace(src, dst)
    if second_chunk(Path(dst).name):
        state["renamed"] = True
        if step == "renamed, folder not flushed":
            die()


def fsync_dir(folder):
    real_fsync_dir(folder)
    if state["renamed"] and step == "folder flushed":
        die()


sdn._io.open, os.replace, sdn._io.fsync_dir = open_, replace, fsync_dir


def linear(key, p):
    return {"y": 2.0 * p["a"] + p["b"], "ab": p["a"] * p["b"]}


design = sweep.grid(a=[0.5, 1.0, 1.5, 2.0], b=[0.0, 1.0])
sweep.run(linear, design, seed=1, chunk_size=2, out=out, name="faults", progress=False)
"""


def killed_at(step: str, skipped: int):
    """A run that SIGKILLs itself at `step` of its second chunk write."""

    def inflict(out, monkeypatch):
        done = run_child([sys.executable, "-c", KILLED, str(out), step], timeout=240)
        assert done.returncode == -9, done.stdout[-3000:]
        assert (out / "lock").exists() and not (out / "results.csv").exists()
        return Expect(skipped=skipped)

    return inflict


def read_only(out, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("running as root, which ignores file permissions: cannot test it here")
    done = run(out)
    (out / "results.csv").unlink()  # to see that nothing is written
    for folder in (out / "chunks", out):
        folder.chmod(0o555)

    def repair():
        for folder in (out, out / "chunks"):
            folder.chmod(0o755)

    assert done.n_points == 8
    return Expect(
        sweep.FolderError, names=(str(out), "cannot be written"), repair=repair, skipped=8
    )


def locked(host: str | None):
    """A lock held by a live process of this host, or by a process of another host."""

    def inflict(out, monkeypatch):
        run(out)
        owner = {"pid": os.getpid(), "host": host or socket.gethostname()}
        owner["process_start"] = _process_start(os.getpid())
        (out / "lock").write_text(json.dumps(owner))
        names = (str(out), f"process {os.getpid()}")
        if host is not None:
            names += (str(out / "lock"), "delete")  # what to do once it is known gone
        return Expect(sweep.FolderLocked, names=names, repair=(out / "lock").unlink, skipped=8)

    return inflict


CASES = {
    "truncated mid-row": damage(lambda c: c[: len(c) - 7]),
    "edited value": damage(edited),
    "empty": damage(lambda c: b""),
    "wrong header": damage(lambda c: c.replace(b"point,a,b,", b"point,b,a,", 1)),
    "extra row appended": damage(lambda c: c + c.split(b"\n")[1] + b"\n"),
    "last chunk truncated": damage(lambda c: c[:40], which=3),
    "foreign chunk": foreign,
    "duplicated under another number": duplicated_as(
        lambda p: f"chunk-000009-{p.name.split('-')[2]}"
    ),
    "duplicated as a copy": duplicated_as(lambda p: p.name.replace(".csv", " (copy).csv")),
    "unsealed name": duplicated_as(lambda p: "chunk-000009.csv"),
    "wrong header, resealed": resealed_header,
    "garbage manifest": bad_manifest,
    "missing manifest": missing_manifest,
    **{f"ENOSPC at write {k}, {name}": full_disk_at(k) for k, name in enumerate(WRITES)},
    **{
        f"SIGKILL: {step}": killed_at(step, skipped)
        for step, skipped in [
            ("opened", 2),
            ("half written", 2),
            ("written, not renamed", 2),
            ("renamed, folder not flushed", 4),
            ("folder flushed", 4),
        ]
    },
    "read-only folder": read_only,
    "locked on this host": locked(None),
    "locked from another host": locked("elsewhere.example"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_fault_is_refused_naming_the_file_or_resumed_completely(case, tmp_path, monkeypatch):
    out = tmp_path / "out"
    expect = CASES[case](out, monkeypatch)
    monkeypatch.undo()
    if expect.refused is not None:
        before = files(out)
        with pytest.raises(expect.refused) as err:
            run(out)
        for name in expect.names:
            assert name in str(err.value), (name, str(err.value))
        assert files(out) == before  # a refusal changes nothing
        if expect.repair is None:
            return
        expect.repair()
    quarantined = {p: p.read_bytes() for p in expect.quarantined}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(out)
    damaged = [w for w in caught if issubclass(w.category, sweep.DamagedChunkWarning)]
    assert sorted(str(p) for p in quarantined) == sorted(
        str(w.message).split(":")[0] for w in damaged
    )
    for p, content in quarantined.items():
        assert (out / "quarantine" / p.name).read_bytes() == content  # moved, not deleted
        assert not p.exists() or p.read_bytes() != content  # (a rerun chunk may take its name)
    assert (result.points_skipped, result.points_run) == (expect.skipped, 8 - expect.skipped)
    assert_complete(out, result)


def test_the_table_has_every_write_of_a_run(tmp_path, monkeypatch):
    """The ENOSPC cases cover each file write of a fresh run: WRITES, in order."""
    calls = []

    def open_(file, mode="r", **kw):
        calls.append(Path(file).name)  # the temporary file: .NAME.PID.tmp
        return open(file, mode, **kw)

    monkeypatch.setattr(sdn._io, "open", open_, raising=False)
    run(tmp_path / "out")
    assert len(calls) == len(WRITES)
    assert all(c.startswith("." + w) for c, w in zip(calls, WRITES, strict=True)), calls


def test_a_second_resume_after_quarantine_reads_everything(tmp_path):
    """The quarantine folder is never read, and a clean folder resumes silently."""
    out = tmp_path / "out"
    run(out)
    chunks(out)[0].write_bytes(b"")
    with pytest.warns(sweep.DamagedChunkWarning, match="chunk-000000-"):
        run(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = run(out)
    assert again.points_skipped == 8 and len(list((out / "quarantine").iterdir())) == 1
    assert_complete(out, again)
