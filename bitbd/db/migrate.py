"""Plain-SQL migrations from `sql/`, applied in order, each in its own transaction, under an advisory lock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

# Any constant works as long as every bitbd process uses the same one.
LOCK_ID = 0x6269_7462_6400
NO_TRANSACTION = "-- bitbd: no-transaction"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One `NNNN_name.sql` file: its number, name and SQL."""

    version: int
    name: str
    sql: str

    @property
    def transactional(self) -> bool:
        """False for a file that starts with `-- bitbd: no-transaction`: it runs outside a transaction."""
        return not self.sql.startswith(NO_TRANSACTION)


def sql_dir() -> Traversable | Path:
    """`bitbd/_sql` in an installed wheel; the checkout's `sql/` in an editable install."""
    packaged = files("bitbd") / "_sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


def load_migrations() -> list[Migration]:
    """Every migration file, in order of number; RuntimeError if two share a number."""
    found = []
    for entry in sql_dir().iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {sorted(versions)}")
    return found


def latest_version() -> int:
    """The number of the newest migration this bitbd ships (0 if none)."""
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


async def current_version(conn: asyncpg.Connection) -> int:
    """The database's schema version: the newest migration applied, 0 for a fresh database."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every pending migration; safe to run from several processes at once. Returns what was applied."""
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_version (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = await current_version(conn)
        for m in load_migrations():
            if m.version <= done:
                continue
            if m.transactional:
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await _record(conn, m)
            else:
                await conn.execute(m.sql)
                await _record(conn, m)
            log.debug("migration applied", extra={"version": m.version, "migration": m.name})
            applied.append(m)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    return applied


async def _record(conn: asyncpg.Connection, m: Migration) -> None:
    await conn.execute("INSERT INTO schema_version (version, name) VALUES ($1, $2)", m.version, m.name)
