"""POST /v1/uploads bodies: streamed to disk part by part, bounded per file, per request and server-wide, then
copied into PostgreSQL in 1 MiB pieces, so the server never holds a whole file (or upload) in memory."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ParamSpec, TypeVar
from urllib.parse import unquote

import asyncpg
from aiohttp import BodyPartReader, web

from bitbd.errors import InvalidRequest, PayloadTooLarge, Unavailable, UnsupportedMediaType, UploadsBusy
from bitbd.ingest.uploads import ACCEPTED, PIECE_BYTES, content_type_for
from bitbd.jobs.records import INSERT_JOB, INSERT_SOURCE
from bitbd.settings import IngestSettings

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
MAX_FILES = 100
BUDGET_WAIT = 2.0
"""Seconds an upload waits for the server-wide budget to free up before it is refused with 503."""
_READ = 256 * 1024  # bytes asked of the multipart reader at a time
_INSERT_UPLOAD = """INSERT INTO uploads (tenant_id, source_id, filename, content_type, bytes)
VALUES ($1, $2, $3, $4, $5) RETURNING id"""


def tenant_share(budget_bytes: int, max_request_bytes: int) -> int:
    """Bytes of the budget one tenant's uploads may hold at once: half of it, so that one tenant's slow clients
    cannot starve every other tenant, but never less than one request of the largest size allowed."""
    return max(budget_bytes // 2, min(budget_bytes, max_request_bytes))


class UploadBudget:
    """Bytes all uploads being received at once may hold (ingest.upload_budget_bytes), shared by every request;
    one tenant's uploads may hold at most `per_tenant` of them (default: half)."""

    def __init__(self, limit: int, per_tenant: int | None = None) -> None:
        self.limit = limit
        self.per_tenant = min(limit, per_tenant if per_tenant is not None else limit // 2)
        self.held = 0
        self.by_tenant: dict[uuid.UUID, int] = {}
        self._freed = asyncio.Event()  # set (and replaced) whenever bytes are given back

    async def take(self, n: int, tenant: uuid.UUID) -> None:
        """Hold `n` more bytes for `tenant`, waiting up to BUDGET_WAIT seconds for others to give some back; else
        UploadsBusy."""
        if n > self.per_tenant:
            raise PayloadTooLarge(
                f"the upload needs {n} bytes, more than one tenant may hold of the server's upload "
                f"budget ({self.per_tenant} of ingest.upload_budget_bytes = {self.limit}); send "
                "fewer or smaller files"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUDGET_WAIT
        while (busy := self._busy(n, tenant)) is not None:
            freed = self._freed
            try:
                await asyncio.wait_for(freed.wait(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise UploadsBusy(busy, retry_after=5) from None
        self.held += n
        self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + n

    def _busy(self, n: int, tenant: uuid.UUID) -> str | None:
        """Why `n` more bytes for `tenant` do not fit now, or None."""
        mine = self.by_tenant.get(tenant, 0)
        if mine + n > self.per_tenant:
            return (
                f"this tenant's other uploads being received hold {mine} of the {self.per_tenant} bytes one "
                f"tenant may hold at once (half of ingest.upload_budget_bytes, at least ingest.max_request_bytes) "
                f"and this upload needs {n} more; let them finish, or retry in a few seconds"
            )
        if self.held + n > self.limit:
            return (
                f"the server is receiving other uploads: {self.held} of its {self.limit}-byte upload budget "
                f"(ingest.upload_budget_bytes) is in use and this upload needs {n} more; retry in a few seconds"
            )
        return None

    def give(self, n: int, tenant: uuid.UUID) -> None:
        """Synchronous, so that a cancelled request (client gone) still gives its bytes back in its `finally`."""
        self.held -= n
        left = self.by_tenant.get(tenant, 0) - n
        if left > 0:
            self.by_tenant[tenant] = left
        else:
            self.by_tenant.pop(tenant, None)
        self._freed.set()
        self._freed = asyncio.Event()


@dataclass
class _Reservation:
    """One request's share of the budget: grown in steps of at least 1 MiB (as far as the tenant's share allows)
    as its bytes arrive."""

    budget: UploadBudget
    tenant: uuid.UUID
    held: int = 0

    async def cover(self, total: int) -> None:
        if total > self.held:
            step = max(total - self.held, min(PIECE_BYTES, self.budget.per_tenant - self.held))
            await self.budget.take(step, self.tenant)
            self.held += step

    def release(self) -> None:
        held, self.held = self.held, 0
        if held:
            self.budget.give(held, self.tenant)


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
            raise PayloadTooLarge(
                f"the upload is over the {self.limits.max_request_bytes}-byte request limit "
                f"(ingest.max_request_bytes) at {what}; send the files in several requests"
            )


@asynccontextmanager
async def received(
    request: web.Request,
    tenant: uuid.UUID,
    limits: IngestSettings,
    budget: UploadBudget,
    spool_dir: Path,
    deadline: AbstractAsyncContextManager[None],
) -> AsyncIterator[list[Spooled]]:
    """The multipart body read into unnamed temporary files under `spool_dir` (within `deadline`), its bytes
    held in `budget` for `tenant`; on exit the files are closed (so deleted) and the bytes given back, whatever
    happened. What the caller does with the files is not under the body's deadline."""
    declared = request.content_length
    if declared is not None and declared > limits.max_request_bytes:
        raise PayloadTooLarge(
            f"the upload declares {declared} bytes; one request carries at most "
            f"{limits.max_request_bytes} bytes (ingest.max_request_bytes): send the files in "
            "several requests"
        )
    reservation = _Reservation(budget, tenant)
    body = _Body(limits)
    try:
        async with deadline:
            if declared is not None:
                await reservation.cover(declared)  # refused before a byte of the body is read
            await _disk(spool_dir.mkdir, parents=True, exist_ok=True)
            await _read(request, body, reservation, spool_dir)
        yield body.files
    finally:
        for f in body.files:
            f.file.close()
        reservation.release()


async def _read(request: web.Request, body: _Body, reservation: _Reservation, spool_dir: Path) -> None:
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise InvalidRequest("a multipart part is itself multipart; send each file as its own part")
        if not part.filename:  # a plain form field: read (and counted) but not kept
            while chunk := await part.read_chunk(_READ):
                body.count(len(chunk), "a form field")
            continue
        name = safe_filename(part.filename)
        if any(f.name == name for f in body.files):  # one document per name: the second would replace the first
            raise InvalidRequest(
                f"two files named {name!r} in one upload: each file becomes the document upload:{name}; rename "
                "one, or send it in a later upload (which replaces the earlier version)"
            )
        await _spool(part, name, body, reservation, spool_dir)
        if len(body.files) > MAX_FILES:
            raise InvalidRequest(f"at most {MAX_FILES} files per upload; send the rest in another request")


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
        raise Unavailable(
            f"the server could not spool the upload to its disk ({e.strerror or e}); retry later"
        ) from None


async def store(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, source_type: str, files: list[Spooled]
) -> tuple[uuid.UUID, uuid.UUID]:
    """The source (of the type that takes uploads), its job and every file (in pieces) in one transaction: all of
    the upload or none of it."""
    async with pool.acquire() as conn, conn.transaction():
        source_id = await conn.fetchval(
            INSERT_SOURCE, tenant_id, source_type, json.dumps({"files": [f.name for f in files]}), None
        )
        job_id = await conn.fetchval(INSERT_JOB, tenant_id, source_id, "ingest", "normal", "{}")
        for f in files:
            upload_id = await conn.fetchval(_INSERT_UPLOAD, tenant_id, source_id, f.name, f.content_type, f.size)
            await conn.copy_records_to_table(
                "upload_pieces",
                columns=["tenant_id", "upload_id", "seq", "data"],
                records=_pieces(tenant_id, upload_id, f.file),
            )
    return job_id, source_id


async def _pieces(
    tenant_id: uuid.UUID, upload_id: uuid.UUID, file: IO[bytes]
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
