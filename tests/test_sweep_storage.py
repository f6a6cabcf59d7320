"""Tests of a sweep's results folder: identity, the lock, every gap of a crash, Ctrl-C.

Each test here stands for a way a folder could come to mix or lose rows: another
function or version resuming it, two writers, a kill at any moment of a run.
"""

import csv
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from children import run as run_child
from children import started

import sdn
from sdn import cli, sweep
from sdn.sweep.identity import fingerprint


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def chunk_rows(folder):
    return sorted(
        tuple(r) for p in (folder / "chunks").glob("chunk-*.csv") for r in read_rows(p)[1:]
    )


def files(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def double(key, p):
    return {"y": 2.0 * p["a"]}


def triple(key, p):
    return {"y": 3.0 * p["a"]}


def scaled(key, p, scale):
    return {"y": scale * p["a"]}


DESIGN = sweep.grid(a=[1.0, 2.0, 3.0])

# A module the tests and their child processes both import, so that both build the very
# same sweep (a function's identity includes its module and code).
MODULE = """
import os

import jax
import jax.numpy as jnp


def scaled(key, p, scale):
    return {"y": scale * p["a"]}


def slow(key, p):
    # Every chunk spins in compiled code for a while (no Python runs meanwhile, as in a
    # real sweep), so that a run can be stopped between two chunks. The count is read
    # when f is traced; it changes how long a chunk takes, not its numbers.
    n = int(os.environ.get("SDN_TEST_SPIN", "30000000"))
    spin = jax.lax.fori_loop(0, n, lambda i, c: c ^ i, jnp.int32(0))
    y = p["a"] * jax.random.normal(key) + p["b"]
    return {"y": jnp.where(spin == -1, jnp.nan, y), "twice_a": 2 * p["a"]}


def quick(key, p):
    return {"y": p["a"] * jax.random.normal(key), "b": p["b"] * 1.0}
"""

SLOW_CONFIG = """
[sweep]
function = "sdn_test_sweep_module:slow"
seed = 5
chunk_size = 2
[grid]
a = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]
b = [0, 1]
"""


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    """A folder on sys.path holding `sdn_test_sweep_module` and the slow sweep's config."""
    folder = tmp_path_factory.mktemp("module")
    (folder / "sdn_test_sweep_module.py").write_text(MODULE)
    (folder / "slow.toml").write_text(textwrap.dedent(SLOW_CONFIG))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("sdn_test_sweep_module", None)


@pytest.fixture(scope="module")
def slow_whole(module_dir, tmp_path_factory):
    """The slow sweep run uninterrupted (the table every stopped run must end with)."""
    out = tmp_path_factory.mktemp("whole") / "whole"
    assert (
        cli.main(["sweep", str(module_dir / "slow.toml"), "--out", str(out), "--no-progress"]) == 0
    )
    return out


def child_env(module_dir, **extra):
    path = os.pathsep.join([str(module_dir), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, **extra)


def sdn_command():
    import shutil

    exe = shutil.which("sdn")
    return [exe] if exe else [sys.executable, "-m", "sdn.cli"]


def wait_for(predicate, proc, what, seconds=120):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, f"the child ended before {what}"
        assert time.monotonic() < deadline, f"no {what} in {seconds} s"
        time.sleep(0.02)


# ----------------------------------------------------------------------------- identity


def test_another_function_never_resumes_a_folder(tmp_path):
    two_lambdas = [lambda k, p: {"y": p["a"]}, lambda k, p: {"y": -p["a"]}]  # one qualname
    sweep.run(two_lambdas[0], DESIGN, out=tmp_path / "l")
    before = files(tmp_path / "l")
    with pytest.raises(sweep.FolderError, match="different sweep"):
        sweep.run(two_lambdas[1], DESIGN, out=tmp_path / "l")
    assert files(tmp_path / "l") == before
    sweep.run(double, DESIGN, out=tmp_path / "r")
    # what differs is said, and how to start fresh
    with pytest.raises(sweep.FolderError) as err:
        sweep.run(triple, DESIGN, out=tmp_path / "r")
    message = str(err.value)
    assert (
        "double' there" in message
        and "triple' now" in message
        and f"delete {tmp_path / 'r'}" in message
    )


def test_bound_settings_and_the_package_version_are_part_of_the_identity(tmp_path, monkeypatch):
    sweep.run(functools.partial(scaled, scale=2.0), DESIGN, out=tmp_path / "p")
    r = sweep.run(functools.partial(scaled, scale=2.0), DESIGN, out=tmp_path / "p")
    assert (r.points_run, r.points_skipped) == (0, 3)
    with pytest.raises(sweep.FolderError, match="the settings: scale = 2.0 there, 3.0 now"):
        sweep.run(functools.partial(scaled, scale=3.0), DESIGN, out=tmp_path / "p")
    spec = sweep.SweepFunction(scaled, defaults={"a": 0.0}, choices={}, settings={"scale": 1.0})
    sweep.run(spec.bind(scale=2.0), DESIGN, out=tmp_path / "b")
    with pytest.raises(sweep.FolderError, match="the settings: scale = 2.0 there, 4.0 now"):
        sweep.run(spec.bind(scale=4.0), DESIGN, out=tmp_path / "b")
    with jax.enable_x64(True):  # float64 rows never join float32 ones
        with pytest.raises(sweep.FolderError, match="float type .*'float32' there, 'float64' now"):
            sweep.run(functools.partial(scaled, scale=2.0), DESIGN, out=tmp_path / "p")
    monkeypatch.setattr(sdn, "__version__", "99.0")
    with pytest.raises(sweep.FolderError, match="sdn version: .* there, 99.0 now"):
        sweep.run(functools.partial(scaled, scale=2.0), DESIGN, out=tmp_path / "p")


def test_a_name_stands_for_the_function_when_the_user_gives_one(tmp_path):
    first = sweep.run(double, DESIGN, out=tmp_path / "n", name="my sweep")
    again = sweep.run(triple, DESIGN, out=tmp_path / "n", name="my sweep")  # the user vouches
    assert (again.points_run, again.points_skipped) == (0, 3)
    np.testing.assert_array_equal(again.values("y"), first.values("y"))
    with pytest.raises(sweep.FolderError, match="how the function is identified"):
        sweep.run(double, DESIGN, out=tmp_path / "n")
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        sweep.run(double, DESIGN, out=tmp_path / "n", name="")


def test_a_value_with_no_stable_description_is_refused_unless_named(tmp_path):
    opaque = object()  # its repr is a memory address, different in every process

    def f(key, p, thing):
        return {"y": p["a"]}

    with pytest.raises(sweep.UnidentifiableFunction, match=r"keywords\['thing'\].*name="):
        sweep.run(functools.partial(f, thing=opaque), DESIGN, out=tmp_path / "u")
    assert not (tmp_path / "u").exists()
    r = sweep.run(functools.partial(f, thing=opaque), DESIGN, out=tmp_path / "u", name="u")
    assert r.points_run == 3


def test_identity_is_the_same_in_another_process(tmp_path, module_dir):
    import sdn_test_sweep_module as m

    script = textwrap.dedent(
        """
        import functools, sys
        import jax, numpy as np
        import sdn_test_sweep_module as m
        from sdn import sweep
        from sdn.sweep.identity import fingerprint
        f = functools.partial(m.scaled, scale=2.5)
        arrays = functools.partial(m.scaled, scale=np.arange(3.0))  # an array, a jax key
        keyed = functools.partial(m.scaled, scale=jax.random.key(1))
        others = [sweep.escape.bind(n_paths=8), m.slow, arrays, keyed]
        print(*[fingerprint(g) for g in (f, *others)])
        sweep.run(f, sweep.grid(a=[1.0, 2.0, 3.0]), seed=4, out=sys.argv[1])
        """
    )
    done = run_child(
        [sys.executable, "-c", script, str(tmp_path / "x")], env=child_env(module_dir), timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:]
    f = functools.partial(m.scaled, scale=2.5)
    arrays = functools.partial(m.scaled, scale=np.arange(3.0))
    keyed = functools.partial(m.scaled, scale=jax.random.key(1))
    others = [sweep.escape.bind(n_paths=8), m.slow, arrays, keyed]
    assert done.stdout.split()[-5:] == [fingerprint(g) for g in (f, *others)]
    r = sweep.run(f, sweep.grid(a=[1.0, 2.0, 3.0]), seed=4, out=tmp_path / "x")
    assert (r.points_run, r.points_skipped) == (0, 3)  # resumed, not refused


HELPER = """
SCALE = 2.0


def helper(x):
    return SCALE * x


def f(key, p):
    return {"y": helper(p["a"])}
"""


@pytest.mark.parametrize(
    "edit, same",
    [
        (("return {", "# a comment changes nothing\n    return {"), True),
        (("SCALE * x", "SCALE * x + 0.0"), False),  # a helper of f's module
        (("SCALE = 2.0", "SCALE = 3.0"), False),  # a constant f's helper reads
    ],
)
def test_the_fingerprint_follows_code_and_constants_f_reads(tmp_path, monkeypatch, edit, same):
    import importlib

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no stale .pyc of the same size
    prints = []
    for text in (HELPER, HELPER.replace(*edit)):
        (tmp_path / "sdn_test_fingerprint.py").write_text(text)
        sys.modules.pop("sdn_test_fingerprint", None)
        importlib.invalidate_caches()
        prints.append(fingerprint(importlib.import_module("sdn_test_fingerprint").f))
    sys.modules.pop("sdn_test_fingerprint", None)
    assert (prints[0] == prints[1]) == same


def test_a_folder_from_an_older_format_is_refused(tmp_path):
    (tmp_path / "old").mkdir()
    manifest = {"format": 1, "config_hash": "0" * 64, "complete": True}
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(sweep.FolderError, match="older sdn .*format 1.*start fresh"):
        sweep.run(double, DESIGN, out=tmp_path / "old")


# ----------------------------------------------------------------------------- the lock


def write_lock(folder, pid, host=None, **extra):
    folder.mkdir(exist_ok=True)
    owner = {"pid": pid, "host": host or socket.gethostname(), **extra}
    (folder / "lock").write_text(json.dumps(owner))


def test_a_live_lock_refuses_and_a_dead_ones_is_reclaimed(tmp_path):
    out = tmp_path / "l"
    with started([[sys.executable, "-c", "import time; time.sleep(120)"]]) as (holder,):
        write_lock(out, holder.pid)
        before = files(out)
        with pytest.raises(sweep.FolderLocked, match=f"process {holder.pid} on host"):
            sweep.run(double, DESIGN, out=out)
        assert files(out) == before
        holder.kill()
        holder.wait()
    r = sweep.run(double, DESIGN, out=out)  # the holder is gone: its lock is stale
    assert r.points_run == 3 and not (out / "lock").exists()
    # a lock from another host cannot be checked from here: refused, saying what to do
    write_lock(out, 1, host="elsewhere.example")
    with pytest.raises(sweep.FolderLocked, match=r"host 'elsewhere.example'.*delete .*lock"):
        sweep.run(double, DESIGN, out=out)
    # a live pid that now belongs to a later process (pid reuse) does not hold the lock
    write_lock(out, os.getpid(), process_start="1")
    assert sweep.run(double, DESIGN, out=out).points_skipped == 3


# ----------------------------------------------------------------------------- crashes

KILLED = """
import os, sys
from pathlib import Path
import sdn_test_sweep_module as m
from sdn import sweep

out, where = sys.argv[1], sys.argv[2]
real_replace, chunks = os.replace, []


def replace(src, dst):
    name = Path(dst).name
    if where == "before the first manifest" and name == "manifest.json":
        os._exit(9)  # the manifest is in its temporary file, never renamed
    if name.startswith("chunk-"):
        chunks.append(name)
        if where == "during a chunk write" and len(chunks) == 2:
            Path(src).write_text(Path(src).read_text()[:30])  # the write was cut short
            os._exit(9)
    real_replace(src, dst)
    if where == "after a chunk file" and len(chunks) == 2:
        os._exit(9)  # the chunk is on disk and nothing after it happened


os.replace = replace
sweep.run(m.quick, sweep.grid(a=[0.5, 1.0, 1.5], b=[0, 1]), seed=3, chunk_size=2, out=out)
"""


@pytest.mark.parametrize(
    "where", ["before the first manifest", "after a chunk file", "during a chunk write"]
)
def test_a_run_killed_at_any_moment_resumes_with_every_row_once(tmp_path, module_dir, where):
    import sdn_test_sweep_module as m

    design = sweep.grid(a=[0.5, 1.0, 1.5], b=[0, 1])
    whole = sweep.run(m.quick, design, seed=3, chunk_size=2, out=tmp_path / "whole")
    out = tmp_path / "killed"
    done = run_child(
        [sys.executable, "-c", KILLED, str(out), where], env=child_env(module_dir), timeout=300
    )
    assert done.returncode == 9, done.stdout[-3000:]
    assert not (out / "results.csv").exists()
    again = sweep.run(m.quick, design, seed=3, chunk_size=2, out=out)
    assert again.points_skipped == {"after a chunk file": 4, "during a chunk write": 2}.get(
        where, 0
    )
    assert (out / "results.csv").read_bytes() == (tmp_path / "whole" / "results.csv").read_bytes()
    assert chunk_rows(out) == sorted(tuple(r) for r in read_rows(out / "results.csv")[1:])
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == "lock"]
    assert whole.n_points == 6


def test_every_rename_is_followed_by_a_flush_of_its_folder(tmp_path, monkeypatch):
    events = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        real_replace(src, dst)
        events.append(("rename into", os.path.realpath(Path(dst).parent)))

    def fsync(fd):
        real_fsync(fd)
        events.append(("fsync", os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))))

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name the flushed file")
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    sweep.run(double, DESIGN, chunk_size=1, out=tmp_path / "f")
    monkeypatch.undo()
    renames = [i for i, e in enumerate(events) if e[0] == "rename into"]
    assert len(renames) >= 5  # the manifest, 3 chunks, results.csv, ...
    for i in renames:
        assert events[i + 1] == ("fsync", events[i][1]), events[i : i + 2]


