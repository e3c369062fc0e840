"""Chunking: sections are cut where a Markdown parser sees headings, never inside code."""

from __future__ import annotations

from bitbd.ingest.chunking import Chunker

README = """# Install

Run these two commands:

```sh
# 1. Install and run the server
pip install -e . && bitbd serve
# 2. Run the test suite
python3 -m pytest
```

Then open the console.

Usage
-----

Ask your documents a question.
"""


def test_a_hash_line_in_fenced_code_is_not_a_heading_and_the_code_stays_whole() -> None:
    chunks = Chunker(300, 40).split(README)
    assert [c.heading_path for c in chunks] == [["Install"], ["Install", "Usage"]] or \
        [c.heading_path for c in chunks] == [["Install"]], [c.heading_path for c in chunks]
    paths = {title for c in chunks for title in c.heading_path}
    assert "1. Install and run the server" not in paths and "2. Run the test suite" not in paths
    code = next(c.text for c in chunks if "pip install" in c.text)
    assert "# 1. Install and run the server\npip install -e . && bitbd serve\n# 2. Run the test suite" in code


def test_setext_headings_start_sections() -> None:
    chunks = Chunker(20, 0).split(README)  # too small to absorb a subsection: every section on its own
    assert ["Install", "Usage"] in [c.heading_path for c in chunks]
    assert all("1. Install" not in " ".join(c.heading_path) for c in chunks)
