"""POST /v1/uploads bodies: streamed to disk part by part, bounded per file, per request and server-wide, then
copied into PostgreSQL in 1 MiB pieces, so the server never holds a whole file (or upload) in memory."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ParamSpec, TypeVar
from urllib.parse import unquote

import asyncpg
from aiohttp import BodyPartReader, web

from bitbd.errors import InvalidRequest, PayloadTooLarge, Unavailable, UnsupportedMediaType
from bitbd.jobs.records import INSERT_JOB, INSERT_SOURCE
from bitbd.settings import IngestSettings
from bitbd_plugins.sources.upload import ACCEPTED, PIECE_BYTES, content_type_for

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
MAX_FILES = 100
BUDGET_WAIT = 2.0
"""Seconds an upload waits for the server-wide budget to free up before it is refused with 503."""
_READ = 256 * 1024  # bytes asked of the multipart reader at a time
_INSERT_UPLOAD = """INSERT INTO uploads (tenant_id, source_id, filename, content_type, bytes)
VALUES ($1, $2, $3, $4, $5) RETURNING id"""


class UploadsBusy(Unavailable):
    """The server-wide upload budget is in use by other uploads: retry shortly."""

    code = "uploads_busy"


class UploadBudget:
    """Bytes all uploads being received at once may hold (ingest.upload_budget_bytes), shared by every request."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._freed = asyncio.Event()  # set (and replaced) whenever bytes are given back

    async def take(self, n: int) -> None:
        """Hold `n` more bytes, waiting up to BUDGET_WAIT seconds for others to give some back; else UploadsBusy."""
        if n > self.limit:
            raise PayloadTooLarge(f"the upload needs {n} bytes, more than the server's whole upload budget of "
                                  f"{self.limit} bytes (ingest.upload_budget_bytes); send fewer or smaller files")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUDGET_WAIT
        while self.held + n > self.limit:
            freed = self._freed
            try:
                await asyncio.wait_for(freed.wait(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise UploadsBusy(
                    f"the server is receiving other uploads: {self.held} of its {self.limit}-byte upload budget "
                    f"(ingest.upload_budget_bytes) is in use and this upload needs {n} more; retry in a few "
                    "seconds") from None
        self.held += n

    def give(self, n: int) -> None:
        """Synchronous, so that a cancelled request (client gone) still gives its bytes back in its `finally`."""
        self.held -= n
        self._freed.set()
        self._freed = asyncio.Event()


@dataclass
class _Reservation:
    """One request's share of the budget: grown in steps of at least 1 MiB as its bytes arrive."""

    budget: UploadBudget
    held: int = 0

    async def cover(self, total: int) -> None:
        if total > self.held:
            step = max(total - self.held, PIECE_BYTES)
            await self.budget.take(step)
            self.held += step

    def release(self) -> None:
        held, self.held = self.held, 0
        if held:
            self.budget.give(held)


@dataclass
class Spooled:
    """A received file: its safe name, the type it is extracted as, and its bytes in an unnamed temporary file."""

    name: str
    content_type: str
    file: IO[bytes]
    size: int = 0


@dataclass
class _Body:
    limits: IngestSettings
    files: list[Spooled] = field(default_factory=list)
    total: int = 0

    def count(self, n: int, what: str) -> None:
        self.total += n
        if self.total > self.limits.max_request_bytes:
            raise PayloadTooLarge(f"the upload is over the {self.limits.max_request_bytes}-byte request limit "
                                  f"(ingest.max_request_bytes) at {what}; send the files in several requests")


@asynccontextmanager
async def received(request: web.Request, limits: IngestSettings, budget: UploadBudget,
                   spool_dir: Path) -> AsyncIterator[list[Spooled]]:
    """The multipart body read into unnamed temporary files under `spool_dir`, its bytes held in `budget`; on
    exit the files are closed (so deleted) and the bytes given back, whatever happened."""
    declared = request.content_length
    if declared is not None and declared > limits.max_request_bytes:
        raise PayloadTooLarge(f"the upload declares {declared} bytes; one request carries at most "
                              f"{limits.max_request_bytes} bytes (ingest.max_request_bytes): send the files in "
                              "several requests")
    reservation = _Reservation(budget)
    body = _Body(limits)
    try:
        if declared is not None:
            await reservation.cover(declared)  # refused before a byte of the body is read
        await _disk(spool_dir.mkdir, parents=True, exist_ok=True)
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("a multipart part is itself multipart; send each file as its own part")
            if not part.filename:  # a plain form field: read (and counted) but not kept
                while chunk := await part.read_chunk(_READ):
                    body.count(len(chunk), "a form field")
                continue
            await _spool(part, safe_filename(part.filename), body, reservation, spool_dir)
            if len(body.files) > MAX_FILES:
                raise InvalidRequest(f"at most {MAX_FILES} files per upload; send the rest in another request")
        yield body.files
    finally:
        for f in body.files:
            f.file.close()
        reservation.release()


async def _spool(part: BodyPartReader, name: str, body: _Body, reservation: _Reservation, spool_dir: Path) -> None:
    ctype = content_type_for(name, part.headers.get("Content-Type", ""))
    if ctype is None:
        raise UnsupportedMediaType(f"{name}: only {', '.join(sorted(ACCEPTED))} files are ingested")
    limit = body.limits.max_upload_bytes
    spooled = Spooled(name, ctype, await _disk(tempfile.TemporaryFile, dir=spool_dir))
    body.files.append(spooled)
    buf = bytearray()
    while chunk := await part.read_chunk(_READ):
        spooled.size += len(chunk)
        if spooled.size > limit:
            raise PayloadTooLarge(f"{name} is over the {limit}-byte upload limit (ingest.max_upload_bytes)")
        body.count(len(chunk), name)
        await reservation.cover(body.total)
        buf += chunk
        if len(buf) >= PIECE_BYTES:
            await _disk(spooled.file.write, bytes(buf))
            buf.clear()
    if buf:
        await _disk(spooled.file.write, bytes(buf))


async def _disk(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """File I/O off the event loop; a full or failing disk is the server's trouble, said as such (503)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except OSError as e:
        log.warning("upload spool failed", extra={"error": str(e)})
        raise Unavailable(f"the server could not spool the upload to its disk ({e.strerror or e}); "
                          "retry later") from None


async def store(pool: asyncpg.Pool, tenant_id: uuid.UUID, files: list[Spooled]) -> tuple[uuid.UUID, uuid.UUID]:
    """The source, its job and every file (in pieces) in one transaction: all of the upload or none of it."""
    async with pool.acquire() as conn, conn.transaction():
        source_id = await conn.fetchval(INSERT_SOURCE, tenant_id, "upload",
                                        json.dumps({"files": [f.name for f in files]}))
        job_id = await conn.fetchval(INSERT_JOB, tenant_id, source_id, "ingest", "normal", "{}")
        for f in files:
            upload_id = await conn.fetchval(_INSERT_UPLOAD, tenant_id, source_id, f.name, f.content_type, f.size)
            await conn.copy_records_to_table("upload_pieces", columns=["tenant_id", "upload_id", "seq", "data"],
                                             records=_pieces(tenant_id, upload_id, f.file))
    return job_id, source_id


async def _pieces(tenant_id: uuid.UUID, upload_id: uuid.UUID, file: IO[bytes]
                  ) -> AsyncIterator[tuple[uuid.UUID, uuid.UUID, int, bytes]]:
    await _disk(file.seek, 0)
    seq = 0
    while data := await _disk(file.read, PIECE_BYTES):
        yield tenant_id, upload_id, seq, data
        seq += 1


def safe_filename(raw: str) -> str:
    """The last path segment only (after percent-decoding), no control characters: never a path from a client."""
    name = unquote(raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip().lstrip(".")[:200]
    if not name:
        raise InvalidRequest(f"file name {raw!r} is empty once its path is removed")
    return name
