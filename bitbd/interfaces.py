"""What plugins implement: sources, embedders, vector stores and answer generators."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from bitbd.context import PluginContext, SourceContext
from bitbd.settings import Settings

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, in order, with the headings it sits under."""

    position: int
    text: str
    content_hash: str
    heading_path: list[str] = field(default_factory=list)
    embedding: Vector | None = None
    prepared: bytes | None = None  # what the generators will embed of it, embedded (bitbd/prepared.py); None: not yet


@dataclass(frozen=True)
class Hit:
    """One search result, best first.

    ``score`` orders the results of one search (for hybrid search it is the fused score); ``similarity`` is the
    cosine similarity between the query and the chunk, comparable across searches, or None if unknown.
    """

    chunk_id: int
    document_id: uuid.UUID
    url: str
    title: str
    heading: str
    text: str
    score: float
    similarity: float | None = None
    prepared: Mapping[str, Vector] = field(default_factory=dict, compare=False, repr=False)
    """Vectors made at ingestion of the texts the generator's `prepare()` named for this chunk, by text; filled
    by bitbd before the generator is called, empty where none are stored."""


@dataclass(frozen=True)
class Passage:
    """A numbered source handed to an answer generator: one page, its chunks that were found joined in `hit`
    (the page's best chunk, with their text), and those chunks one by one in `parts`, best first."""

    n: int
    hit: Hit
    parts: tuple[Hit, ...] = ()


@dataclass(frozen=True)
class Turn:
    """An earlier message of the conversation, oldest first."""

    role: str  # "user" or "assistant"
    content: str


class SourceError(Exception):
    """An item could not be ingested; `transient` ones (timeouts, 5xx) are retried with backoff."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Previous:
    """What the index holds of a document from an earlier ingestion, for conditional fetches."""

    etag: str | None
    last_modified: str | None
    content_hash: str
    links: list[str] = field(default_factory=list)  # stored with it: followed again when it is unchanged


@dataclass(frozen=True)
class Fetched:
    """One item, fetched and extracted; `unchanged` when the source says it has not changed."""

    url: str
    title: str = ""
    text: str = ""
    content_type: str = ""
    content_hash: str = ""
    etag: str | None = None
    last_modified: str | None = None
    links: list[str] = field(default_factory=list)
    unchanged: bool = False
    listing: bool = False  # a page that is mostly links (an index, a table of contents): followed, not indexed


class Component(ABC):  # noqa: B024 (the kinds below declare the abstract methods)
    """What every kind of component shares: bitbd builds each as ``cls(ctx)`` with a ``PluginContext`` (a source
    with a ``SourceContext``), whose ``config`` is its ``[plugins.<name>]`` table; a subclass that needs more at
    construction validates ``ctx.options(...)`` in its own ``__init__`` and calls ``super().__init__(ctx)``."""

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx


class Source(Component):
    """A kind of source (``web``, ``upload``, ...). The job engine keeps the frontier; the source fetches.

    Items are strings (URLs for the web, upload ids for uploads). The engine fetches ``seeds()``, then every
    link a fetched item reports that ``follow()`` accepts, up to ``max_pages`` items and ``max_depth`` links deep.
    One is built per run of one source, with that source's configuration as ``self.config`` (``ctx.source``).

    What a source can do is said by its class, never by its name:

    - ``urls``: its configuration is ``{"urls": [...]}`` plus crawl options, so ``bitbd ingest URL...`` makes one;
    - ``uploads``: its items are the files sent to ``POST /v1/uploads`` (and ``bitbd ingest FILE...``), and it is
      not created with ``POST /v1/sources``;
    - ``prunes``: a complete run sees every item the source still has, so documents a complete run did not see
      are deleted.
    """

    type: ClassVar[str]
    urls: ClassVar[bool] = False
    uploads: ClassVar[bool] = False
    prunes: ClassVar[bool] = False

    def __init__(self, ctx: SourceContext) -> None:
        super().__init__(ctx)
        self.ctx: SourceContext = ctx
        self.config: dict[str, Any] = dict(ctx.source)

    @classmethod
    def validate(cls, config: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """Check and normalise the source's configuration; raise ``bitbd.errors.InvalidRequest`` if wrong."""
        return config

    @property
    def max_pages(self) -> int:
        """Most items one run fetches: the configuration's `max_pages`; unset (or 0), `crawler.max_pages`, so a
        source that sets no limit of its own still has one."""
        return int(self.config.get("max_pages") or self.ctx.settings.crawler.max_pages)

    @property
    def max_depth(self) -> int:
        """Most links deep a run follows from its seeds: the configuration's `max_depth`; unset, 0 (seeds only)."""
        return int(self.config.get("max_depth") or 0)

    @abstractmethod
    async def seeds(self) -> list[str]:
        """The items to fetch first."""

    def last_modified(self, item: str) -> datetime | None:
        """When a seed last changed, if the source knows it without fetching it (a sitemap's `<lastmod>`), asked
        right after ``seeds()`` on the same object; an item stored after that is not fetched again. Default: None."""
        return None

    def follow(self, url: str) -> bool:
        """Whether a link found in a fetched item is in scope (default: links are not followed)."""
        return False

    @abstractmethod
    async def fetch(self, item: str, previous: Previous | None) -> Fetched:
        """Fetch and extract one item; raise ``SourceError`` with the reason when it cannot be ingested."""


