"""Embeddings an answer generator will want of a chunk, made once at ingestion and kept beside it (`chunks.prepared`,
sql/0017), so that answering compares stored vectors instead of embedding text while a visitor waits.

A generator names the texts it will embed when it answers from a chunk (`AnswerGenerator.prepare()`: the
extractive generator's sentences, each under its heading). Ingestion embeds them with the chunk and stores them
here; `attach()` hands them to the generator on the chunk's hits (`Hit.prepared`, by text). A text is stored under
a digest of itself, so a generator whose sentences have changed (a new version) finds only what still matches and
embeds the rest as before: a missing vector costs time, never a wrong answer.

The format, one `bytea` per chunk: `n` and the dimension (two little-endian uint16), then `n` 8-byte digests, `n`
float32 scales, and `n` vectors quantised to int8 (each divided by its scale: its largest component / 127). A
cosine from the quantised vector is within ~0.002 of the exact one; a chunk's eight sentences take ~3 KB.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import asyncpg
import numpy as np

from bitbd.interfaces import AnswerGenerator, Embedder, Hit, Vector
from bitbd.plugins import Plugins
from bitbd.settings import Settings

log = logging.getLogger(__name__)

Prepare = Callable[[str], list[str]]
_HEADER = np.dtype("<u2")
_MAX = 65535  # texts per chunk at most (the header's uint16)
BACKFILL_BATCH = 32  # chunks per transaction when catching up on chunks stored without (before sql/0017)

_READ = "SELECT id, prepared FROM chunks WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND prepared IS NOT NULL"
_UNPREPARED = "SELECT id, text FROM chunks WHERE prepared IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
_WRITE = "UPDATE chunks SET prepared = $2 WHERE id = $1"


def preparers_of(settings: Settings, plugins: Plugins) -> list[Prepare]:
    """The `prepare()` of the generators that may answer (`answer.generator` and `answer.fallback`) that name any
    text; none when `answer.prepare` is off. A name that is not installed is left to the answerer to report."""
    if not settings.answer.prepare:
        return []
    generators = plugins.generators()
    names = dict.fromkeys([settings.answer.generator, settings.answer.fallback])
    classes = [generators[n] for n in names if n in generators]
    default = getattr(AnswerGenerator.prepare, "__func__", None)
    return [cls.prepare for cls in classes if getattr(cls.prepare, "__func__", None) is not default]


def digest(text: str, model: str) -> bytes:
    """The key a prepared text is stored and found under: of the text and the embedding model, so that vectors of
    another model (before a re-embed) are never compared with a question's."""
    return hashlib.blake2b(f"{model}\n{text}".encode(), digest_size=8).digest()


def pack(texts: Sequence[str], vectors: Sequence[Vector], model: str) -> bytes:
    """The stored form of ``texts``' vectors (empty bytes for none)."""
    if not texts:
        return b""
    texts, vectors = texts[:_MAX], vectors[:_MAX]
    matrix = np.asarray(np.stack(vectors), dtype=np.float32)
    scales = np.maximum(np.abs(matrix).max(axis=1), 1e-12).astype("<f4") / 127
    quantised = np.rint(matrix / scales[:, None]).astype(np.int8)
    header = np.array([len(texts), matrix.shape[1]], dtype=_HEADER).tobytes()
    return bytes(header + b"".join(digest(t, model) for t in texts) + scales.tobytes() + quantised.tobytes())


def unpack(blob: bytes) -> dict[bytes, Vector]:
    """The vectors of a stored form, by digest; nothing for empty or damaged bytes."""
    if len(blob) < 4:
        return {}
    n, dimension = (int(x) for x in np.frombuffer(blob, dtype=_HEADER, count=2))
    if len(blob) != 4 + n * (8 + 4 + dimension):
        log.warning("prepared vectors of unexpected size ignored", extra={"bytes": len(blob)})
        return {}
    keys = [blob[4 + 8 * i : 12 + 8 * i] for i in range(n)]
    scales = np.frombuffer(blob, dtype="<f4", count=n, offset=4 + 8 * n)
    quantised = np.frombuffer(blob, dtype=np.int8, offset=4 + 12 * n).reshape(n, dimension)
    matrix = quantised.astype(np.float32) * scales[:, None]
    return dict(zip(keys, matrix, strict=True))


def texts_of(preparers: Iterable[Prepare], text: str) -> list[str]:
    """What every configured generator will embed of a chunk, each text once."""
    return list(dict.fromkeys(t for prepare in preparers for t in prepare(text)))


async def prepare_chunks(embedder: Embedder, preparers: Sequence[Prepare], texts: Sequence[str]) -> list[bytes]:
    """The stored form for each chunk text, embedded in one call (the bulk one, as chunks are)."""
    wanted = [texts_of(preparers, t) for t in texts]
    flat = list(dict.fromkeys(t for w in wanted for t in w))
    vectors = dict(zip(flat, await embedder.embed(flat), strict=True)) if flat else {}
    return [pack(w, [vectors[t] for t in w], embedder.model_name) for w in wanted]


async def attach(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, hits: Sequence[Hit], preparers: Sequence[Prepare], model: str
) -> list[Hit]:
    """The hits with the vectors `model` prepared for their chunks (by text), in one query; hits of chunks with
    none stored (not yet made, or a store that returns no chunk ids) are returned as they are."""
    if not preparers or not hits:
        return list(hits)
    rows = await pool.fetch(_READ, tenant_id, list({h.chunk_id for h in hits}))
    stored = {r["id"]: unpack(r["prepared"]) for r in rows}
    out = []
    for hit in hits:
        by_digest = stored.get(hit.chunk_id)
        if by_digest:
            found = {t: v for t in texts_of(preparers, hit.text) if (v := by_digest.get(digest(t, model))) is not None}
            hit = replace(hit, prepared=found)
        out.append(hit)
    return out


async def backfill(
    pool: asyncpg.Pool, preparers: Sequence[Prepare], embedder: Embedder, limit: int = BACKFILL_BATCH
) -> int:
    """Prepare up to ``limit`` chunks stored without (before sql/0017, or while no generator asked for any);
    returns how many. Rows are locked while they are embedded, so processes sharing the database split the work."""
    if not preparers:  # stays NULL: a generator configured later that wants some still gets them
        return 0
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_UNPREPARED, limit)
        if not rows:
            return 0
        blobs = await prepare_chunks(embedder, preparers, [r["text"] for r in rows])
        await conn.executemany(_WRITE, [(r["id"], b) for r, b in zip(rows, blobs, strict=True)])
    return len(rows)
