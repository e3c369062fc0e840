"""`kill -9` of a `bitbd worker` mid-crawl: another worker finishes the job; nothing lost, nothing doubled."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.servers import STATIC_PAGES as PAGES
from tests.support.daemon import Daemon, bitbd, clean_env, finished, poll_job, start_worker


def test_a_killed_worker_loses_nothing(tmp_path: Path, static_site: str) -> None:
    env = clean_env(BITBD_JOBS__WORKERS="0", BITBD_JOBS__REDELIVERY_SECONDS="5", BITBD_CRAWLER__ALLOW_PRIVATE="true")
    daemon = Daemon(tmp_path / "data", tmp_path, env=env).start()
    first = second = None
    try:
        assert bitbd("tenant", "create", "acme", "--data-dir", str(daemon.data_dir), cwd=tmp_path).returncode == 0
        key = bitbd(
            "key", "create", "--tenant", "acme", "--data-dir", str(daemon.data_dir), cwd=tmp_path
        ).stdout.strip()
        first = start_worker(daemon.data_dir, tmp_path / "worker1.log", env)
        status, queued = daemon.request(
            "POST", "/v1/sources", {"type": "web", "urls": [static_site], "sitemap": False}, key
        )
        assert status == 202
        poll_job(daemon, key, queued["job_id"], lambda j: j["progress"]["fetched"] >= 5)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = poll_job(daemon, key, queued["job_id"], lambda j: True)["progress"]
        assert killed_at["fetched"] < PAGES + 1, "the kill happened mid-crawl"

        second = start_worker(daemon.data_dir, tmp_path / "worker2.log", env)
        job = poll_job(daemon, key, queued["job_id"], finished)
        assert job["status"] == "succeeded", job
        assert job["progress"]["fetched"] == PAGES + 1 and job["progress"]["failed"] == 0
        _, listing = daemon.get("/v1/documents?limit=1000", token=key)
        docs = listing["documents"]
        assert len(docs) == PAGES + 1, "every page is indexed once"
        assert sum(d["chunks"] for d in docs) == job["progress"]["chunks_embedded"]
        assert all(d["chunks"] > 0 for d in docs)
        assert "task redelivered" in (tmp_path / "worker2.log").read_text(), (
            "the tasks the killed worker held were given to the new one"
        )
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                worker.terminate()
                worker.wait(30)
        daemon.stop()
