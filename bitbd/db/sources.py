"""Sources as the API and the console show them: URLs, refresh, last and next crawl, last job, documents, chunks."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from bitbd.durations import format_duration

_SOURCES = """SELECT s.id, s.type, s.config, s.created_at, s.refresh_seconds, s.next_crawl_at,
  (SELECT count(*) FROM documents d WHERE d.tenant_id = s.tenant_id AND d.source_id = s.id) AS documents,
  (SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id
   WHERE d.tenant_id = s.tenant_id AND d.source_id = s.id) AS chunks,
  (SELECT max(j.started_at) FROM jobs j WHERE j.source_id = s.id) AS last_crawl_at,
  last.id AS last_job_id, last.status AS last_job_status, last.finished_at AS last_job_finished_at
FROM sources s LEFT JOIN LATERAL (
  SELECT j.id, j.status, j.finished_at FROM jobs j WHERE j.source_id = s.id ORDER BY j.created_at DESC LIMIT 1
) last ON true
WHERE s.tenant_id = $1 AND ($2::uuid IS NULL OR s.id = $2) ORDER BY s.created_at"""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def source_json(r: asyncpg.Record) -> dict[str, Any]:
    """One source as GET /v1/sources shows it. `next_crawl_at` is when its refresh is due (null: never by
    itself); a crawl already queued or running then is not doubled, the next starts after it."""
    config = json.loads(r["config"])
    return {
        "id": str(r["id"]),
        "type": r["type"],
        "urls": list(config.get("urls", [])),
        **({"files": list(config["files"])[:100]} if "files" in config else {}),
        "refresh": format_duration(r["refresh_seconds"]) if r["refresh_seconds"] else None,
        "refresh_seconds": r["refresh_seconds"],
        "last_crawl_at": _iso(r["last_crawl_at"]),
        "next_crawl_at": _iso(r["next_crawl_at"]) if r["refresh_seconds"] else None,
        "last_job": (
            {
                "id": str(r["last_job_id"]),
                "status": r["last_job_status"],
                "finished_at": _iso(r["last_job_finished_at"]),
            }
            if r["last_job_id"]
            else None
        ),
        "documents": r["documents"],
        "chunks": r["chunks"],
        "created_at": r["created_at"].isoformat(),
    }


async def list_sources(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, source_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """The tenant's sources (or the one of `source_id`), oldest first, as the API shows them."""
    return [source_json(r) for r in await pool.fetch(_SOURCES, tenant_id, source_id)]
