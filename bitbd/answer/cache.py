"""The semantic response cache: answers to near-identical earlier questions, per tenant and corpus version.

Each (tenant, namespace, corpus version) has one Redis stream of entries: the question's embedding, the
question, and the answer with its citations. Stream ids are timestamps, so entries older than the TTL are
skipped by id; MAXLEN bounds the size; the key expires with its last entry. Any change to a tenant's documents
bumps its corpus version (a trigger, migration 0006), so lookups go to a new, empty stream: a stale answer is
never served. Every process keeps a mirror of the streams it reads and fetches only entries newer than the last
one it has, so a lookup is one small Redis round trip plus a matrix product.

Only the newest corpus version of a tenant can be hit again, so a tenant has one mirror, of that version: when
its version moves on (a crawl bumps it once per page), the older mirror is dropped and its stream deleted at
once rather than left to expire. Mirrors hold at most `_MIRRORED_ENTRIES` entries in all (least recently used
tenants dropped first): a long crawl under chat load used to grow the server by one mirror per page.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis.asyncio as aioredis
import snowballstemmer

from bitbd.interfaces import Vector
from bitbd.metrics import METRICS
from bitbd.settings import CacheSettings

_MIRRORED_ENTRIES = 20_000  # entries mirrored per process in all (~3 KB each), least recently used tenants dropped
_CANDIDATES = 5  # cached questions above the threshold checked with same_question(), most similar first
_WORD = re.compile(r"[a-z0-9]+")
# Words that do not change what is asked. Direction and negation words ("up", "down", "not", "before") are kept:
# "round a number down" and "round a number up" embed almost alike but need different answers.
_FILLER = frozenset(
    """a an the i my me we our us you your he she they it its this that these those there do does
