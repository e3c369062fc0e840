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
    assert [c.heading_path for c in chunks] == [["Install"], ["Install", "Usage"]] or [
        c.heading_path for c in chunks
    ] == [["Install"]], [c.heading_path for c in chunks]
    paths = {title for c in chunks for title in c.heading_path}
    assert "1. Install and run the server" not in paths and "2. Run the test suite" not in paths
    code = next(c.text for c in chunks if "pip install" in c.text)
    assert "# 1. Install and run the server\npip install -e . && bitbd serve\n# 2. Run the test suite" in code


def test_setext_headings_start_sections() -> None:
    chunks = Chunker(20, 0).split(README)  # too small to absorb a subsection: every section on its own
    assert ["Install", "Usage"] in [c.heading_path for c in chunks]
    assert all("1. Install" not in " ".join(c.heading_path) for c in chunks)


def test_a_document_summary_is_its_first_prose_paragraph_and_gives_every_chunk_context() -> None:
    from bitbd.ingest.chunking import embedding_text, summary, to_chunks

    man = (
        "# git-clean(1) Manual Page\n\n## NAME\n\ngit-clean -\nRemove untracked files from the working tree\n\n"
        "## SYNOPSIS\n\n```\ngit clean [-d] [-f]\n```\n\n## OPTIONS\n\n##### -d\n\nRecurse into untracked "
        "directories too.\n"
    )
    assert summary(man) == "git-clean - Remove untracked files from the working tree"
    assert summary("# Title\n\n- a list\n- only\n\n```\ncode\n```\n") == ""
    long = "Word " * 100
    assert summary(long).endswith("…") and len(summary(long)) <= 201
    chunk = next(c for c in to_chunks(Chunker(300, 40).split(man)) if "Recurse" in c.text)
    seen = embedding_text("git-clean(1)", chunk, summary(man))
    assert seen.startswith(
        "git-clean(1) > git-clean(1) Manual Page > OPTIONS > -d\n"
        "git-clean - Remove untracked files from the working tree\n\n"
    ), seen
    assert embedding_text("", chunk) == "git-clean(1) Manual Page > OPTIONS > -d\n\n" + chunk.text
