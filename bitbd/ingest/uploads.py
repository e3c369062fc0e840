"""What POST /v1/uploads keeps of a file and how a source reads it back: the accepted types, the pieces."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass

import asyncpg

from bitbd.interfaces import SourceError

ACCEPTED = {
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".text": "text/plain",
    ".pdf": "application/pdf",
}
"""The file names, and the types they are extracted as, that uploads accept."""
PIECE_BYTES = 1 << 20
"""Uploads are stored in pieces of this size (sql/0009_upload_pieces.sql)."""

_UPLOADS = "SELECT id::text FROM uploads WHERE tenant_id = $1 AND source_id = $2 ORDER BY created_at, filename"
_UPLOAD = """SELECT id, filename, content_type, data, bytes FROM uploads
WHERE tenant_id = $1 AND source_id = $2 AND id::text = $3"""
_PIECES = "SELECT data FROM upload_pieces WHERE tenant_id = $1 AND upload_id = $2 ORDER BY seq"


@dataclass(frozen=True)
class Upload:
    """One uploaded file, whole."""

    filename: str
    content_type: str
    data: bytes


def content_type_for(filename: str, declared: str) -> str | None:
    """The type to extract with: the declared one if we index it, else the one the file name says."""
    declared = declared.split(";")[0].strip().lower()
    if declared in ACCEPTED.values():
        return declared
    return ACCEPTED.get("." + filename.rsplit(".", 1)[-1].lower()) if "." in filename else None


async def upload_ids(pool: asyncpg.Pool, tenant_id: uuid.UUID, source_id: uuid.UUID) -> list[str]:
    """The ids of a source's uploaded files, in the order they were sent."""
    return [r["id"] for r in await pool.fetch(_UPLOADS, tenant_id, source_id)]


async def read_upload(pool: asyncpg.Pool, tenant_id: uuid.UUID, source_id: uuid.UUID, upload_id: str) -> Upload | None:
    """An uploaded file of the source, or None if it is gone (its source was deleted).

    The bytes are read from their pieces through a temporary file: one copy in memory, never the pieces and the
    whole at once. Works on any worker machine: the pieces are in PostgreSQL, not on the disk of the server that
    received them."""
    row = await pool.fetchrow(_UPLOAD, tenant_id, source_id, upload_id)
    if row is None:
        return None
    if row["data"] is not None:  # stored whole by `bitbd ingest FILE`
        return Upload(row["filename"], row["content_type"], row["data"])
    with tempfile.TemporaryFile() as spool:
        async with pool.acquire() as conn, conn.transaction():
            async for piece in conn.cursor(_PIECES, tenant_id, row["id"], prefetch=4):
                await asyncio.to_thread(spool.write, piece["data"])
        size = spool.tell()
        if size != row["bytes"]:
            raise SourceError(f"{row['filename']}: only {size} of its {row['bytes']} bytes are stored; upload it again")
        spool.seek(0)
        data: bytes = await asyncio.to_thread(spool.read)
    return Upload(row["filename"], row["content_type"], data)
