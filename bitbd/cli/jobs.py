"""`bitbd ingest` (queue a job and watch it) and `bitbd worker` (run ingestion tasks in this process)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bitbd import tenancy
from bitbd.db.migrate import current_version, latest_version
from bitbd.db.pool import migrated_pool, open_pool
from bitbd.embedded.datadir import DataDir
from bitbd.embedded.services import services
from bitbd.errors import ConfigError, InvalidRequest
from bitbd.http.metrics import metrics
from bitbd.ingest.uploads import ACCEPTED, content_type_for
from bitbd.interfaces import Source
from bitbd.jobs import records, schedule
from bitbd.jobs.broker import PriorityStreamBroker
from bitbd.jobs.engine import START_TASK
from bitbd.jobs.runtime import enqueue
from bitbd.jobs.worker import running_broker
from bitbd.keys import settings_key
from bitbd.plugins import Plugins, load_plugins
from bitbd.settings import Settings

_NO_WORKER_HINT = 15.0  # seconds a job may stay queued before we say that no worker seems to be running


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `bitbd ingest`, `bitbd reembed` and `bitbd worker` to the subcommands."""
    from bitbd.cli import positive_int

    p = sub.add_parser(
        "ingest",
        parents=[common],
        help="crawl URLs or load files for a tenant, with progress",
        description="Queue an ingestion job and show its progress until it ends. URLs are "
        "crawled; paths (files or directories) are uploaded.",
    )
    p.add_argument("--tenant", required=True, help="tenant name or id")
    p.add_argument("targets", nargs="+", metavar="URL|PATH")
    p.add_argument("--max-pages", type=int, help="most pages to crawl")
    p.add_argument("--max-depth", type=int, help="most links to follow from a start URL")
    p.add_argument("--include", action="append", default=[], metavar="REGEX", help="only URLs matching (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="REGEX", help="skip URLs matching (repeatable)")
    p.add_argument("--priority", choices=["normal", "high"], default="normal")
    p.add_argument(
        "--refresh",
        metavar="DURATION",
        help="crawl the URLs again every DURATION (e.g. 6h, 1d; at least crawler.min_refresh)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N workers in this process (default: 2 when no server uses the data dir, else 0)",
    )
    p.add_argument("--no-wait", action="store_true", help="queue the job, print its id, and return")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser(
        "reembed",
        parents=[common],
        help="re-run all of a tenant's sources (after a model switch)",
        description="Queue a job for each of the tenant's sources. Documents embedded by another "
        "model than the configured one are fetched and embedded again; the rest are "
        "checked for changes as in any re-crawl.",
    )
    p.add_argument("--tenant", required=True, help="tenant name or id")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N workers in this process (default: 2 when no server uses the data dir, else 0)",
    )
    p.set_defaults(handler=cmd_reembed)

    p = sub.add_parser("worker", parents=[common], help="run ingestion tasks (scale out with more of these)")
    p.add_argument(
        "--concurrency", type=positive_int, metavar="N", help="tasks at once (default: jobs.workers, else 2)"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve this worker's /metrics on PORT (default metrics.worker_port, 9741; 0: none)",
    )
    p.set_defaults(handler=cmd_worker)


def _source_that(queue: Queue, capability: str, does: str) -> type[Source]:
    cls = queue.plugins.source_with(capability)
    if cls is None:
        raise ConfigError(f"no installed source type {does}; enable one (plugins.disabled) or install one")
    return cls