did can could would should will shall may might must how what which who whom why when where is are was were be been
being am to of for in on at by with and or as please tell explain show way ways some any way get""".split()
)
_STEMMER = snowballstemmer.stemmer("english")


def same_question(a: str, b: str) -> bool:
    """A guard on top of embedding similarity, which a bag-of-words-like model gets wrong in two ways: word order
    ("a string to a date" / "a date to a string", cosine 0.99) and one swapped word ("down" / "up", 0.95)."""
    words_a, words_b = _content_words(a), _content_words(b)
    if words_a == words_b:
        return True
    if sorted(words_a) == sorted(words_b):
        return False  # the same words in another order
    only_a, only_b = set(words_a) - set(words_b), set(words_b) - set(words_a)
    return not (len(only_a) == 1 and len(only_b) == 1)  # one word swapped for another


def _content_words(text: str) -> list[str]:
    words = [w for w in _WORD.findall(text.lower()) if w not in _FILLER]
    return list(_STEMMER.stemWords(words))


@dataclass
class Cached:
    """A hit: the question it was cached for, its answer and sources, and how similar the new question was."""

    question: str
    answer: str
    sources: list[dict[str, Any]]
    similarity: float


@dataclass
class _Mirror:
    key: str
    version: int
    last_id: str = "0-0"
    ids: list[int] = field(default_factory=list)  # entry time in ms
    vectors: list[Vector] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    matrix: Any = None  # stacked vectors, rebuilt when entries arrive


def _stream_id(entry: str) -> tuple[int, int]:
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)


class SemanticCache:
    """Answers kept per tenant and document version in a Redis stream, found again by the embedding of a question
    that means the same (`same_question` guards against near-twins that ask the opposite). Each process mirrors
    the streams it reads in memory and catches up on new entries; entries older than `ttl_seconds` by `clock`
    (time.time; a test passes its own) are never served."""

    def __init__(
        self, redis: aioredis.Redis, settings: CacheSettings, prefix: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.settings = settings
        self.prefix = prefix
        self._mirrors: OrderedDict[tuple[uuid.UUID, str], _Mirror] = OrderedDict()  # newest version only
        self.hits = 0
        self.misses = 0

    def key(self, tenant_id: uuid.UUID, namespace: str, version: int) -> str:
        """The Redis stream of one tenant's answers at one version of its documents (and of the answer settings)."""
        return f"{self.prefix}:cache:{tenant_id}:{namespace}:{version}"

    async def get(
        self, tenant_id: uuid.UUID, namespace: str, version: int, vector: Vector, question: str
    ) -> Cached | None:
        """The cached answer to a question that means the same as `question`, or None (counted as a miss)."""
        if not self.settings.enabled:
            return None
        mirror = await self._sync(tenant_id, namespace, version)
        found = self._best(mirror, vector, question) if mirror is not None else None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        METRICS.cache_requests.inc({"result": "miss" if found is None else "hit"})
        return found

    async def put(
        self,
        tenant_id: uuid.UUID,
        namespace: str,
        version: int,
        vector: Vector,
        question: str,
        answer: str,
        sources: list[dict[str, Any]],
    ) -> None:
        """Keep an answer for later askers of the same question; dropped if the documents changed meanwhile."""
        if not self.settings.enabled:
            return
        newest = self._mirrors.get((tenant_id, namespace))
        if newest is not None and newest.version > version:
            return  # the documents changed while this answer was written: nobody asks that version any more
        key = self.key(tenant_id, namespace, version)
        payload = json.dumps({"q": question, "a": answer, "s": sources})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                key,
                {"v": np.asarray(vector, dtype=np.float32).tobytes(), "p": payload},
                maxlen=self.settings.max_entries,
                approximate=False,
            )
            pipe.expire(key, self.settings.ttl_seconds)
            await pipe.execute()

    async def _sync(self, tenant_id: uuid.UUID, namespace: str, version: int) -> _Mirror | None:
        """The tenant's mirror at `version`, brought up to date; None when a newer version is already mirrored
        (this lookup raced a document change, and cannot be answered from the cache)."""
        mirror = self._mirrors.pop((tenant_id, namespace), None)
        stale = None
        if mirror is None or mirror.version < version:
            stale = mirror.key if mirror is not None else None
            mirror = _Mirror(self.key(tenant_id, namespace, version), version)
        self._mirrors[(tenant_id, namespace)] = mirror
        if mirror.version > version:
            return None
        async with self.redis.pipeline(transaction=False) as pipe:
            if stale is not None:
                pipe.unlink(stale)
            pipe.exists(mirror.key)
            pipe.xrange(mirror.key, min=f"({mirror.last_id}", max="+", count=self.settings.max_entries)
            *_, exists, entries = await pipe.execute()
        if not exists:  # expired or flushed: forget what we mirrored
            if self._mirrors.get((tenant_id, namespace)) is mirror:
                self._mirrors[(tenant_id, namespace)] = _Mirror(mirror.key, version)
            return None
        for entry_id, fields in entries:
            entry = entry_id.decode()
            if _stream_id(entry) <= _stream_id(mirror.last_id):
                continue  # a concurrent lookup of this mirror added it already
            mirror.last_id = entry
            mirror.ids.append(int(entry.split("-")[0]))
            mirror.vectors.append(np.frombuffer(fields[b"v"], dtype=np.float32))
            mirror.payloads.append(json.loads(fields[b"p"]))
        keep = self.settings.max_entries
        oldest = int(self.clock() * 1000) - self.settings.ttl_seconds * 1000
        drop = max(len(mirror.ids) - keep, next((i for i, t in enumerate(mirror.ids) if t >= oldest), len(mirror.ids)))
        if drop:
            del mirror.ids[:drop], mirror.vectors[:drop], mirror.payloads[:drop]
        if entries or drop:
            mirror.matrix = np.vstack(mirror.vectors) if mirror.vectors else None
        if entries:  # only new entries can take the total past the bound
            self._bound()
        return mirror

    def _bound(self) -> None:
        """Drop the least recently used mirrors (never the one just used) past _MIRRORED_ENTRIES entries."""
        total = sum(len(m.ids) for m in self._mirrors.values())
        while total > _MIRRORED_ENTRIES and len(self._mirrors) > 1:
            _, dropped = self._mirrors.popitem(last=False)
            total -= len(dropped.ids)

    def _best(self, mirror: _Mirror, vector: Vector, question: str) -> Cached | None:
        if mirror.matrix is None:
            return None
        similarities = mirror.matrix @ np.asarray(vector, dtype=np.float32)
        for index in np.argsort(-similarities)[:_CANDIDATES]:
            similarity = float(similarities[index])
            if similarity < self.settings.threshold:
                return None
            payload = mirror.payloads[int(index)]
            if same_question(question, payload["q"]):
                return Cached(payload["q"], payload["a"], payload["s"], similarity)
        return None