def raise_at_second_chunk(monkeypatch, error):
    """Make the second chunk's rename raise `error` (after its temporary file is written)."""
    real_replace, chunks = os.replace, []

    def replace(src, dst):
        if Path(dst).name.startswith("chunk-"):
            chunks.append(dst)
            if len(chunks) == 2:
                raise error
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_an_error_inside_a_chunk_write_leaves_no_partial_chunk_and_no_lock(tmp_path, monkeypatch):
    import errno

    raise_at_second_chunk(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="No space"):
        sweep.run(double, DESIGN, chunk_size=1, out=tmp_path / "d")
    monkeypatch.undo()
    names = sorted(p.name for p in (tmp_path / "d").rglob("*"))
    assert [n[:13] for n in names] == ["chunk-000000-", "chunks", "manifest.json"]
    again = sweep.run(double, DESIGN, chunk_size=1, out=tmp_path / "d")
    assert (again.points_run, again.points_skipped) == (2, 1)


def test_a_folder_with_other_files_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(sweep.FolderError, match=r"not empty .*notes\.txt"):
        sweep.run(double, DESIGN, out=tmp_path / "other")
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]


# ----------------------------------------------------------------------------- stopping a run


def test_a_second_writer_is_refused_and_a_killed_run_resumes(tmp_path, module_dir, slow_whole):
    """`sdn sweep` killed with SIGKILL while a second run tries the same folder."""
    cfg, killed = module_dir / "slow.toml", tmp_path / "killed"
    command = [*sdn_command(), "sweep", str(cfg), "--out", str(killed), "--no-progress"]
    env = child_env(module_dir, SDN_TEST_SPIN="120000000")  # time for the second run
    with started([command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as (proc,):
        wait_for(lambda: list((killed / "chunks").glob("chunk-*.csv")), proc, "chunk written")
        # A second run on the same folder, while the first one writes it.
        assert cli.main(["sweep", str(cfg), "--out", str(killed), "--no-progress"]) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finished = list((killed / "chunks").glob("chunk-*.csv"))
    assert 1 <= len(finished) < 12 and not (killed / "results.csv").exists()
    assert (killed / "lock").exists()  # SIGKILL left its lock: the rerun must reclaim it

    assert cli.main(["sweep", str(cfg), "--out", str(killed), "--no-progress"]) == 0
    assert (killed / "results.csv").read_bytes() == (slow_whole / "results.csv").read_bytes()
    rows = read_rows(killed / "results.csv")[1:]
    assert len({(r[0], r[-2]) for r in rows}) == len(rows) == 24 * 2
    assert chunk_rows(killed) == sorted(map(tuple, rows))  # every row once
    assert not list(killed.rglob("*.tmp")) and not (killed / "lock").exists()


def test_a_busy_folder_is_one_line_naming_the_holder(tmp_path, module_dir, capsys):
    cfg, out = module_dir / "slow.toml", tmp_path / "busy"
    with started([[sys.executable, "-c", "import time; time.sleep(120)"]]) as (holder,):
        write_lock(out, holder.pid)
        assert cli.main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("sdn sweep: error:")
    assert f"process {holder.pid}" in err and "wait for it" in err


def test_ctrl_c_prints_one_line_exits_130_and_the_same_command_resumes(
    tmp_path, module_dir, slow_whole
):
    cfg, out = module_dir / "slow.toml", tmp_path / "stopped"
    command = [*sdn_command(), "sweep", str(cfg), "--out", str(out), "--no-progress"]
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    env = child_env(module_dir, SDN_TEST_SPIN="120000000")
    with started([command], env=env, **pipes) as (proc,):
        wait_for(lambda: list((out / "chunks").glob("chunk-*.csv")), proc, "chunk written")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    saved = len(list((out / "chunks").glob("chunk-*.csv"))) * 2  # two points per chunk
    assert lines[0] == (
        f"sdn sweep: interrupted; {saved} of 24 points are saved in {out}; "
        "rerun the same command to resume"
    )
    assert 2 <= saved < 24 and not (out / "lock").exists()
    assert cli.main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert (out / "results.csv").read_bytes() == (slow_whole / "results.csv").read_bytes()


def test_ctrl_c_in_the_python_api_says_what_is_saved(tmp_path, monkeypatch):
    raise_at_second_chunk(monkeypatch, KeyboardInterrupt())  # Ctrl-C during a chunk write
    with pytest.raises(sweep.SweepInterrupted) as stop:
        sweep.run(double, DESIGN, chunk_size=1, out=tmp_path / "c")
    monkeypatch.undo()
    assert (stop.value.saved, stop.value.total, stop.value.out) == (1, 3, tmp_path / "c")
    assert isinstance(stop.value, KeyboardInterrupt) and not (tmp_path / "c" / "lock").exists()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX")


def test_children_and_theirs_are_killed_when_a_test_times_out():
    script = textwrap.dedent(
        """
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(grandchild.pid, flush=True)
        time.sleep(120)
        """
    )
    with pytest.raises(subprocess.TimeoutExpired):
        with started([[sys.executable, "-c", script]], stdout=subprocess.PIPE, text=True) as (c,):
            grandchild = int(c.stdout.readline())
            c.wait(timeout=1)
    assert c.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while alive(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived the test"
        time.sleep(0.05)