def cmd_ingest(args: argparse.Namespace) -> int:
    """`bitbd ingest`: queue a crawl of the URLs or an upload of the files (not both in one command), then
    show the job's progress to its end; exits 0 only if it succeeded. With --no-wait, prints the job id and returns."""
    urls = [t for t in args.targets if t.startswith(("http://", "https://"))]
    paths = [Path(t) for t in args.targets if t not in urls]
    if urls and paths:
        raise InvalidRequest("give either URLs or paths, not both (they become different jobs)")
    if paths and args.refresh:
        raise InvalidRequest("--refresh re-crawls URLs; files do not change by themselves: ingest them again")
    files = _read_files(paths) if paths else []

    async def ingest(queue: Queue) -> int:
        if urls:
            settings = queue.settings
            if queue.workers == 0:
                # A running server's workers crawl under their own crawler.allow_private, which this process cannot
                # see; they refuse a private address themselves, with an error that says where to allow it.
                settings = settings.model_copy(
                    update={"crawler": settings.crawler.model_copy(update={"allow_private": True})}
                )
            crawler = _source_that(queue, "urls", "crawls URLs")
            config = crawler.validate(crawl_config(args, urls), settings)
            refresh = schedule.refresh_seconds(args.refresh, settings, "--refresh")
            job_id, _ = await records.create_job(
                queue.pool, queue.tenant.id, crawler.type, config, args.priority, refresh
            )
        else:
            taker = _source_that(queue, "uploads", "takes files")
            job_id, _ = await records.create_upload_job(queue.pool, queue.tenant.id, taker.type, files)
        await enqueue(queue.broker, START_TASK, [str(job_id)], args.priority)
        if queue.workers == 0:
            # Then the job runs in the server's (or `bitbd worker`'s) processes, under their settings, e.g. whether
            # crawler.allow_private lets it fetch internal addresses; this command's environment does not apply.
            print(
                "the running bitbd server's workers take this job; their settings apply (crawler.*, ingest.*)",
                file=sys.stderr,
            )
            if urls and "BITBD_CRAWLER__ALLOW_PRIVATE" in os.environ:
                print(
                    "warning: BITBD_CRAWLER__ALLOW_PRIVATE here does not reach those workers; set "
                    "crawler.allow_private where `bitbd serve` / `bitbd worker` runs",
                    file=sys.stderr,
                )
        if args.no_wait:
            print(job_id)
            return 0
        return await _watch(queue.pool, queue.tenant.id, job_id, queue.workers)

    return _with_queue(args, "ingest", ingest)


def crawl_config(args: argparse.Namespace, urls: list[str]) -> dict[str, Any]:
    """The web source's config from the flags; every limit given is sent, 0 included."""
    from bitbd.cli import given

    return {"urls": urls, "include": args.include, "exclude": args.exclude, **given(args, "max_pages", "max_depth")}


def workers_for(args: argparse.Namespace, owner: bool) -> int:
    """--workers as given (0 included: queue only), else 2 when this command owns the data dir, else 0."""
    return int(args.workers) if args.workers is not None else (2 if owner else 0)


def worker_concurrency(args: argparse.Namespace, settings: Settings) -> int:
    """`bitbd worker`'s tasks at once: --concurrency (at least 1), else jobs.workers, else 2."""
    return int(args.concurrency) if args.concurrency is not None else (settings.jobs.workers or 2)


@dataclass(frozen=True)
class Queue:
    """What a queueing command works with: settings, pool, plugins, a started broker, the --tenant tenant, and
    the workers this process runs (0: another process runs the jobs)."""

    settings: Settings
    pool: asyncpg.Pool
    plugins: Plugins
    broker: PriorityStreamBroker
    tenant: tenancy.Tenant
    workers: int


def _with_queue(args: argparse.Namespace, role: str, fn: Callable[[Queue], Awaitable[int]]) -> int:
    """Run `fn` with the database, a started job queue and the tenant of --tenant.

    When this command owns the data dir (no `bitbd serve` on it), nothing else would run its jobs, so it brings
    its own workers unless --workers says otherwise.
    """
    from bitbd.cli import require_database, settings_from

    settings = settings_from(args)
    require_database(args, settings)
    with services(settings, role) as running:
        owner = DataDir(settings.data_dir).holder().get("pid") == os.getpid()
        workers = workers_for(args, owner)

        async def go() -> int:
            async with migrated_pool(running.database, max(4, workers + 2)) as pool:
                tenant = await tenancy.get_tenant(pool, args.tenant)
                plugins = load_plugins(running.plugins.disabled)
                async with running_broker(running, pool, plugins, workers, f"bitbd {role}") as broker:
                    return await fn(Queue(running, pool, plugins, broker, tenant, workers))

        return asyncio.run(go())


async def _watch(pool: asyncpg.Pool, tenant_id: uuid.UUID, job_id: uuid.UUID, workers: int) -> int:
    console = Console(stderr=True)
    started = time.monotonic()
    hinted = False
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[chunks]} chunks, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("queued", total=None, chunks=0, failed=0)
        while True:
            view = (await records.get_job(pool, tenant_id, job_id)).to_json()
            p = view["progress"]
            done = p["fetched"] + p["failed"] + p["skipped"]
            bar.update(
                task,
                description=view["status"],
                completed=done,
                total=max(p["found"], done) or None,
                chunks=p["chunks_embedded"],
                failed=p["failed"],
            )
            if view["status"] in records.TERMINAL:
                break
            if (
                view["status"] == "queued"
                and not hinted
                and time.monotonic() - started > _NO_WORKER_HINT
                and workers == 0
            ):
                console.print(
                    "[yellow]the job is still queued: is a `bitbd serve` or `bitbd worker` running "
                    "against this database and Redis? (or pass --workers 2)[/]"
                )
                hinted = True
            await asyncio.sleep(0.5)
    for error in view["errors"][:10]:
        console.print(f"  [red]{error['item'] or 'job'}[/]: {error['error']}", soft_wrap=True)
    if len(view["errors"]) > 10:
        console.print(f"  … and more: GET /v1/jobs/{job_id}")
    print(
        f"{view['status']}: {p['fetched']} pages ({p['unchanged']} unchanged), {p['chunks_embedded']} chunks "
        f"embedded, {p['failed']} errors, {view['seconds']:.1f}s (job {job_id})"
    )
    return 0 if view["status"] == "succeeded" else 1


