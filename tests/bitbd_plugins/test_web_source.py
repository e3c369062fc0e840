"""The web source through the API with in-process workers: crawl scope by origin (scheme, host, port), robots.txt
as RFC 9309 says, patterns checked with RE2 at creation, and text PostgreSQL cannot hold (NUL) never reaching it."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bitbd_plugins.sources import sitemap
from tests.ingesting import Client, wait_job
from tests.site import Site, page, serving

TEXT = "<p>Kettles are descaled monthly with citric acid, which keeps them quiet and makes the tea taste better.</p>"


async def crawl(client: Client, key: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    resp = await client.post(
        "/v1/sources", json={"type": "web", "sitemap": False, **body}, headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status == 202, await resp.text()
    job = await wait_job(client, key, (await resp.json())["job_id"])
    return job, {e["item"]: e["error"] for e in job["errors"]}


async def test_a_redirect_to_the_same_host_on_another_port_is_another_site(ingest: tuple[Client, str]) -> None:
    client, key = ingest
    other = Site()
    other.html("/secret", page("Secret", "<p>An internal service on another port of the same host.</p>"))
    async with serving(other.app()) as other_base:
        other_port = other_base.rsplit(":", 1)[1]
        site = Site()
        async with serving(site.app()) as base:
            port = base.rsplit(":", 1)[1]
            site.html("/", page("Home", TEXT, ["/port", "/host", "/spelled", "/link-out"]))
            site.redirects.update(
                {
                    "/port": f"http://127.0.0.1:{other_port}/secret",
                    "/host": f"http://localhost:{port}/same-port-other-name",
                    # The same origin, spelled in fullwidth digits: followed.
                    "/spelled": f"http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/ok",
                }
            )
            site.html("/ok", page("Ok", TEXT.replace("Kettles", "Teapots")))
            site.html("/link-out", page("Out", TEXT, [f"http://127.0.0.1:{other_port}/secret"]))
            job, errors = await crawl(client, key, {"urls": [base + "/"]})
    assert job["status"] == "succeeded", job
    assert "outside the crawl's sites" in errors[base + "/port"], errors
    assert "outside the crawl's sites" in errors[base + "/host"], errors
    assert base + "/spelled" not in errors, errors
    assert other.hits["/secret"] == 0, "neither the redirect nor the link reached the other port"


async def test_robots_txt_as_rfc_9309_says(ingest: tuple[Client, str]) -> None:
    client, key = ingest
    broken, missing, moved, long = Site(), Site(), Site(), Site()
    for site in (broken, missing, moved, long):
        site.html("/", page("Home", TEXT, ["/private/page"]))
        site.html("/private/page", page("Private", TEXT.replace("Kettles", "Boilers")))
    broken.fail_first["/robots.txt"] = 1000  # 5xx: unreachable, so nothing may be fetched (and it is retried)
    # missing: 404, so everything is allowed
    for hop in range(4):  # four redirects to the real file: followed (up to five)
        moved.redirects[f"/robots.txt{'' if hop == 0 else hop}"] = f"/robots.txt{hop + 1}"
    moved.pages["/robots.txt4"] = ("text/plain", b"User-agent: *\nDisallow: /private/\n")
    # Only the first 500 KiB are parsed: a rule after them does not count.
    long.pages["/robots.txt"] = (
        "text/plain",
        b"User-agent: *\nDisallow: /private/\n" + b"#" * 600_000 + b"\nDisallow: /\n",
    )
    async with (
        serving(broken.app()) as b,
        serving(missing.app()) as m,
        serving(moved.app()) as r,
        serving(long.app()) as lg,
    ):
        job_b, errors_b = await crawl(client, key, {"urls": [b + "/"]})
        job_m, errors_m = await crawl(client, key, {"urls": [m + "/"]})
        _, errors_r = await crawl(client, key, {"urls": [r + "/"]})
        _, errors_l = await crawl(client, key, {"urls": [lg + "/"]})
    assert job_b["status"] == "failed" and broken.hits["/"] == 0, (job_b, broken.hits)
    assert "robots.txt could not be read (HTTP 500" in errors_b[b + "/"] and "after 3 attempts" in errors_b[b + "/"]
    assert broken.hits["/robots.txt"] >= 1
    assert job_m["status"] == "succeeded" and not errors_m and missing.hits["/private/page"] == 1, errors_m
    assert errors_r == {r + "/private/page": "disallowed by robots.txt"} and moved.hits["/private/page"] == 0
    assert errors_l == {lg + "/private/page": "disallowed by robots.txt"} and long.hits["/"] == 1


async def test_patterns_are_checked_with_re2_when_the_source_is_created(ingest: tuple[Client, str]) -> None:
    client, key = ingest
    auth = {"Authorization": f"Bearer {key}"}
    for config, expected in [
        ({"include": ["(?=docs)"]}, "include[0]: '(?=docs)' is not a valid regular expression"),
        ({"exclude": ["a", "(\\d)\\1"]}, "exclude[1]"),
        ({"include": ["x"] * 51}, "at most 50 patterns"),
        ({"include": ["a" * 1001]}, "at most 1000 characters"),
    ]:
        resp = await client.post(
            "/v1/sources", json={"type": "web", "urls": ["http://docs.example/"], **config}, headers=auth
        )
        assert resp.status == 400, config
        assert expected in (await resp.json())["error"]["message"], config
    # A pattern that backtracks exponentially in Python's re is fine in RE2.
    resp = await client.post(
        "/v1/sources",
        json={"type": "web", "urls": ["http://docs.example/"], "include": ["(a+)+b"], "sitemap": False},
        headers=auth,
    )
    assert resp.status == 202, await resp.text()


@pytest.mark.parametrize("offset", [0, 100, 8191, 8192, 8200, 20_000])
async def test_nul_bytes_never_reach_postgresql(ingest: tuple[Client, str], pool: asyncpg.Pool, offset: int) -> None:
    client, key = ingest
    filler = "Notes on kettles and descaling them with citric acid, monthly. " * 400  # ~25 KB
    site = Site()
    site.html("/", page("Home", TEXT, ["/plain", "/html", "/md", "/title", "/surrogate"]))
    plain = filler.encode()
    site.pages["/plain"] = ("text/plain", plain[:offset] + b"\x00" + plain[offset:])
    html = page("Html", f"<p>{filler}</p>").encode()
    site.pages["/html"] = ("text/html", html[:offset] + b"\x00" + html[offset:])
    md = f"# Kettle notes\n\n{filler}\n\n## Des\x00caling\n\nCitric acid, monthly.\n".encode()
    site.pages["/md"] = ("text/markdown", md[:offset] + b"\x00" + md[offset:])
    site.pages["/title"] = ("text/html", page("Ti&#0;tle &#xd800;x", TEXT).encode())
    site.pages["/surrogate"] = (
        "text/plain; charset=utf-8",
        b"Boilers \xed\xa0\x80 are serviced every autumn, by an engineer who checks the flue and the pressure.",
    )
    async with serving(site.app()) as base:
        job, errors = await crawl(client, key, {"urls": [base + "/"]})
    assert job["status"] == "succeeded", job
    assert not any("internal" in e for e in errors.values()), errors
    for path in ("/plain", "/html", "/md"):  # stored without the NUL, or refused as binary (a NUL early on)
        error = errors.get(base + path)
        assert error is None or (offset < 8192 and "binary content" in error), (path, error)
    assert base + "/title" not in errors and base + "/surrogate" not in errors, errors
    rows = await pool.fetch(
        "SELECT d.url, d.title, c.text, c.heading_path FROM documents d JOIN chunks c ON c.document_id = d.id"
    )
    assert {r["url"] for r in rows} >= {base + "/", base + "/title", base + "/surrogate"}
    if offset >= 8192:
        assert {base + p for p in ("/plain", "/html", "/md")} <= {r["url"] for r in rows}
    for row in rows:
        assert "\x00" not in row["title"] + row["text"] + "".join(row["heading_path"]), row["url"]


def test_a_sitemap_lastmod_is_read_as_the_latest_moment_it_can_mean() -> None:
    body = (
        b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>https://a.example/day</loc><lastmod>2026-12-01</lastmod></url>"
        b"<url><loc>https://a.example/time</loc><lastmod>2026-12-01T10:30:00+02:00</lastmod></url>"
        b"<url><loc>https://a.example/zulu</loc><lastmod>2026-12-01T10:30:00Z</lastmod></url>"
        b"<url><loc>https://a.example/minute</loc><lastmod>2026-12-01T10:30Z</lastmod></url>"
        b"<url><loc>https://a.example/fraction</loc><lastmod>2026-12-01T10:30:00.25Z</lastmod></url>"
        b"<url><loc>https://a.example/no-zone</loc><lastmod>2026-12-01T10:30:00</lastmod></url>"
        b"<url><loc>https://a.example/month</loc><lastmod>2026-12</lastmod></url>"
        b"<url><loc>https://a.example/none</loc></url></urlset>"
    )
    parsed = sitemap.parse(body)
    assert parsed is not None and len(parsed.locs) == 8
    assert {url.rsplit("/", 1)[1]: moment.isoformat() for url, moment in parsed.lastmod.items()} == {
        "day": "2026-12-02T14:00:00+00:00",  # the end of the day wherever the site is
        "time": "2026-12-01T10:30:01+02:00",  # the end of that second
        "zulu": "2026-12-01T10:30:01+00:00",
        "minute": "2026-12-01T10:31:00+00:00",
        "fraction": "2026-12-01T10:30:00.250000+00:00",
    }, "a time without a zone, a month alone or no lastmod at all: always fetched"
