"""Resolve where PostgreSQL and Redis are: configured, embedded and started here, or attached to our owner's."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator

from pydantic import SecretStr

from bitbd.embedded.datadir import DataDir
from bitbd.embedded.postgres import EmbeddedPostgres
from bitbd.embedded.redis import EmbeddedRedis
from bitbd.settings import Settings

log = logging.getLogger(__name__)


@contextlib.contextmanager
def services(settings: Settings, role: str, *, redis: bool = True, exclusive: bool = False) -> Iterator[Settings]:
    """Yield settings whose DSN and Redis URL point at running servers.

    Nothing is started for what the settings name. Otherwise the first process on the data dir owns it and
    starts embedded servers, stopped on exit; later ones attach to the owner's, unless `exclusive` (a second
    `bitbd serve`), in which case they fail at once with `DataDirBusy`.
    """
    want_pg = settings.embedded_postgres
    want_redis = redis and settings.embedded_redis
    if not (want_pg or want_redis):
        yield settings
        return
    data_dir = DataDir(settings.data_dir)
    if not data_dir.try_lock(role):
        if exclusive:
            raise data_dir.busy_error()
        theirs = data_dir.read_state()
        if (want_pg and "database_dsn" not in theirs) or (want_redis and "redis_url" not in theirs):
            raise data_dir.busy_error()
        yield _with_endpoints(
            settings, theirs.get("database_dsn") if want_pg else None, theirs.get("redis_url") if want_redis else None
        )
        return
    pg = EmbeddedPostgres(data_dir.path, data_dir.logs / "postgres.log") if want_pg else None
    rd = EmbeddedRedis(data_dir.path, data_dir.logs / "redis.log") if want_redis else None
    try:
        state: dict[str, object] = {"owner_pid": os.getpid()}
        started = time.monotonic()
        if pg is not None:
            pg.start()
            state["database_dsn"] = pg.dsn
        if rd is not None:
            rd.start()
            state["redis_url"] = rd.url
        data_dir.write_state(state)
        log.debug("embedded services started", extra={"seconds": round(time.monotonic() - started, 2)})
        yield _with_endpoints(settings, pg.dsn if pg else None, rd.url if rd else None)
    finally:
        data_dir.clear_state()
        # Redis first: nothing in PostgreSQL depends on it, and workers stop taking jobs.
        if rd is not None:
            rd.stop()
        if pg is not None:
            pg.stop()
        data_dir.unlock()


def _with_endpoints(settings: Settings, dsn: str | None, redis_url: str | None) -> Settings:
    database = settings.database.model_copy(update={"dsn": SecretStr(dsn)}) if dsn else settings.database
    redis = settings.redis.model_copy(update={"url": SecretStr(redis_url)}) if redis_url else settings.redis
    return settings.model_copy(update={"database": database, "redis": redis})
