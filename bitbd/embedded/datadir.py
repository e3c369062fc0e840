"""The data dir and its lock: one owning process per data dir, others attach to what it started."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import psutil

from bitbd.embedded.process import write_private
from bitbd.errors import DataDirBusy

LOCK_NAME = "bitbd.lock"
SERVER_NAME = "server.json"
STATE_NAME = "services.json"


class DataDir:
    """A data dir holding embedded PostgreSQL (`postgres/`), Redis (`redis/`), logs and the admin token."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().resolve()
        self._lock_fd: int | None = None

    @property
    def logs(self) -> Path:
        """`<data dir>/logs`, where the embedded servers write their logs."""
        return self.path / "logs"

    def prepare(self) -> None:
        """Create the data dir (0700) and its `logs` directory if they are missing."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)

    def try_lock(self, role: str) -> bool:
        """Take the data dir's exclusive lock without waiting. The kernel drops it if this process dies."""
        self.prepare()
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "role": role}).encode())
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        """Release the lock try_lock() took, emptying the holder's note first; nothing if not held."""
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    def holder(self) -> dict[str, Any]:
        """Who holds the lock, as written by them: {"pid": ..., "role": ...} (empty if unknown)."""
        try:
            data = json.loads((self.path / LOCK_NAME).read_text() or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def busy_error(self) -> DataDirBusy:
        """A DataDirBusy error naming the process that holds the data dir, and what to do instead."""
        who = self.holder()
        by = f"bitbd {who.get('role', '?')} (pid {who.get('pid', '?')})" if who else "another bitbd process"
        return DataDirBusy(
            f"data dir {self.path} is in use by {by}; stop that process first, "
            "or give this one its own data dir with --data-dir"
        )

    def write_state(self, state: dict[str, object]) -> None:
        """Publish the owner's service endpoints (0600: the Redis URL holds its password)."""
        write_private(self.path / STATE_NAME, json.dumps(state))

    def write_server(self, url: str) -> None:
        """Publish where `bitbd serve` listens, for `bitbd ask`/`bitbd search` and the TUI on this machine."""
        # With external PostgreSQL and Redis and the admin token from the environment, nothing else made it yet.
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self.path / SERVER_NAME, json.dumps({"url": url, "pid": os.getpid()}))

    def clear_server(self) -> None:
        """Withdraw what write_server() published: the server stopped cleanly."""
        path = self.path / SERVER_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("pid") == os.getpid():  # never another server's file
            path.unlink(missing_ok=True)

    def server_url(self) -> str | None:
        """The URL of the `bitbd serve` that holds this data dir now, if one does; a file left by a server that
        died (its PID gone, or the lock no longer its) is treated as absent."""
        try:
            data = json.loads((self.path / SERVER_NAME).read_text())
        except (OSError, ValueError):
            return None
        holder = self.holder()
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("pid"), int)
            or holder.get("pid") != data["pid"]
            or holder.get("role") != "serve"
            or not psutil.pid_exists(data["pid"])
        ):
            return None
        return str(data["url"])

    def clear_state(self) -> None:
        """Withdraw what write_state() published: the owner is stopping its services."""
        (self.path / STATE_NAME).unlink(missing_ok=True)

    def read_state(self, timeout: float = 15.0) -> dict[str, str]:
        """The running owner's endpoints; waits while the owner is still starting its services."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = json.loads((self.path / STATE_NAME).read_text())
                if isinstance(data, dict) and data.get("owner_pid") == self.holder().get("pid"):
                    return {str(k): str(v) for k, v in data.items()}
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise self.busy_error()
            time.sleep(0.1)
