"""Ingestion, one small idempotent step at a time: start a job, ingest one item, finish the job."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bitbd.context import SourceContext
from bitbd.db.chunks import replace_chunks
from bitbd.ingest.chunking import embedding_text, summary, to_chunks
from bitbd.interfaces import Chunk, Fetched, Previous, Source, SourceError
from bitbd.jobs.finish import finish_if_done, finish_job
from bitbd.jobs.records import HOLD_STORES, SET_RUNNING
from bitbd.jobs.runtime import WorkerDeps
from bitbd.jobs.schedule import NEXT_FROM_START
from bitbd.metrics import METRICS
from bitbd.prepared import prepare_chunks
from bitbd.tracing import Span

log = logging.getLogger(__name__)
START_TASK = "bitbd.start_job"
ITEM_TASK = "bitbd.ingest_item"
_EMBED_BATCH = 32

_JOB = """SELECT j.id, j.tenant_id, j.source_id, j.status, j.priority, j.progress, s.type, s.config
FROM jobs j JOIN sources s ON s.id = j.source_id WHERE j.id = $1"""
_ITEM = "SELECT id, tenant_id, job_id, item, depth, status, attempts, modified_at FROM job_items WHERE id = $1"
# A start that runs again (redelivered, or re-queued after a lost message) counts as another attempt.
_COUNT_ATTEMPT = "UPDATE jobs SET attempts = attempts + 1 WHERE id = $1"
_ADD_ITEMS = """INSERT INTO job_items (tenant_id, job_id, item, depth, modified_at)
SELECT $1, $2, u.item, $4, u.modified FROM unnest($3::text[], $5::timestamptz[]) AS u(item, modified)
ON CONFLICT (job_id, item) DO NOTHING RETURNING id"""
# The frontier's size, in pages that count against max_pages (link pages do not) and in all pages.
_ITEM_COUNT = "SELECT count(*) FILTER (WHERE NOT link_page), count(*) FROM job_items WHERE job_id = $1"
_KNOWN_ITEMS = "SELECT item FROM job_items WHERE job_id = $1 AND item = ANY($2::text[])"
# Flagged before its links join the frontier (its place in max_pages goes to them), but marked skipped only after:
# until then the job has an open item, so no one (the job's start task, finishing after it queued this page) can
# find the job with nothing left to do and end it while this page's links are still to come.
_LINK_PAGE = "UPDATE job_items SET link_page = true, updated_at = now() WHERE id = $1"
# A cancel marks queued and running items at once; what their workers find out later never undoes it.
# A page stored before the cancel committed (the store lock orders them) is still recorded as stored.
_MARK = """UPDATE job_items SET status = $2, error = $3, chunks = $4, document_id = $5, updated_at = now()
WHERE id = $1 AND (status <> 'cancelled' OR $2::text IN ('done', 'unchanged'))"""
_START_ITEM = """UPDATE job_items SET status = 'running', attempts = attempts + 1, updated_at = now()
WHERE id = $1 AND status IN ('queued', 'running') RETURNING attempts"""
_REQUEUE = """UPDATE job_items SET status = 'queued', error = $2, updated_at = now()
WHERE id = $1 AND status <> 'cancelled'"""
_PREVIOUS = """SELECT id, etag, last_modified, content_hash, links, embedding_model, fetched_at FROM documents
WHERE tenant_id = $1 AND url = $2"""
_UPSERT_DOC = """INSERT INTO documents (tenant_id, source_id, url, title, content_type, bytes, fetched_at, last_job_id)
VALUES ($1, $2, $3, $4, $5, $6, $8, $7)
ON CONFLICT (tenant_id, url) DO UPDATE SET source_id = excluded.source_id, title = excluded.title,
  content_type = excluded.content_type, bytes = excluded.bytes, fetched_at = $8, updated_at = now(),
  last_job_id = excluded.last_job_id
