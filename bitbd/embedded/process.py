"""Child-process helpers shared by the embedded services: parent-death signals, orphan clean-up, waiting."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when this process dies, even by SIGKILL (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        # Runs in the child after the uid switch, so the setting survives it.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def stop_process(pid: int, first: int, timeout: float, what: str) -> None:
    """Send `first`, wait up to `timeout` seconds, then SIGKILL; quiet if it is already gone."""
    try:
        proc = psutil.Process(pid)
        proc.send_signal(first)
        proc.wait(timeout)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        log.warning("process did not stop in time, killing it", extra={"what": what, "pid": pid})
        try:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass


def live_pid_from_file(path: Path, name_contains: str) -> int | None:
    """The PID in the first line of `path` if that process is alive and its name matches, else None."""
    try:
        pid = int(path.read_text().split()[0])
        proc = psutil.Process(pid)
        return pid if name_contains in proc.name() and proc.status() != psutil.STATUS_ZOMBIE else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def wait_until(check: Callable[[], bool], timeout: float, alive: Callable[[], bool], what: str, log_file: Path) -> None:
    """Poll `check` until it holds; fail early with the log's tail if the process died, or on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if not alive():
            raise RuntimeError(f"{what} exited during start-up; last lines of {log_file}:\n{tail(log_file)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s; last lines of {log_file}:\n{tail(log_file)}")
        time.sleep(0.05)


def tail(path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a log file, or `(no log)` if it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (created 0600, never world-readable in between)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
