"""Scale-out as docs/deploy.md describes it: the daemon and two `bitbd worker` processes, each its own process,
against one standalone PostgreSQL (with pgvector) and one standalone Redis (Debian's redis-server), both started
here as an operator would run them, reached over TCP with passwords. The daemon runs no jobs itself."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from bitbd.embedded.redis import free_port
from tests.servers import STATIC_PAGES, StandalonePostgres, StandaloneRedis
from tests.support.daemon import Daemon, bitbd, clean_env, finished, poll_job, start_worker


def tasks_run(metrics_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return int(sum(float(v) for v in re.findall(r"^bitbd_queue_jobs_total\{[^}]*\} ([0-9.]+)$", text, re.M)))


def test_daemon_and_two_workers_share_one_postgres_and_one_redis(
    tmp_path: Path, static_site: str, standalone_postgres: StandalonePostgres, standalone_redis: StandaloneRedis
) -> None:
    env = clean_env(
        BITBD_DATABASE__DSN=standalone_postgres.dsn,
        BITBD_REDIS__URL=standalone_redis.url,
        BITBD_JOBS__WORKERS="0",
        BITBD_CRAWLER__ALLOW_PRIVATE="true",
    )
    # Each machine has its own data dir (the admin token lives there); nothing embedded starts in any of them.
    daemon = Daemon(tmp_path / "daemon", tmp_path, env=env).start()
    ports = [free_port(), free_port()]
    workers = [
        start_worker(tmp_path / f"machine{i}", tmp_path / f"worker{i}.log", env, "--metrics-port", str(port))
        for i, port in enumerate(ports)
    ]
    try:
        assert not (tmp_path / "daemon" / "postgres").exists() and not (tmp_path / "daemon" / "redis").exists()
        assert bitbd("tenant", "create", "acme", cwd=tmp_path, env=env).returncode == 0
        key = bitbd("key", "create", "--tenant", "acme", cwd=tmp_path, env=env).stdout.strip()
        status, queued = daemon.request(
            "POST", "/v1/sources", {"type": "web", "urls": [static_site], "sitemap": False}, key
        )
        assert status == 202, queued
        job = poll_job(daemon, key, queued["job_id"], finished, seconds=240)
        assert job["status"] == "succeeded", job
        assert job["progress"]["fetched"] == STATIC_PAGES + 1 and job["progress"]["failed"] == 0
        ran = [tasks_run(port) for port in ports]
        assert all(n > 0 for n in ran), f"both workers took tasks: {ran}"
        assert sum(ran) >= STATIC_PAGES + 2, f"every page and the start ran on a worker: {ran}"
        _, found = daemon.request("POST", "/v1/search", {"query": "where was record 30 found"}, key)
        assert found["hits"], "the daemon answers from what the workers stored"
        _, ready = daemon.get("/readyz")
        assert ready["status"] == "ready"
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
        daemon.stop()