RETURNING id"""
# Written only after the chunks are in: a crash in between leaves a stale hash, so the next crawl redoes it.
_DOC_DONE = """UPDATE documents SET content_hash = $3, etag = $4, last_modified = $5, links = $6, embedding_model = $7,
updated_at = now() WHERE tenant_id = $1 AND id = $2"""
# fetched_at is when the request that found the page went out (a sitemap's lastmod is compared with it); a page
# not requested at all keeps its own. The page belongs to the source that saw it last, as a stored page does.
_TOUCH_DOC = """UPDATE documents SET last_job_id = $3, fetched_at = coalesce($4, fetched_at), source_id = $5
WHERE tenant_id = $1 AND id = $2"""
_EXISTING = """SELECT c.content_hash, c.embedding, c.prepared FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.tenant_id = $1 AND c.document_id = $2 AND c.embedding IS NOT NULL AND d.embedding_model = $3"""
# Another URL of this crawl already gave exactly this text (/ and /index.html, ?ref= links): index it once.
_TWIN = """SELECT url FROM documents WHERE tenant_id = $1 AND source_id = $2 AND last_job_id = $3
AND content_hash = $4 AND url <> $5 LIMIT 1"""
# A job still to be worked on. Every step that fetches, embeds or writes checks it first. The writes themselves
# (document, chunks, touch of an unchanged page, new frontier items) happen in ONE transaction on ONE connection that
# first takes the job's store lock shared and then checks this again; a cancel takes the same lock exclusively
# (records.STOP_STORES) before its UPDATE, so it waits for the stores in progress, stores that come later queue behind
# it (PostgreSQL's lock queue is fair: unlike a FOR SHARE row lock, new shared holders cannot starve it) and then see
# the job cancelled. Nothing is written after a cancel has committed, and a task never holds two connections.
_LIVE = "SELECT 1 FROM jobs WHERE id = $1 AND status IN ('queued', 'running')"
_DOC_ID = "SELECT id FROM documents WHERE tenant_id = $1 AND url = $2"


class Duplicate(Exception):
    """The item's content is already indexed under another URL of the same crawl."""


class LinkPage(Exception):
    """The item is a link page: its links followed, nothing to store; marked skipped with this reason."""


class JobEnded(Exception):
    """The job was cancelled (or deleted) while this item was being worked on: stop, write nothing."""


async def check_live(deps: WorkerDeps, job_id: uuid.UUID) -> None:
    """Stop here if the job is no longer queued or running (one primary-key lookup)."""
    if await deps.pool.fetchval(_LIVE, job_id) is None:
        raise JobEnded(f"job {job_id} was cancelled")


