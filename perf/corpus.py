"""Shared by the benchmarks: serve a Debian documentation site on loopback, and crawl it into a tenant."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bitbd import tenancy
from bitbd.errors import NotFound
from bitbd.jobs import records
from bitbd.jobs.engine import START_TASK
from bitbd.jobs.runtime import enqueue
from bitbd.jobs.worker import running_broker
from bitbd.plugins import Plugins
from bitbd.settings import Settings

PYDOCS = Path("/usr/share/doc/python3.11/html")


KEPT_DATA_DIR = Path("/tmp/bitbd-perf-pydocs")  # the crawled corpus, shared by bench_retrieval and bench_chat


def scratch_or(data_dir: Path | None, quick: bool, stack: contextlib.ExitStack) -> Path:
    """The data dir asked for; else a temporary one for a --quick run; else the kept corpus."""
    if data_dir is not None:
        return data_dir
    return Path(stack.enter_context(tempfile.TemporaryDirectory())) if quick else KEPT_DATA_DIR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(site: Path) -> Iterator[str]:
    """`python -m http.server` on a free loopback port; yields its base URL."""
    if not (site / "index.html").is_file():
        sys.exit(f"{site}/index.html not found: apt-get install python3.11-doc, or pass --site")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


async def run_job(pool: asyncpg.Pool, broker: Any, tenant_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any]:
    """Queue a job and wait for it to end; returns its final view."""
    await enqueue(broker, START_TASK, [str(job_id)], "normal")
    for _ in range(36_000):  # two hours at most
        view = (await records.get_job(pool, tenant_id, job_id)).to_json()
        if view["status"] not in ("queued", "running"):
            return view
        await asyncio.sleep(0.2)
    raise TimeoutError(f"job {job_id} still running after two hours")


async def ensure_crawled(
    settings: Settings, pool: asyncpg.Pool, plugins: Plugins, name: str, config: dict[str, Any]
) -> tenancy.Tenant:
    """The tenant `name`, crawled with the web source `config` unless it already has documents."""
    try:
        tenant = await tenancy.get_tenant(pool, name)
        if await pool.fetchval("SELECT count(*) FROM chunks WHERE tenant_id = $1", tenant.id):
            return tenant
    except NotFound:
        tenant = await tenancy.create_tenant(pool, name)
    async with running_broker(settings, pool, plugins, 2) as broker:
        config = plugins.sources()["web"].validate(config, settings)
        job_id, _ = await records.create_job(pool, tenant.id, "web", config, "normal")
        started = time.perf_counter()
        view = await run_job(pool, broker, tenant.id, job_id)
        print(
            f"crawled {view['progress']['fetched']} pages, {view['progress']['chunks_embedded']} chunks in "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    return tenant
