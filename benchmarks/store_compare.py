"""The sweep's results store against SQLite: write speed, SIGKILL at random moments, size.

Both stores get the same rows (`point, a, b, statistic, value` as text, as a sweep
writes them), one durable commit per chunk:

- `chunks`: `sdn.sweep`'s store (`ResultsFolder`): one atomic, fsynced file per chunk
  whose name carries a SHA-256 of its bytes bound to the sweep's identity, a lock file,
  a manifest.
- `sqlite`: the standard library's `sqlite3`, one database file, WAL journal,
  `synchronous=FULL` (each commit on disk), one transaction per chunk, the identity's
  digest in a `meta` table, `PRAGMA quick_check` when it is opened again.

It measures:

1. milliseconds per chunk written (a fresh store, `--chunks` chunks of `--points`
   points × 2 statistics), and the time to open the full store again and read back its
   rows verified (the hash of every chunk; SQLite's `quick_check`);
2. crash behaviour: a writer process is killed with SIGKILL at a random moment of its
   writes (`--kills` times per store); the parent then resumes (finds what is done,
   writes the rest) and checks that every row is there exactly once with its value;
3. code size: the lines (without blank lines, comments and docstrings) of the modules
   the sweep's store is made of, against this file's SQLite store.

Run: `python benchmarks/store_compare.py [--chunks 100 --points 64 --kills 6]` (about
half a minute; the kill trials of the chunk store each start a Python that imports jax).
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATISTICS = ("y", "ab")


def expected_rows(point: int) -> list[list[str]]:
    a, b = 0.5 * point, float(point % 3)
    values = {"y": 2.0 * a + b, "ab": a * b}
    return [[str(point), repr(a), repr(b), s, repr(values[s])] for s in STATISTICS]


def chunk_rows(c: int, per: int) -> dict[int, list[list[str]]]:
    return {i: expected_rows(i) for i in range(c * per, (c + 1) * per)}


# ----------------------------------------------------------------------------- the stores


class ChunkStore:
    """`sdn.sweep`'s own results folder, driven as the runner drives it."""

    def __init__(self, path: Path, n_points: int):
        from sdn.sweep.storage import ResultsFolder

        about = {"function": "store_compare", "n_points": n_points, "parameters": ["a", "b"]}
        self.folder = ResultsFolder.open(path, _identity(n_points), about)

    def done(self) -> dict[int, list[list[str]]]:
        return dict(self.folder.rows)

    def write_chunk(self, rows: dict[int, list[list[str]]]) -> None:
        self.folder.write_chunk(rows)

    def close(self) -> None:
        self.folder.close()


@functools.cache
def _identity(n_points: int) -> dict:
    from sdn import sweep
    from sdn.sweep.identity import identify

    design = sweep.grid(i=list(range(n_points)))
    return identify(None, design, key_data=[0, 0], static=[], name="store_compare")


class SqliteStore:
    """The same store on SQLite: one transaction per chunk, the identity in `meta`."""

    def __init__(self, path: Path, n_points: int):
        path.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(path / "results.sqlite", isolation_level=None, timeout=0)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=FULL")
        check = self.con.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise ValueError(f"{path / 'results.sqlite'} is damaged: {check}")
        identity = json.dumps({"name": "store_compare", "n_points": n_points})
        with self._transaction():
            self.con.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)")
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS rows(point INTEGER, a TEXT, b TEXT, statistic TEXT,"
                " value TEXT, PRIMARY KEY(point, statistic))"
            )
            self.con.execute("INSERT OR IGNORE INTO meta VALUES('identity', ?)", (identity,))
            (found,) = self.con.execute("SELECT value FROM meta WHERE key='identity'").fetchone()
        if found != identity:
            raise ValueError(f"{path} holds another sweep")

    def _transaction(self):
        con = self.con

        class T:
            def __enter__(self):
                con.execute("BEGIN IMMEDIATE")  # the write lock, or sqlite3.OperationalError

            def __exit__(self, kind, *_):
                con.execute("COMMIT" if kind is None else "ROLLBACK")

        return T()

    def done(self) -> dict[int, list[list[str]]]:
        rows: dict[int, list[list[str]]] = {}
        for r in self.con.execute("SELECT * FROM rows ORDER BY point, statistic"):
            rows.setdefault(r[0], []).append([str(r[0]), *r[1:]])
        return rows

    def write_chunk(self, rows: dict[int, list[list[str]]]) -> None:
        with self._transaction():
            self.con.executemany(
                "INSERT INTO rows VALUES(?, ?, ?, ?, ?)",
                [(int(r[0]), *r[1:]) for point_rows in rows.values() for r in point_rows],
            )

    def close(self) -> None:
        self.con.close()


STORES = {"chunks": ChunkStore, "sqlite": SqliteStore}


# ----------------------------------------------------------------------------- measurements


def write_speed(kind: str, root: Path, n_chunks: int, per: int) -> tuple[float, float]:
    """Milliseconds per chunk written, and seconds to open the full store and read it."""
    store = STORES[kind](root / f"speed-{kind}", n_chunks * per)
    t0 = time.perf_counter()
    for c in range(n_chunks):
        store.write_chunk(chunk_rows(c, per))
    per_chunk = (time.perf_counter() - t0) / n_chunks * 1e3
    store.close()
    t0 = time.perf_counter()
    store = STORES[kind](root / f"speed-{kind}", n_chunks * per)
    assert len(store.done()) == n_chunks * per
    store.close()
    return per_chunk, time.perf_counter() - t0


