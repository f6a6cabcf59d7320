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
from collections.abc import Iterator, Sequence


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
