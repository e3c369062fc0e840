"""Prometheus metrics (aioprometheus), one registry per process.

Every process counts what it does itself: `bitbd serve` serves its numbers at `GET /metrics`, and each
`bitbd worker` serves the numbers of the tasks it ran on its own port (`metrics.worker_port`); Prometheus scrapes
them all and sums. Labels are few and bounded: queue names, outcomes, phases, route patterns, never tenants or
URLs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from aioprometheus.collectors import Counter, Gauge, Histogram, Registry
from aioprometheus.renderer import render

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
_COUNTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 10000)


class Metrics:
    """The process's collectors, in a registry of their own; use the module's `METRICS`."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.queue_jobs = Counter("bitbd_queue_jobs_total", "Queue tasks run, by queue and outcome.", registry=r)
        self.queue_job_duration = Histogram(
            "bitbd_queue_job_duration_seconds", "Run time of one queue task.", registry=r, buckets=_FAST
        )
        self.queue_depth = Gauge("bitbd_queue_depth", "Tasks waiting or running in each queue.", registry=r)
        self.rag_queries = Counter(
            "bitbd_rag_queries_total", "Questions asked, by whether they were answered.", registry=r
        )
        self.rag_refusals = Counter(
            "bitbd_rag_refusals_total", 'Questions answered "I don\'t know" (answer.dont_know).', registry=r
        )
        self.answer_feedback = Counter(
            "bitbd_answer_feedback_total", "Visitors' ratings of answers, by rating (up, down).", registry=r
        )
        self.rag_latency = Histogram(
            "bitbd_rag_query_latency_seconds",
            "Time to answer a question, by phase (retrieve, generate, total).",
            registry=r,
            buckets=_FAST,
        )
        self.rag_chunks = Histogram(
            "bitbd_rag_chunks_retrieved",
            "Chunks retrieved for a question.",
            registry=r,
            buckets=(0, 1, 2, 3, 5, 10, 20, 50),
        )
        self.ingestion_jobs = Counter(
            "bitbd_ingestion_jobs_total", "Ingestion jobs ended, by final status.", registry=r
        )
        self.ingestion_pages = Histogram(
            "bitbd_ingestion_pages_processed", "Pages or files processed per job.", registry=r, buckets=_COUNTS
        )
        self.ingestion_chunks = Histogram(
            "bitbd_ingestion_chunks_created", "Chunks embedded per job.", registry=r, buckets=_COUNTS
        )
        self.ingestion_job_duration = Histogram(
            "bitbd_ingestion_job_duration_seconds",
            "Wall time of an ingestion job, start to end.",
            registry=r,
            buckets=_SLOW,
        )
        self.embed_seconds = Histogram(
            "bitbd_embed_seconds",
            "Time to embed one batch, by kind (document, query, sentences).",
            registry=r,
            buckets=_FAST,
        )
        self.ingest_phase_seconds = Histogram(
            "bitbd_ingest_phase_seconds",
            "Time a worker spends on one page in each phase (fetch, which includes extraction; chunk; embed; store).",
            registry=r,
            buckets=_FAST,
        )
        self.cache_requests = Counter("bitbd_cache_requests_total", "Semantic cache lookups, by result.", registry=r)
        self.ws_connections = Gauge("bitbd_ws_connections", "Open chat WebSocket connections.", registry=r)
        self.http_requests = Counter(
            "bitbd_http_requests_total", "HTTP requests, by route pattern and status.", registry=r
        )
        self.http_duration = Histogram(
            "bitbd_http_request_duration_seconds", "HTTP request time, by route pattern.", registry=r, buckets=_FAST
        )
        self.answers = Counter(
            "bitbd_answers_total",
            "Answers written (not from the cache), by the generator that "
            "wrote them (extractive when the configured one fell back) and whether they were "
            "complete.",
            registry=r,
        )
        self.llm_in_flight = Gauge(
            "bitbd_llm_requests_in_flight",
            "Requests being answered by a language model's server, by generator.",
            registry=r,
        )
        self.llm_waiting = Gauge(
            "bitbd_llm_requests_waiting",
            "Questions waiting for a free slot toward a language model's server (its max_concurrent), by generator.",
            registry=r,
        )
        self.llm_wait = Histogram(
            "bitbd_llm_wait_seconds",
            "Time a question waited for a slot toward a language model's server.",
            registry=r,
            buckets=_FAST,
        )
        self.ws_connections.set({}, 0)

    @contextmanager
    def embedding(self, kind: str) -> Iterator[None]:
        """Time the block into `bitbd_embed_seconds` under `kind` (document, prepared, query or sentences)."""
        with _timed(self.embed_seconds, {"kind": kind}):
            yield

    @contextmanager
    def ingest_phase(self, phase: str) -> Iterator[None]:
        """Time the block into `bitbd_ingest_phase_seconds` under `phase` (fetch, chunk, embed, store)."""
        with _timed(self.ingest_phase_seconds, {"phase": phase}):
            yield

    def response(self, request: web.Request) -> web.Response:
        """The registry rendered for a scrape, in the format the request's Accept header asks for."""
        body, headers = render(self.registry, request.headers.getall("Accept", []))
        return web.Response(body=body, headers=headers)


METRICS = Metrics()


@contextmanager
def _timed(histogram: Histogram, labels: dict[str, str]) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(labels, time.perf_counter() - started)


def route_of(request: web.Request) -> str:
    """The route's pattern (`/v1/jobs/{job}`), never the concrete path: bounded label values."""
    info = request.match_info
    resource = info.route.resource if info is not None and info.route is not None else None
    if resource is None:
        return "unmatched"
    return resource.canonical or "unmatched"
