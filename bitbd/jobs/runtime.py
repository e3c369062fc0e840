"""What a worker needs (pool, plugins, embedder, store, fetcher), built once per process, and how to enqueue."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from taskiq import AsyncBroker, Context

from bitbd.ingest.chunking import Chunker
from bitbd.ingest.fetch import Fetcher
from bitbd.interfaces import Embedder, Source, VectorStore
from bitbd.jobs.broker import Delayed, Priority, PriorityStreamBroker
from bitbd.plugins import Plugins
from bitbd.prepared import Prepare, preparers_of
from bitbd.settings import Settings
from bitbd.tracing import Tracer, tracer

log = logging.getLogger(__name__)
_PREFIX_TOKENS = 24  # room for the title and heading path prepended to each chunk before embedding


@dataclass
class WorkerDeps:
    """What the tasks of one worker process share, built once by `create()`; a task reaches it
    through `deps_of()`."""

    settings: Settings
    pool: asyncpg.Pool
    plugins: Plugins
    embedder: Embedder
    store: VectorStore
    fetcher: Fetcher
    chunker: Chunker
    broker: PriorityStreamBroker
    delayed: Delayed
    sources: dict[str, type[Source]]  # resolved once: every page looks its source type up here
    tracer: Tracer
    preparers: list[Prepare]  # what the generators that may answer want embedded of each chunk (bitbd/prepared.py)

    @classmethod
    async def create(
        cls, settings: Settings, pool: asyncpg.Pool, plugins: Plugins, broker: PriorityStreamBroker
    ) -> WorkerDeps:
        """Build the embedder, the store (checked against the embedder's dimension, its index built
        if missing), a chunker whose chunks leave the embedder room for title and headings, and the fetcher."""
        embedder = make_embedder(settings, plugins)
        store = plugins.build("store", settings.ingest.store, settings, pool=pool)
        await store.check(embedder.dimension)
        tokens = min(settings.ingest.chunk_tokens, embedder.max_tokens - _PREFIX_TOKENS)
        chunker = Chunker(tokens, settings.ingest.chunk_overlap, embedder.tokenizer())
        return cls(
            settings,
            pool,
            plugins,
            embedder,
            store,
            Fetcher(settings.crawler),
            chunker,
            broker,
            Delayed(broker, settings.jobs.queue_prefix),
            plugins.sources(),
            tracer(settings),
            preparers_of(settings, plugins),
        )

    async def close(self) -> None:
        """Close the fetcher's HTTP session and stop the store's background work."""
        await self.fetcher.close()
        await self.store.close()

    async def enqueue(self, task: str, args: list[Any], priority: Priority) -> None:
        """Queue a registered task on this process's broker (see `enqueue()`)."""
        await enqueue(self.broker, task, args, priority)


def make_embedder(settings: Settings, plugins: Plugins) -> Embedder:
    """The embedder ``ingest.embedder`` names, with its ``[plugins.<name>]`` table."""
    return plugins.build("embedder", settings.ingest.embedder, settings)


async def enqueue(broker: PriorityStreamBroker, task: str, args: list[Any], priority: Priority) -> None:
    """Queue the registered task `task` with `args` on the stream of `priority`; raises RuntimeError if
    the broker has no such task."""
    decorated = broker.find_task(task)
    if decorated is None:
        raise RuntimeError(f"task {task} is not registered on this broker")
    await decorated.kicker().with_labels(queue_name=broker.stream(priority)).kiq(*args)


def deps_of(holder: Context | AsyncBroker) -> WorkerDeps:
    """The WorkerDeps running_broker() gave this broker, from the broker or from a task's Taskiq context: Taskiq's
    state is untyped, and this is the one place that reads it."""
    deps: WorkerDeps = holder.state.deps
    return deps
