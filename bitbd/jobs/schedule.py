"""Scheduled re-crawls: a source with a refresh is crawled again at its last crawl's start plus the refresh.

The due crawl is started by exactly one process however many servers and workers share the database: the upkeep
loop of each claims due sources with one statement that locks them (``FOR UPDATE SKIP LOCKED``), moves their
``next_crawl_at`` on and inserts their jobs, so a second process finds nothing due. A source with a crawl queued or
running is not due; when that crawl starts it sets ``next_crawl_at`` from its own start. After downtime a source is
crawled once, not once per missed interval.
"""

from __future__ import annotations

import logging
import uuid

import asyncpg

from bitbd.durations import format_duration, parse_duration
from bitbd.errors import InvalidRequest
from bitbd.settings import Settings

log = logging.getLogger(__name__)
CLAIM_LIMIT = 100  # sources started per upkeep tick at most; more wait for the next second

# Claims and starts due crawls in one statement: the lock makes a concurrent claim skip the rows, and a claim that
# reaches a row after another committed re-checks it (PostgreSQL re-evaluates a locked row's WHERE), finding it no
# longer due.
CLAIM_DUE = f"""WITH due AS (
    SELECT s.id FROM sources s
    WHERE s.refresh_seconds IS NOT NULL AND s.next_crawl_at <= now()
    AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.source_id = s.id AND j.status IN ('queued', 'running'))
    ORDER BY s.next_crawl_at LIMIT {CLAIM_LIMIT} FOR UPDATE OF s SKIP LOCKED
), claimed AS (
    UPDATE sources s SET next_crawl_at = now() + make_interval(secs => s.refresh_seconds)
    FROM due WHERE s.id = due.id RETURNING s.id, s.tenant_id
)
INSERT INTO jobs (tenant_id, source_id, kind, priority, params)
SELECT tenant_id, id, 'ingest', 'normal', '{{"scheduled": true}}' FROM claimed RETURNING id"""
# When a crawl of a source with a refresh starts (scheduled or not), its next one is due a refresh after.
NEXT_FROM_START = """UPDATE sources s SET next_crawl_at = j.started_at + make_interval(secs => s.refresh_seconds)
FROM jobs j WHERE j.id = $1 AND s.id = j.source_id AND s.refresh_seconds IS NOT NULL AND j.started_at IS NOT NULL"""
# A new refresh counts from the last crawl's start (now, if it never started one).
SET_REFRESH = """UPDATE sources s SET refresh_seconds = $3::integer, updated_at = now(),
next_crawl_at = CASE WHEN $3::integer IS NULL THEN NULL ELSE coalesce(
    (SELECT max(j.started_at) FROM jobs j WHERE j.source_id = s.id), now()) + make_interval(secs => $3::integer) END
WHERE s.tenant_id = $1 AND s.id = $2 RETURNING s.id"""


def refresh_seconds(value: object, settings: Settings, field: str = "refresh") -> int | None:
    """A source's `refresh` as given in a request (`"6h"`, or None for never) in seconds; raises InvalidRequest
    for what is not a duration or is shorter than `crawler.min_refresh`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f'{field} must be a duration such as "6h" (s, m, h, d), or null for never')
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise InvalidRequest(f"{field}: {e}") from None
    least = settings.crawler.min_refresh
    if seconds < least:
        raise InvalidRequest(
            f"{field} {value!r} is shorter than the server's least, {format_duration(least)} (crawler.min_refresh; "
            f"BITBD_CRAWLER__MIN_REFRESH where the server runs)"
        )
    return seconds


async def set_refresh(pool: asyncpg.Pool, tenant_id: uuid.UUID, source_id: uuid.UUID, seconds: int | None) -> bool:
    """Give the tenant's source a refresh (None: never again by itself); False if it has no such source."""
    return await pool.fetchval(SET_REFRESH, tenant_id, source_id, seconds) is not None


async def claim_due(pool: asyncpg.Pool) -> list[uuid.UUID]:
    """Create the jobs of the crawls due now (priority normal) and return their ids, for the caller to queue.
    Safe to run in every process at once: each due crawl is claimed once."""
    rows = await pool.fetch(CLAIM_DUE)
    if rows:
        log.info("scheduled re-crawls started", extra={"jobs": len(rows)})
    return [row["id"] for row in rows]