@asynccontextmanager
async def storing(pool: asyncpg.Pool, job_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction in which the job is live and stays live until commit: write through it."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(HOLD_STORES, job_id)
        # A statement of its own: under READ COMMITTED it sees a cancel that committed while we waited for the lock.
        if await conn.fetchval(_LIVE, job_id) is None:
            raise JobEnded(f"job {job_id} was cancelled")
        yield conn


def source_for(deps: WorkerDeps, job: asyncpg.Record) -> Source:
    """The job's source, built for this run with its configuration and its ``[plugins.<type>]`` table."""
    cls = deps.sources.get(job["type"])
    if cls is None:
        raise SourceError(f"source type {job['type']!r} is not installed on this worker")
    ctx = SourceContext(
        job["type"],
        config=deps.settings.plugins.plugin_table(job["type"]),
        settings=deps.settings,
        pool=deps.pool,
        fetcher=deps.fetcher,
        tenant_id=job["tenant_id"],
        source_id=job["source_id"],
        source=json.loads(job["config"]),
    )
    return cls(ctx)


async def start_job(deps: WorkerDeps, job_id: uuid.UUID) -> None:
    """The job's first step (task `bitbd.start_job`): mark it running, ask its source for the seeds and queue one
    item each. Idempotent: a redelivered start adds no item twice, and a cancelled or deleted job is left alone."""
    job = await deps.pool.fetchrow(_JOB, job_id)
    if job is None or job["status"] not in ("queued", "running"):
        return  # deleted or cancelled meanwhile; a redelivered start of a running job re-adds nothing new
    await deps.pool.execute(SET_RUNNING, job_id)
    await deps.pool.execute(NEXT_FROM_START, job_id)
    await deps.pool.execute(_COUNT_ATTEMPT, job_id)
    try:
        source = source_for(deps, job)
        seeds = await source.seeds()
        modified = {seed: source.last_modified(seed) for seed in seeds}
    except SourceError as e:
        await finish_job(deps, job_id, "failed", str(e))
        return
    await add_items(deps, job, source, seeds, depth=0, modified=modified)
    await finish_if_done(deps, job_id)


async def add_items(
    deps: WorkerDeps,
    job: asyncpg.Record,
    source: Source,
    items: list[str],
    depth: int,
    modified: dict[str, datetime | None] | None = None,
) -> int:
    """Add new items to the frontier (at most max_pages in all), with when the source says they last changed,
    and queue them; returns how many were added."""
    try:
        async with storing(deps.pool, job["id"]) as conn:
            # One writer per job at a time, so concurrent pages cannot push the frontier past max_pages.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", str(job["id"]))
            counted, everything = await conn.fetchrow(_ITEM_COUNT, job["id"])
            # Link pages have a budget of their own, as large: a site of generated indexes still ends.
            room = min(source.max_pages - counted, 2 * source.max_pages - everything)
            # Only new items take room: an index page's links are mostly pages the crawl has already.
            known = {r["item"] for r in await conn.fetch(_KNOWN_ITEMS, job["id"], list(dict.fromkeys(items)))}
            unique = [item for item in dict.fromkeys(items) if item not in known]
            if len(unique) > room:
                await conn.execute(
                    "UPDATE jobs SET progress = progress || '{\"truncated\": true}' WHERE id = $1", job["id"]
                )
            added = unique[: max(room, 0)]
            stamps = [(modified or {}).get(item) for item in added]
            rows = await conn.fetch(_ADD_ITEMS, job["tenant_id"], job["id"], added, depth, stamps)
    except JobEnded:
        return 0  # cancelled meanwhile: its frontier grows no more
    for row in rows:
        await deps.enqueue(ITEM_TASK, [row["id"]], job["priority"])
    return len(rows)


async def ingest_item(deps: WorkerDeps, item_id: int) -> None:
    """One item of a job (task `bitbd.ingest_item`): fetch, extract, chunk, embed and store it, queue the links it
    found, record its outcome, and end the job if it was the last. A done item or an ended job is left alone."""
    item = await deps.pool.fetchrow(_ITEM, item_id)
    if item is None or item["status"] not in ("queued", "running"):
        return  # done already: a redelivered message repeats nothing
    job = await deps.pool.fetchrow(_JOB, item["job_id"])
    if job is None or job["status"] not in ("queued", "running"):
        return
    attempts = await deps.pool.fetchval(_START_ITEM, item_id)
    if attempts is None:
        return
    with deps.tracer.span(
        "page", trace_seed=str(job["id"]), input=item["item"], metadata={"job": str(job["id"]), "attempt": attempts}
    ) as span:
        await _ingest_traced(deps, job, item, attempts, span)
    await finish_if_done(deps, job["id"])


async def _ingest_traced(
    deps: WorkerDeps, job: asyncpg.Record, item: asyncpg.Record, attempts: int, span: Span
) -> None:
    item_id = item["id"]
    try:
        source = source_for(deps, job)
        outcome = await _ingest(deps, job, item, source)
    except Duplicate as e:
        await deps.pool.execute(_MARK, item_id, "skipped", str(e), 0, None)
    except LinkPage as e:
        await deps.pool.execute(_MARK, item_id, "skipped", str(e), 0, None)
    except JobEnded:
        await deps.pool.execute(_MARK, item_id, "cancelled", None, 0, None)
        span.update(status_message="job cancelled")
    except SourceError as e:
        if e.transient and attempts < deps.settings.jobs.retry_attempts:
            delay = deps.settings.jobs.retry_backoff * 2 ** (attempts - 1)
            await deps.pool.execute(_REQUEUE, item_id, f"{e} (attempt {attempts}, retrying in {delay:.0f}s)")
            await deps.delayed.add(ITEM_TASK, [item_id], job["priority"], delay)
            span.update(level="WARNING", status_message=f"{e}; retrying in {delay:.0f}s")
            return
        suffix = f" (after {attempts} attempts)" if e.transient else ""
        await deps.pool.execute(_MARK, item_id, "failed", f"{e}{suffix}", 0, None)
        span.update(level="ERROR", status_message=f"{e}{suffix}")
    else:
        status, chunks, document_id = outcome
        await deps.pool.execute(_MARK, item_id, status, None, chunks, document_id)
        span.update(output={"status": status, "chunks": chunks})


async def _ingest(
    deps: WorkerDeps, job: asyncpg.Record, item: asyncpg.Record, source: Source
) -> tuple[str, int, uuid.UUID | None]:
    tenant = job["tenant_id"]
    prev_row = await deps.pool.fetchrow(_PREVIOUS, tenant, item["item"])
    if prev_row is not None and prev_row["embedding_model"] != deps.embedder.model_name:
        prev_row = None  # embedded by another model: fetch in full and embed again
    previous = (
        Previous(prev_row["etag"], prev_row["last_modified"], prev_row["content_hash"], list(prev_row["links"] or []))
        if prev_row
        else None
    )
    await check_live(deps, job["id"])
    requested: datetime | None = None
    if prev_row is not None and _unchanged_since(item["modified_at"], prev_row):
        fetched = Fetched(url=item["item"], unchanged=True)  # the source says so: not even a conditional request
    else:
        requested = datetime.now(UTC)
        with phase(deps, "fetch", input=item["item"]) as span:
            fetched = await source.fetch(item["item"], previous)
            span.update(output={"url": fetched.url, "unchanged": fetched.unchanged, "bytes": len(fetched.text)})
    links = prev_row["links"] if fetched.unchanged and prev_row else fetched.links
    if fetched.listing:  # its place in max_pages goes to a page it leads to
        await deps.pool.execute(_LINK_PAGE, item["id"])
    if links and item["depth"] < source.max_depth:
        await add_items(deps, job, source, [u for u in links if source.follow(u)], item["depth"] + 1)
    if fetched.listing:
        share = deps.settings.crawler.link_page_share
        raise LinkPage(
            f"a link page (at least {share:.0%} of its text is links): "
            "its links are followed, the page is not indexed (crawler.index_link_pages)"
        )
    # Indexed already with this text and this model (under the item's URL, or its final URL after a redirect or
    # a canonical link): the page costs a request and nothing else.
    current = prev_row if fetched.url == item["item"] else await deps.pool.fetchrow(_PREVIOUS, tenant, fetched.url)
    if (
        current is not None
        and current["embedding_model"] == deps.embedder.model_name
        and (fetched.unchanged or current["content_hash"] == fetched.content_hash)
    ):
        async with storing(deps.pool, job["id"]) as conn:
            await conn.execute(_TOUCH_DOC, tenant, current["id"], job["id"], requested, job["source_id"])
        return "unchanged", 0, current["id"]
    twin = await deps.pool.fetchval(_TWIN, tenant, job["source_id"], job["id"], fetched.content_hash, fetched.url)
    if twin is not None:
        raise Duplicate(f"same content as {twin}")
    doc_id, embedded = await store_document(
        deps, tenant, job["source_id"], job["id"], fetched, requested or datetime.now(UTC)
    )
    return "done", embedded, doc_id


def _unchanged_since(modified_at: datetime | None, prev_row: asyncpg.Record) -> bool:
    """Whether the source said when the item last changed, and the stored copy (complete, of the current model,
    checked by the caller) was requested after that."""
    return (
        modified_at is not None
        and prev_row["fetched_at"] is not None
        and bool(prev_row["content_hash"])
        and modified_at < prev_row["fetched_at"]
    )


async def store_document(
    deps: WorkerDeps,
    tenant: uuid.UUID,
    source_id: uuid.UUID,
    job_id: uuid.UUID,
    fetched: Fetched,
    requested: datetime,
) -> tuple[uuid.UUID, int]:
    """Chunk, embed what is new, and write the document (fetched at `requested`: when its request went out);
    returns its id and how many chunks were embedded."""
    # CPU work (tokenizer, splitter) off the event loop, like extraction: HTTP and other tasks keep going.
    with phase(deps, "chunk") as span:
        chunks = to_chunks(await asyncio.to_thread(deps.chunker.split, fetched.text))
        span.update(output={"chunks": len(chunks)})
    about = summary(fetched.text)
    model = deps.embedder.model_name
    existing = await deps.pool.fetchval(_DOC_ID, tenant, fetched.url)
    rows = await deps.pool.fetch(_EXISTING, tenant, existing, model) if existing else []
    vectors: dict[str, Any] = {r["content_hash"]: r["embedding"] for r in rows}
    prepared: dict[str, bytes | None] = {r["content_hash"]: r["prepared"] for r in rows}
    todo = [c for c in chunks if c.content_hash not in vectors]
    unprepared = [c for c in chunks if prepared.get(c.content_hash) is None] if deps.preparers else []
    with phase(deps, "embed", metadata={"model": model, "new": len(todo), "reused": len(vectors)}):
        for start in range(0, len(todo), _EMBED_BATCH):
            await check_live(deps, job_id)  # before each batch: a cancelled job's pages cost no more CPU
            batch = todo[start : start + _EMBED_BATCH]
            with METRICS.embedding("document"):
                embedded = await deps.embedder.embed([embedding_text(fetched.title, c, about) for c in batch])
            for chunk, vector in zip(batch, embedded, strict=True):
                vectors[chunk.content_hash] = vector
        # What the answer generators will compare with questions (the extractive one's sentences), embedded now
        # rather than while a visitor waits.
        for start in range(0, len(unprepared), _EMBED_BATCH):
            await check_live(deps, job_id)
            batch = unprepared[start : start + _EMBED_BATCH]
            with METRICS.embedding("prepared"):
                blobs = await prepare_chunks(deps.embedder, deps.preparers, [c.text for c in batch])
            prepared.update(zip((c.content_hash for c in batch), blobs, strict=True))
    ready = [
        Chunk(c.position, c.text, c.content_hash, c.heading_path, vectors[c.content_hash], prepared.get(c.content_hash))
        for c in chunks
    ]
    with phase(deps, "store", metadata={"chunks": len(ready)}):
        async with storing(deps.pool, job_id) as conn:
            doc_id = await conn.fetchval(
                _UPSERT_DOC,
                tenant,
                source_id,
                fetched.url,
                fetched.title[:500],
                fetched.content_type,
                len(fetched.text.encode()),
                job_id,
                requested,
            )
            await replace_chunks(conn, tenant, doc_id, ready)
            await conn.execute(
                _DOC_DONE,
                tenant,
                doc_id,
                fetched.content_hash,
                fetched.etag,
                fetched.last_modified,
                fetched.links[:5000],
                model,
            )
    return doc_id, len(todo)


@contextmanager
def phase(deps: WorkerDeps, name: str, **fields: Any) -> Iterator[Span]:
    """A phase of one page: a tracing span, and its time in `bitbd_ingest_phase_seconds{phase}`."""
    with deps.tracer.span(name, **fields) as span, METRICS.ingest_phase(name):
        yield span
