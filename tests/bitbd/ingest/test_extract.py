"""Extraction: main text without navigation, links, canonical URLs, encodings, PDFs."""

from __future__ import annotations

import pytest

from bitbd.ingest.extract import ExtractError, extract
from tests.site import BREAD, encrypt_pdf, make_pdf, page


def test_html_main_text_links_and_canonical() -> None:
    html = page("Bread", BREAD, ["/", "other.html#x", "mailto:a@b.example"]).replace(
        "</head>", '<link rel="canonical" href="/bread"><script>var secret = 1;</script></head>')
    doc = extract(html.encode(), "text/html", "http://site.example/dir/page.html")
    assert doc.title == "Bread"
    assert "## Starter" in doc.text and "wild yeast" in doc.text
    assert "Example Corp footer" not in doc.text and "var secret" not in doc.text
    assert doc.links == ["http://site.example/", "http://site.example/dir/other.html"]
    assert doc.canonical == "http://site.example/bread"


def test_encodings() -> None:
    text = "Caf\u00e9 cr\u00e8me, tr\u00e8s chaud, servi avec du lait mousseux comme \u00e0 Paris."
    assert "Caf\u00e9" in extract(text.encode("latin-1"), "text/plain", "u", charset="latin-1").text
    assert "Caf\u00e9" in extract(text.encode("latin-1"), "text/plain", "u", charset="utf-8").text  # mislabelled
    with pytest.raises(ExtractError, match="binary"):
        extract(b"\x00\x01\x02" * 100, "text/plain", "u")


def test_pdfs() -> None:
    pdf = make_pdf(["Glaciers carve U-shaped valleys as they move."])
    assert "U-shaped valleys" in extract(pdf, "application/pdf", "http://x/g.pdf").text
    with pytest.raises(ExtractError, match="encrypted"):
        extract(encrypt_pdf(pdf, "pw"), "application/pdf", "http://x/g.pdf")
    with pytest.raises(ExtractError, match="broken PDF"):
        extract(b"%PDF-1.4 nonsense", "application/pdf", "http://x/g.pdf")
    with pytest.raises(ExtractError, match="empty"):
        extract(b"  \n", "application/pdf", "http://x/g.pdf")
