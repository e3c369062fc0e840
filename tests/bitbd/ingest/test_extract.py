"""Extraction: main text without navigation, links, canonical URLs, encodings, PDFs."""

from __future__ import annotations

import pytest

from bitbd.ingest.extract import ExtractError, extract
from tests.site import BREAD, encrypt_pdf, make_pdf, page


def test_html_main_text_links_and_canonical() -> None:
    html = page("Bread", BREAD, ["/", "other.html#x", "mailto:a@b.example"]).replace(
        "</head>", '<link rel="canonical" href="/bread"><script>var secret = 1;</script></head>'
    )
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


SPHINX = """<!DOCTYPE html><html><head><title>functools — Higher-order functions</title></head><body>
<div class="related" role="navigation"><ul><li><a href="index.html">index</a></li><li><a href="x.html">next</a></li>
</ul></div>
<div class="sphinxsidebar"><h3>Table of Contents</h3><ul><li><a href="#a">functools</a></li></ul></div>
<div class="body" role="main">
<section id="module-functools"><h1>functools — Higher-order functions<a class="headerlink" href="#m">¶</a></h1>
<p>The <a href="functools.html"><code>functools</code></a> module is for higher-order functions.</p>
<dl class="py function"><dt class="sig" id="functools.lru_cache"><em class="property">@</em>functools.<span
class="sig-name">lru_cache</span>(<em class="sig-param">maxsize=128</em>)<a class="headerlink" href="#f">¶</a></dt>
<dd><p>Decorator to wrap a function with a memoizing callable that saves up to the <em>maxsize</em> most recent
calls.</p>
<div class="highlight"><pre># the cache is keyed on the arguments
@lru_cache
def count_vowels(sentence):
    return sum(sentence.count(v) for v in 'aeiou')
</pre></div>
<p>Use <code>cache_info()</code> to measure the object_pairs_hook * effectiveness.</p></dd></dl>
</section></div>
<div class="footer">© Copyright 2001-2023, Python Software Foundation.</div></body></html>"""


def test_html_becomes_markdown_with_whole_code_blocks_terms_as_headings_and_no_artefacts() -> None:
    text = extract(SPHINX.encode(), "text/html", "http://docs.example/library/functools.html").text
    assert text.startswith("# functools — Higher-order functions\n"), text
    assert "¶" not in text and "\\_" not in text and "\\*" not in text
    assert "##### @functools.lru_cache(maxsize=128)\n" in text  # the documented term heads its section
    assert (
        "```\n# the cache is keyed on the arguments\n@lru_cache\ndef count_vowels(sentence):\n"
        "    return sum(sentence.count(v) for v in 'aeiou')\n```" in text
    )  # fenced, whole, indentation kept
    assert "The `functools` module is for higher-order functions." in text  # a link's words stay
    assert "Use `cache_info()` to measure the object_pairs_hook * effectiveness." in text
    for chrome in ("Table of Contents", "next", "Copyright"):
        assert chrome not in text, chrome