def child(kind: str, path: str, n_chunks: int, per: int) -> None:
    """The writer that the parent kills: opens the store, says so, writes every chunk."""
    store = STORES[kind](Path(path), n_chunks * per)
    print("ready", flush=True)
    for c in range(n_chunks):
        store.write_chunk(chunk_rows(c, per))
    print("finished", flush=True)
    time.sleep(60)  # never reached by a kill drawn inside the writes


def killed_and_resumed(kind: str, root: Path, trial: int, n_chunks: int, per: int, span: float):
    """Kill a writer at a random moment in its writes; resume; check every row once."""
    path = root / f"kill-{kind}-{trial}"
    command = [sys.executable, __file__, "--child", kind, str(path), str(n_chunks), str(per)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(random.uniform(0, span))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = STORES[kind](path, n_chunks * per)  # a stale lock of a dead pid is reclaimed
    found = store.done()
    for c in range(n_chunks):
        todo = {i: r for i, r in chunk_rows(c, per).items() if i not in found}
        if todo:
            store.write_chunk(todo)
    rows = [tuple(r) for point_rows in store.done().values() for r in point_rows]
    store.close()
    want = [tuple(r) for i in range(n_chunks * per) for r in expected_rows(i)]
    ok = sorted(rows) == sorted(want) and len(set(rows)) == len(rows)
    return len(found) // per, ok


def edited_value_detected(kind: str, root: Path, per: int) -> str:
    """Edit one stored value in place on disk (same length), reopen: caught, or read?"""
    import warnings

    path, n_chunks, point = root / f"edit-{kind}", 4, per + 1  # a point of chunk 1
    store = STORES[kind](path, n_chunks * per)
    for c in range(n_chunks):
        store.write_chunk(chunk_rows(c, per))
    store.close()  # SQLite: the WAL is checkpointed into the database file
    row = expected_rows(point)[0]
    edit = [*row[:-1], "9" + row[-1][1:]]
    if kind == "chunks":  # the row's line in its chunk file
        file, old, new = sorted((path / "chunks").glob("chunk-*"))[1], row, edit
        old, new = (",".join(r).encode() + b"\n" for r in (old, new))
    else:  # the row's record: its text columns lie side by side in a table page
        file = path / "results.sqlite"
        old, new = ("".join(r[1:]).encode() for r in (row, edit))
    content = file.read_bytes()
    assert content.count(old) == 1, (kind, old)
    file.write_bytes(content.replace(old, new))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            store = STORES[kind](path, n_chunks * per)
        except (ValueError, sqlite3.DatabaseError) as err:
            return f"refused ({type(err).__name__}: {err})"
    found = [r[-1] for r in store.done().get(point, []) if r[3] == row[3]]
    value = found[0] if found else "nothing (its chunk was moved aside, to run again)"
    store.close()
    if caught:
        return f"caught ({type(caught[0].message).__name__}); point {point} reads {value}"
    return f"NOT caught: point {point} reads {value} (written {row[-1]})"


def code_lines(source: str) -> int:
    """Lines of code: no blank lines, comments or docstrings."""
    tree = ast.parse(source)
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(getattr(body[0], "value", None), ast.Constant):
                docs |= set(range(body[0].lineno, body[0].end_lineno + 1))
    lines = source.splitlines()
    return sum(
        1
        for k, line in enumerate(lines, 1)
        if line.strip() and not line.strip().startswith("#") and k not in docs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, n_chunks, per = args.child
        return child(kind, path, int(n_chunks), int(per))
    random.seed(0)
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.uname().sysname}")
    print(f"{args.chunks} chunks x {args.points} points x {len(STATISTICS)} statistics per store\n")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        speed = {k: write_speed(k, root, args.chunks, args.points) for k in STORES}
        print(f"{'store':8} {'ms/chunk':>9} {'read back (s)':>14}")
        for k, (ms, read) in speed.items():
            print(f"{k:8} {ms:9.2f} {read:14.3f}")
        ratio = speed["chunks"][0] / speed["sqlite"][0]
        print(f"chunk files / sqlite write time per chunk: {ratio:.2f}\n")
        for k in STORES:
            span = speed[k][0] * args.chunks / 1e3
            trials = [
                killed_and_resumed(k, root, t, args.chunks, args.points, span)
                for t in range(args.kills)
            ]
            found = ", ".join(str(n) for n, _ in trials)
            good = sum(ok for _, ok in trials)
            print(f"SIGKILL {k:7}: chunks found done [{found}]; {good}/{len(trials)} resumed")
            print(f"{'':17}with every row exactly once and every value right")
        for k in STORES:
            print(f"one value edited on disk, {k:7}: {edited_value_detected(k, root, args.points)}")
    from sdn import _io
    from sdn.sweep import chunks, lock, storage

    ours = {m.__name__: code_lines(inspect.getsource(m)) for m in (storage, chunks, lock, _io)}
    theirs = code_lines(inspect.getsource(SqliteStore))
    print(f"\ncode lines: chunk store {sum(ours.values())} ({json.dumps(ours)})")
    print(f"            sqlite store {theirs} (this file's SqliteStore; no messages, no CSV)")


if __name__ == "__main__":
    main()
