"""Embedded services: nothing starts when real ones are named; left-over servers are cleaned up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil
import pytest
from pydantic import SecretStr

from bitbd.embedded.datadir import DataDir
from bitbd.embedded.postgres import EmbeddedPostgres, bin_dir
from bitbd.embedded.process import live_pid_from_file
from bitbd.embedded.services import services
from bitbd.errors import DataDirBusy
from bitbd.settings import DatabaseSettings, RedisSettings, Settings


def test_nothing_embedded_starts_when_dsn_and_url_are_set(tmp_path: Path) -> None:
    configured = Settings(
        data_dir=tmp_path / "data",
        database=DatabaseSettings(dsn=SecretStr("postgresql://db.example/x")),
        redis=RedisSettings(url=SecretStr("redis://cache.example:6379/0")),
    )
    with services(configured, "serve", exclusive=True) as running:
        assert running is configured
    assert not (tmp_path / "data").exists()


def test_a_postmaster_left_running_is_stopped_and_replaced(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with services(settings, "test", redis=False):
        pass  # initialised, then stopped
    pg = EmbeddedPostgres(DataDir(tmp_path).path, tmp_path / "pg.log")
    # A postmaster that is not our child, as an older tool or a crashed process would leave it.
    pg._prepare_socket_dir()
    subprocess.run(
        [
            str(bin_dir() / "pg_ctl"),
            "-D",
            str(pg.pgdata),
            "-w",
            "-l",
            str(pg.pgdata / "stray.log"),
            "-o",
            f"-k {pg.socket_dir} -c listen_addresses=",
            "start",
        ],
        check=True,
        capture_output=True,
        user=pg._user,
        group=pg._group(),
    )
    stray = live_pid_from_file(pg.pgdata / "postmaster.pid", "postgres")
    assert stray is not None
    with services(settings, "test", redis=False) as running:
        assert not psutil.pid_exists(stray) or psutil.Process(stray).status() == psutil.STATUS_ZOMBIE
        mine = live_pid_from_file(pg.pgdata / "postmaster.pid", "postgres")
        assert mine is not None and mine != stray
        assert running.database.dsn.get_secret_value().startswith("postgresql://postgres@/bitbd?host=")


def test_exclusive_owner_refuses_and_attachers_share(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with services(settings, "serve", redis=False) as owner:
        with (
            pytest.raises(DataDirBusy, match=r"in use by bitbd serve \(pid \d+\)"),
            services(settings, "serve", redis=False, exclusive=True),
        ):
            pass
        with services(settings, "cli", redis=False) as attached:
            assert attached.database.dsn == owner.database.dsn
        with pytest.raises(DataDirBusy), services(settings, "cli"):  # the owner started no Redis to share
            pass
