"""`kill -9` of the zero-setup daemon mid-crawl (in-process workers, embedded PostgreSQL and Redis), then a
restart on the same data dir: the job resumes and finishes; no page lost or indexed twice; nothing stays
`running`."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.servers import STATIC_PAGES
from tests.support.daemon import Daemon, bitbd, clean_env, finished, gone, poll_job


def test_a_killed_daemon_resumes_its_crawl(tmp_path: Path, static_site: str) -> None:
    env = clean_env(BITBD_JOBS__REDELIVERY_SECONDS="5", BITBD_CRAWLER__ALLOW_PRIVATE="true")
    data = tmp_path / "data"
    daemon = Daemon(data, tmp_path, env=env).start()
    again = None
    try:
        assert bitbd("tenant", "create", "acme", "--data-dir", str(data), cwd=tmp_path, env=env).returncode == 0
        key = bitbd("key", "create", "--tenant", "acme", "--data-dir", str(data), cwd=tmp_path, env=env).stdout.strip()
        status, queued = daemon.request(
            "POST", "/v1/sources", {"type": "web", "urls": [static_site], "sitemap": False}, key
        )
        assert status == 202
        poll_job(daemon, key, queued["job_id"], lambda j: j["progress"]["fetched"] >= 5)
        children = daemon.children()
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        assert gone(children), "embedded PostgreSQL and Redis stop with their daemon"

        again = Daemon(data, tmp_path, env=env).start()
        job = poll_job(again, key, queued["job_id"], finished, seconds=180)
        assert job["status"] == "succeeded", job
        assert job["progress"]["fetched"] == STATIC_PAGES + 1 and job["progress"]["failed"] == 0
        _, listing = again.get("/v1/documents?limit=1000", token=key)
        docs = listing["documents"]
        assert len(docs) == STATIC_PAGES + 1 and len({d["url"] for d in docs}) == len(docs), "each page once"
        assert sum(d["chunks"] for d in docs) >= job["progress"]["chunks_embedded"] > 0
        _, jobs = again.get("/v1/jobs", token=key)
        assert [j["status"] for j in jobs["jobs"]] == ["succeeded"], "nothing is left running"
    finally:
        if again is not None:
            again.stop()
