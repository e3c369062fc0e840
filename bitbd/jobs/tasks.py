"""Task registration: thin Taskiq tasks with stable names over the engine's functions."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from taskiq import Context, TaskiqDepends

from bitbd.jobs import engine, finish
from bitbd.jobs.broker import PriorityStreamBroker
from bitbd.jobs.runtime import deps_of
from bitbd.metrics import METRICS

log = logging.getLogger(__name__)


@contextmanager
def measured(context: Context) -> Iterator[None]:
    """Count the task by its queue (high, normal) and outcome, and time it."""
    queue = "high" if str(context.message.labels.get("queue_name", "")).endswith("high") else "normal"
    started = time.perf_counter()
    status = "error"
    try:
        yield
        status = "success"
    finally:
        METRICS.queue_jobs.inc({"queue": queue, "status": status})
        METRICS.queue_job_duration.observe({"queue": queue}, time.perf_counter() - started)


async def start_job(job_id: str, context: Annotated[Context, TaskiqDepends()]) -> None:
    """Task: start a job (`engine.start_job`); an unexpected error fails the job instead of leaving it
    running."""
    with measured(context):
        await _start_job(job_id, context)


async def ingest_item(item_id: int, context: Annotated[Context, TaskiqDepends()]) -> None:
    """Task: ingest one item of a job (`engine.ingest_item`); an unexpected error fails the item."""
    with measured(context):
        await _ingest_item(item_id, context)


async def _start_job(job_id: str, context: Context) -> None:
    deps = deps_of(context)
    try:
        await engine.start_job(deps, uuid.UUID(job_id))
    except Exception as e:
        # A bug or an outage must not leave the job running forever; if PostgreSQL is down this fails too,
        # and the upkeep loop re-queues the job once things are back.
        log.exception("start of job failed", extra={"job": job_id})
        await finish.fail_job(deps, uuid.UUID(job_id), f"internal error: {type(e).__name__}; see the worker log")


async def _ingest_item(item_id: int, context: Context) -> None:
    deps = deps_of(context)
    try:
        await engine.ingest_item(deps, item_id)
    except Exception as e:
        log.exception("ingesting an item failed", extra={"item": item_id})
        await finish.fail_item(deps, item_id, f"internal error: {type(e).__name__}; see the worker log")


def register_tasks(broker: PriorityStreamBroker) -> None:
    """Register both tasks on the broker under their stable names (`engine.START_TASK`,
    `engine.ITEM_TASK`)."""
    # Stable names: renaming a module must not orphan queued messages.
    broker.register_task(start_job, task_name=engine.START_TASK)
    broker.register_task(ingest_item, task_name=engine.ITEM_TASK)
