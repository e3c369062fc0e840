"""`bitbd ingest` from the command line, with no server running: it brings its own workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bitbd.embedded.redis import free_port
from tests.site import make_pdf, serve_static, write_static_site
from tests.support.daemon import Daemon, bitbd, clean_env


@pytest.fixture
def site_url(tmp_path: Path) -> Iterator[str]:
    write_static_site(tmp_path / "site", 6, 3)
    port = free_port()
    server = serve_static(tmp_path / "site", port)
    yield f"http://127.0.0.1:{port}/index.html"
    server.kill()
    server.wait()


def test_ingest_urls_then_files_then_mistakes(tmp_path: Path, site_url: str) -> None:
    data = str(tmp_path / "data")
    env = clean_env(BITBD_CRAWLER__ALLOW_PRIVATE="true")
    assert bitbd("tenant", "create", "acme", "--data-dir", data, cwd=tmp_path).returncode == 0

    result = bitbd("ingest", "--tenant", "acme", "--data-dir", data, site_url, cwd=tmp_path, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("succeeded: 7 pages (0 unchanged),"), result.stdout
    assert "7/7" in result.stderr, "the progress bar reached the end"

    short = bitbd("ingest", "--tenant", "acme", "--data-dir", data, site_url, "--refresh", "1m", cwd=tmp_path, env=env)
    assert short.returncode == 1 and "--refresh '1m' is shorter than the server's least, 5m" in short.stderr
    again = bitbd(
        "ingest",
        "--tenant",
        "acme",
        "--data-dir",
        data,
        site_url,
        "--refresh",
        "6h",
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    assert again.stdout.startswith("succeeded: 7 pages (7 unchanged), 0 chunks embedded"), again.stdout
    listed = bitbd("sources", "--tenant", "acme", "--data-dir", data, cwd=tmp_path).stdout.splitlines()
    assert listed[0].split() == [
        "ID",
        "TYPE",
        "URL",
        "REFRESH",
        "LAST",
        "CRAWL",
        "NEXT",
        "CRAWL",
        "LAST",
        "JOB",
        "DOCS",
        "CHUNKS",
    ]
    assert [line.split()[1:4] for line in listed[1:]] == [["web", site_url, "never"], ["web", site_url, "6h"]]
    assert listed[2].split()[-3:-1] == ["succeeded", "7"], "the pages belong to the source that saw them last"
    assert listed[1].split()[-2:] == ["0", "0"], listed

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "faq.md").write_text("# FAQ\n\nReturns are accepted within thirty days with the receipt.\n")
    (docs / "manual.pdf").write_bytes(make_pdf(["Hold the reset button for ten seconds to restore defaults."]))
    (docs / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    files = bitbd("ingest", "--tenant", "acme", "--data-dir", data, str(docs), cwd=tmp_path, timeout=180)
    assert files.returncode == 0, files.stderr
    assert files.stdout.startswith("succeeded: 2 pages"), files.stdout

    unknown = bitbd("ingest", "--tenant", "nobody", "--data-dir", data, site_url, cwd=tmp_path, env=env)
    assert unknown.returncode == 1 and "tenant 'nobody' not found" in unknown.stderr
    mixed = bitbd("ingest", "--tenant", "acme", "--data-dir", data, site_url, str(docs), cwd=tmp_path)
    assert mixed.returncode == 1 and "either URLs or paths" in mixed.stderr
    refused = bitbd("ingest", "--tenant", "acme", "--data-dir", data, site_url, cwd=tmp_path, timeout=180)
    assert refused.returncode == 1, "without allow_private the loopback site is refused"
    assert "private, loopback or link-local" in refused.stderr


def test_a_running_servers_crawl_settings_decide_what_it_may_fetch(tmp_path: Path, site_url: str) -> None:
    """`bitbd ingest` beside a running server: the server's crawler.allow_private applies, not this command's."""
    for allowed in (True, False):
        data = tmp_path / f"data-{allowed}"
        env = clean_env(BITBD_CRAWLER__ALLOW_PRIVATE="true") if allowed else clean_env()
        daemon = Daemon(data, tmp_path, env=env).start()
        try:
            assert bitbd("tenant", "create", "acme", "--data-dir", str(data), cwd=tmp_path).returncode == 0
            result = bitbd(
                "ingest",
                "--tenant",
                "acme",
                "--data-dir",
                str(data),
                site_url,
                "--max-depth",
                "0",
                cwd=tmp_path,
                env=clean_env(),
                timeout=180,
            )
            if allowed:
                assert result.returncode == 0, result.stderr
                assert result.stdout.startswith("succeeded: 1 pages"), result.stdout + result.stderr
            else:
                assert result.returncode == 1 and result.stdout.startswith("failed: 0 pages"), result.stdout
                assert (
                    "BITBD_CRAWLER__ALLOW_PRIVATE=true in the environment of `bitbd serve`"
                    in result.stdout + result.stderr
                ), result.stdout + result.stderr
        finally:
            daemon.stop()
