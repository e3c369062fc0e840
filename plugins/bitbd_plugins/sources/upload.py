"""The `upload` source: files sent to POST /v1/uploads (HTML, Markdown, plain text, PDF)."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from typing import Any

from bitbd.hookspecs import hookimpl
from bitbd.ingest.extract import ExtractError
from bitbd.ingest.offload import extract_off_loop
from bitbd.interfaces import Fetched, Previous, Source, SourceError

ACCEPTED = {
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".text": "text/plain",
    ".pdf": "application/pdf",
}
_UPLOADS = "SELECT id::text FROM uploads WHERE tenant_id = $1 AND source_id = $2 ORDER BY created_at, filename"
_UPLOAD = """SELECT id, filename, content_type, data, bytes FROM uploads
WHERE tenant_id = $1 AND source_id = $2 AND id::text = $3"""
_PIECES = "SELECT data FROM upload_pieces WHERE tenant_id = $1 AND upload_id = $2 ORDER BY seq"
PIECE_BYTES = 1 << 20
"""Uploads are stored in pieces of this size (sql/0009_upload_pieces.sql)."""


def content_type_for(filename: str, declared: str) -> str | None:
    """The type to extract with: the declared one if we index it, else the one the file name says."""
    declared = declared.split(";")[0].strip().lower()
    if declared in ACCEPTED.values():
        return declared
    return ACCEPTED.get("." + filename.rsplit(".", 1)[-1].lower()) if "." in filename else None


async def stored_bytes(pool: Any, tenant_id: uuid.UUID, row: Any) -> bytes:
    """An upload's bytes from its pieces, through a temporary file: one copy in memory, never the pieces and the
    whole at once. `row` has the upload's id, filename and bytes (size) and belongs to `tenant_id`. Works on any
    worker machine: the pieces are in PostgreSQL, not on the disk of the server that received them."""
    with tempfile.TemporaryFile() as spool:
        async with pool.acquire() as conn, conn.transaction():
            async for piece in conn.cursor(_PIECES, tenant_id, row["id"], prefetch=4):
                await asyncio.to_thread(spool.write, piece["data"])
        size = spool.tell()
        if size != row["bytes"]:
            raise SourceError(f"{row['filename']}: only {size} of its {row['bytes']} bytes are stored; upload it again")
        spool.seek(0)
        data: bytes = await asyncio.to_thread(spool.read)
        return data


class UploadSource(Source):
    type = "upload"

    async def seeds(self) -> list[str]:
        rows = await self.ctx.pool.fetch(_UPLOADS, self.ctx.tenant_id, self.ctx.source_id)
        return [f"upload:{r['id']}" for r in rows]

    async def fetch(self, item: str, previous: Previous | None) -> Fetched:
        row = await self.ctx.pool.fetchrow(
            _UPLOAD, self.ctx.tenant_id, self.ctx.source_id, item.removeprefix("upload:")
        )
        if row is None:
            raise SourceError("the uploaded file is gone (its source was deleted)")
        name, ctype = row["filename"], row["content_type"]
        data = row["data"] if row["data"] is not None else await stored_bytes(self.ctx.pool, self.ctx.tenant_id, row)
        try:
            # In a child process with a time limit, as for web pages: parsers hold the GIL (bitbd/ingest/offload.py).
            doc = await extract_off_loop(data, ctype, f"upload:{name}", None, name)
        except ExtractError as e:
            raise SourceError(f"{name}: {e}") from None
        return Fetched(
            url=f"upload:{name}",
            title=doc.title,
            text=doc.text,
            content_type=ctype,
            content_hash=hashlib.sha256(doc.text.encode()).hexdigest(),
        )


@hookimpl
def register_sources() -> list[type[Source]]:
    return [UploadSource]
