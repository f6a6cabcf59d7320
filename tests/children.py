"""Child processes for tests: never left running, and no port picked by hand.

Each child starts in its own session (process group), so that killing it also kills
whatever it started; `started` kills every child still running when its block ends,
whether the test passed, failed or timed out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence

import numpy as np


@contextlib.contextmanager
def started(commands: Sequence[Sequence[str]], **popen) -> Iterator[list[subprocess.Popen]]:
    """Start each command; on leaving the block, kill (with their children) those still running."""
    procs: list[subprocess.Popen] = []
    try:
        for command in commands:
            procs.append(subprocess.Popen(command, start_new_session=True, **popen))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()  # reap it and close its pipes


def run(command: Sequence[str], *, timeout: float, **popen) -> subprocess.CompletedProcess:
    """Run one command to the end, or kill it and its children after `timeout` seconds."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.STDOUT)
    popen.setdefault("text", True)
    with started([command], **popen) as (proc,):
        out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def free_port() -> int:
    """A TCP port that was free a moment ago (callers retry if it is taken meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_devices_env(n_devices: int) -> dict[str, str]:
    """This environment with JAX's CPU split into `n_devices` devices."""
    flag = f"--xla_force_host_platform_device_count={n_devices}"
    return dict(os.environ, XLA_FLAGS=flag)


def npz_on_one_and_four_devices(script: str, folder) -> list:
    """Run the Python `script` (arguments: an output `.npz` path and the device count) once
    on 1 and once on 4 CPU devices; return the two loaded archives."""
    results = []
    for n_dev in (1, 4):
        out = folder / f"r{n_dev}.npz"
        done = run([sys.executable, "-c", script, str(out), str(n_dev)],
                   env=host_devices_env(n_dev), timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:]
        results.append(np.load(out))
    return results
