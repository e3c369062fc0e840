"""Connections: migrate on a plain connection, then open the pool with the pgvector codec."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from pgvector.asyncpg import register_vector

from bitbd.db.migrate import migrate
from bitbd.errors import Unavailable
from bitbd.settings import DatabaseSettings

log = logging.getLogger(__name__)


async def connect(db: DatabaseSettings) -> asyncpg.Connection:
    """One plain connection; an unreachable server is `Unavailable`, with the reason but not the DSN."""
    try:
        return await asyncpg.connect(
            db.dsn.get_secret_value(), timeout=db.connect_timeout, command_timeout=db.command_timeout
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        raise Unavailable(
            f"cannot connect to PostgreSQL: {type(e).__name__}: {e}; "
            "check database.dsn (BITBD_DATABASE__DSN) and that the server is up"
        ) from None


async def migrate_database(db: DatabaseSettings) -> int:
    """Bring the schema up to date; returns the number of migrations applied."""
    conn = await connect(db)
    try:
        return len(await migrate(conn))
    finally:
        await conn.close()


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg ships no types
    """A pool connection returned without asyncpg's reset query (`SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`): one more round trip and statement per acquire, which was a tenth of the server's time
    per chat answer (py-spy, perf/RESULTS.md). asyncpg still rolls back a transaction left open and drops the
    connection's listeners. So code holding a pool connection keeps no session state: settings with `SET LOCAL`
    in a transaction (or set again before each use), advisory locks released in `finally` (or
    `pg_advisory_xact_lock`), LISTEN on a connection of its own."""

    def get_reset_query(self) -> str:
        return ""


async def open_pool(db: DatabaseSettings) -> asyncpg.Pool:
    """The shared pool; `0001` created the vector type, so each connection can register its codec."""
    try:
        pool = await asyncpg.create_pool(
            db.dsn.get_secret_value(),
            min_size=db.pool_min,
            max_size=db.pool_max,
            timeout=db.connect_timeout,
            command_timeout=db.command_timeout,
            init=register_vector,
            connection_class=PooledConnection,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        raise Unavailable(f"cannot open a PostgreSQL pool: {type(e).__name__}: {e}") from None
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def migrated_pool(db: DatabaseSettings, pool_max: int) -> AsyncIterator[asyncpg.Pool]:
    """For a command: the schema brought up to date, then a small pool, closed afterwards."""
    await migrate_database(db)
    pool = await open_pool(db.model_copy(update={"pool_min": 1, "pool_max": pool_max}))
    try:
        yield pool
    finally:
        await pool.close()