class Embedder(Component):
    """Turns text into unit vectors of a fixed dimension."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of the vectors this embedder returns."""

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Embed a small batch of texts, in order."""

    async def embed_queries(self, texts: Sequence[str]) -> list[Vector]:
        """Embed short search queries; an embedder may serve these ahead of (bulk) ingestion batches."""
        return await self.embed(texts)

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads; chunks are kept below it."""
        return 256

    @property
    def model_name(self) -> str:
        """Identifies the vectors: stored vectors of another model are never reused."""
        return self.name

    def tokenizer(self) -> Any | None:
        """A ``tokenizers.Tokenizer`` to count tokens when chunking, or None to estimate from characters."""
        return None


class VectorStore(Component):
    """Indexes and searches the chunks of one tenant for the ones nearest a query.

    The chunks themselves, with their embeddings, are bitbd's own: the core writes and deletes them in its
    PostgreSQL ``chunks`` table (``bitbd/db/chunks.py``), in one transaction with their document and the job's
    frontier, and counts and lists them there. A store decides how that table is indexed (``check``) and searched
    (``search``, ``keyword_search``); every query it runs must filter on ``tenant_id``. docs/architecture.md says
    why the boundary is drawn there."""

    name: ClassVar[str]

    @abstractmethod
    async def check(self, dimension: int) -> None:
        """At start-up: fail with a clear message if vectors of ``dimension`` cannot be searched, and build the
        index the store searches with if it is missing."""

    @abstractmethod
    async def search(self, tenant_id: uuid.UUID, vector: Vector, k: int, ef_search: int | None = None) -> list[Hit]:
        """The ``k`` chunks of this tenant nearest to ``vector``, best first, with ``similarity`` set.

        ``ef_search`` (``retrieval.ef_search``) is the breadth of an approximate index walk, if the store has one.
        """

    async def keyword_search(self, tenant_id: uuid.UUID, query: str, vector: Vector, k: int) -> list[Hit]:
        """The ``k`` chunks of this tenant that best match ``query``'s words, best first, with ``similarity`` to
        ``vector`` set. Stores without full-text search return none, and hybrid retrieval becomes vector-only."""
        return []

    async def close(self) -> None:
        """When the process stops: end the background work the store started (an index build, say)."""


class Reranker(Component):
    """Reorders the fused candidates of a retrieval (e.g. with a cross-encoder), selected by ``retrieval.reranker``."""

    name: ClassVar[str]

    @abstractmethod
    async def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        """The hits, best first; it may drop some, and should not add any."""


class GeneratorUnavailable(Exception):
    """Raised by a generator before its first piece when its backend cannot be reached: bitbd then answers with
    the ``extractive`` generator instead and logs a warning."""


class AnswerCut(Exception):
    """Raised by a generator after its last piece when the answer is not complete: the model ran into its token
    limit (``stopped`` "length"), or its server ended the stream without saying that the answer was finished
    ("no_finish"). bitbd keeps what was sent, ends the question with ``done`` marked ``"complete": false``, logs a
    warning, and never caches the answer."""

    def __init__(self, stopped: str, detail: str) -> None:
        super().__init__(detail)
        self.stopped = stopped


class AnswerGenerator(Component):
    """Writes an answer from numbered passages, streamed in pieces."""

    name: ClassVar[str]

    @abstractmethod
    def generate(self, question: str, passages: Sequence[Passage], history: Sequence[Turn] = ()) -> AsyncIterator[str]:
        """Yield the answer's text in pieces, citing passages as ``[n]``; ``history`` holds earlier turns."""

    @classmethod
    def prepare(cls, text: str) -> list[str]:
        """The texts this generator will embed (with `use_embedder`'s function) when it answers from a chunk of
        ``text``. bitbd embeds them once, at ingestion, stores them with the chunk, and hands them over on the
        chunk's hits (`Hit.prepared`), so answering embeds nothing that was known in advance. Optional: the default
        names none. A class method: workers call it without building the generator."""
        return []

    def use_embedder(self, embed: Callable[[Sequence[str]], Awaitable[list[Vector]]]) -> None:
        """Called once before the first answer with a function that embeds texts with the tenant's embedding
        model (in batches, off the event loop), for a generator that compares passages' sentences with the
        question by meaning (`extractive` does). Optional: the default keeps nothing."""

    def use_token_counter(self, count: Callable[[str], int]) -> None:
        """Called once before the first answer with a function that counts the tokens of a text with the embedding
        model's tokenizer (or estimates them from its length), for a generator that must keep its prompt within a
        budget (`openai` does). Optional: the default keeps nothing."""

    def backlog(self) -> dict[str, Any] | None:
        """What the operator's console shows of the requests this generator has in flight toward its backend and
        waiting for it (`{"generator", "limit", "in_flight", "waiting", "wait_p50_ms", "wait_p95_ms"}`), or None
        for a generator without a backend (the default)."""
        return None

    async def close(self) -> None:  # optional: most generators hold nothing
        """Release connections; called when the server stops."""
