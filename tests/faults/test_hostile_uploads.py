"""Hostile uploads: a PDF bomb (a small file whose content stream inflates past 100 MB), a gzip bomb posing as
text, a path-traversal name, a zip archive. Each refused with its reason, nothing
else lost. (Wrong content types, broken, encrypted and empty files: tests/bitbd/jobs/test_jobs.py.)"""

from __future__ import annotations

import gzip
import zlib

import aiohttp
import asyncpg

from tests.ingesting import Client, wait_job
from tests.site import make_pdf


def pdf_bomb(inflated: int = 120_000_000) -> bytes:
    """make_pdf's page, with a FlateDecode content stream that inflates to `inflated` bytes."""
    line = b"BT /F1 12 Tf 72 720 Td (" + b"A" * 100 + b") Tj ET\n"
    stream = zlib.compress(line * (inflated // len(line)), 9)
    pdf = make_pdf(["placeholder"])
    start = pdf.index(b"<< /Length ")
    end = pdf.index(b"endstream", start) + len(b"endstream")
    body = b"<< /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n" + stream + b"\nendstream"
    # The cross-reference offsets after the stream shift; pypdf rebuilds them, as readers do for damaged files.
    return pdf[:start] + body + pdf[end:]


async def test_bombs_and_tricks_are_refused_with_reasons(ingest: tuple[Client, str], pool: asyncpg.Pool) -> None:
    client, key = ingest
    auth = {"Authorization": f"Bearer {key}"}
    form = aiohttp.FormData()
    form.add_field("file", pdf_bomb(), filename="bomb.pdf", content_type="application/pdf")
    form.add_field("file", gzip.compress(b"\0" * 20_000_000), filename="notes.txt", content_type="text/plain")
    form.add_field(
        "file",
        b"Safe notes: the lifts are inspected twice a year by the building's engineer.",
        filename="../../../../etc/cron.d/evil.txt",
    )
    resp = await client.post("/v1/uploads", data=form, headers=auth)
    assert resp.status == 202, await resp.text()
    queued = await resp.json()
    assert queued["files"] == ["bomb.pdf", "notes.txt", "evil.txt"], "a path is reduced to its file name"
    job = await wait_job(client, key, queued["job_id"])
    errors = {e["item"]: e["error"] for e in job["errors"]}
    assert any("bomb.pdf: broken PDF: LimitReachedError" in e for e in errors.values()), errors
    assert any("notes.txt: binary content" in e for e in errors.values()), errors
    urls = [r["url"] for r in await pool.fetch("SELECT url FROM documents")]
    assert urls == ["upload:evil.txt"], urls

    form = aiohttp.FormData()
    form.add_field("file", b"PK\x03\x04" + b"\0" * 100, filename="site.zip", content_type="application/zip")
    resp = await client.post("/v1/uploads", data=form, headers=auth)
    assert resp.status == 415 and "only" in (await resp.json())["error"]["message"]

    assert (await client.get("/readyz")).status == 200
