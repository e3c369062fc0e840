"""Extraction in a child process: the result comes back, a stuck extraction is stopped, the pool recovers."""

from __future__ import annotations

import asyncio

import pytest

from bitbd.ingest.extract import ExtractError
from bitbd.ingest.offload import extract_off_loop
from tests.site import BREAD, page


async def test_extraction_runs_in_a_child_and_is_bounded_in_time() -> None:
    html = page("Bread", BREAD).encode()
    doc = await extract_off_loop(html, "text/html", "http://site.example/bread")
    assert doc.title == "Bread" and "wild yeast" in doc.text
    big = page("Big", "<p>" + "many words of text " * 400_000 + "</p>").encode()
    with pytest.raises(ExtractError, match="took more than 0s"):
        await extract_off_loop(big, "text/html", "http://site.example/big", seconds=0.01)
    # The stuck child was killed; the next documents get a new one, several at once.
    docs = await asyncio.gather(*(extract_off_loop(html, "text/html", f"http://site.example/{i}") for i in range(4)))
    assert all(d.title == "Bread" for d in docs)
    with pytest.raises(ExtractError, match="binary"):
        await extract_off_loop(b"\x00\x01" * 100, "text/plain", "http://site.example/x")