def cmd_reembed(args: argparse.Namespace) -> int:
    """`bitbd reembed`: queue a job for each of the tenant's sources and watch them in turn; exits 1 if any
    did not succeed."""

    async def reembed(queue: Queue) -> int:
        jobs = await records.create_rerun_jobs(queue.pool, queue.tenant.id)
        if not jobs:
            print(f"tenant {queue.tenant.name} has no sources to re-embed")
            return 0
        for job_id, _ in jobs:
            await enqueue(queue.broker, START_TASK, [str(job_id)], "normal")
        failed = [await _watch(queue.pool, queue.tenant.id, job_id, queue.workers) for job_id, _ in jobs]
        return 1 if any(failed) else 0

    return _with_queue(args, "reembed", reembed)


def _read_files(paths: list[Path]) -> list[tuple[str, str, bytes]]:
    files = []
    for path in paths:
        if not path.exists():
            raise InvalidRequest(f"{path} does not exist")
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in found:
            ctype = content_type_for(file.name, "")
            if ctype is None:
                if not path.is_dir():
                    raise InvalidRequest(f"{file}: only {', '.join(sorted(ACCEPTED))} files are ingested")
                continue
            files.append((str(file.relative_to(path)) if path.is_dir() else file.name, ctype, file.read_bytes()))
    if not files:
        raise InvalidRequest(f"no {', '.join(sorted(ACCEPTED))} files found in {', '.join(map(str, paths))}")
    return files


def cmd_worker(args: argparse.Namespace) -> int:
    """`bitbd worker`: run ingestion tasks until SIGINT or SIGTERM. Refuses a database whose schema is
    behind this bitbd's: workers never migrate."""
    from bitbd.cli import require_database, settings_from

    settings = settings_from(args)
    require_database(args, settings)
    if args.metrics_port is not None:
        settings = settings.model_copy(
            update={"metrics": settings.metrics.model_copy(update={"worker_port": args.metrics_port})}
        )
    with services(settings, "worker") as running:
        return asyncio.run(_work(running, worker_concurrency(args, settings)))


async def _work(settings: Settings, concurrency: int) -> int:
    from bitbd.db.pool import connect

    conn = await connect(settings.database)
    try:
        have = await current_version(conn)
    finally:
        await conn.close()
    if have < latest_version():
        # Workers never migrate: that is the daemon's (or `bitbd migrate`'s) job, done once, in one place.
        raise ConfigError(
            f"the database schema is at version {have}, this worker needs {latest_version()}; "
            "start `bitbd serve` or run `bitbd migrate` first"
        )
    pool = await open_pool(settings.database.model_copy(update={"pool_max": concurrency + 4}))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        async with (
            running_broker(settings, pool, load_plugins(settings.plugins.disabled), concurrency, "worker"),
            metrics_server(settings) as where,
        ):
            print(f"bitbd worker: {concurrency} task(s) at once{where}; Ctrl-C to stop", file=sys.stderr)
            await stop.wait()
    finally:
        await pool.close()
    return 0


@contextlib.asynccontextmanager
async def metrics_server(settings: Settings) -> AsyncIterator[str]:
    """This worker's own /metrics (the tasks it ran), for Prometheus to scrape next to the server's."""
    cfg = settings.metrics
    if not cfg.worker_port:
        yield ""
        return
    app = web.Application()
    app[settings_key] = settings
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, cfg.worker_host, cfg.worker_port).start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(
            f"cannot serve worker metrics on {cfg.worker_host}:{cfg.worker_port}: {e.strerror}; "
            "give each worker on a machine its own --metrics-port (or 0 for none)"
        ) from None
    try:
        yield f", metrics on http://{cfg.worker_host}:{cfg.worker_port}/metrics"
    finally:
        await runner.cleanup()
