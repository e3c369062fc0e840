"""The extractive generator's stems: Snowball's English algorithm, run by PyStemmer's C build."""

from __future__ import annotations

import re

from snowballstemmer.english_stemmer import EnglishStemmer

from bitbd_plugins.generators import sentences


def test_stems_come_from_the_c_stemmer_and_equal_the_pure_python_ones() -> None:
    # snowballstemmer hands out PyStemmer's stemmer when it is installed: 2-3x faster sentence analysis of chunks
    # an answer has not seen before (perf/RESULTS.md); a missing dependency would fall back silently.
    assert type(sentences._STEMMER).__module__ == "Stemmer"
    text = (
        "Returns the running processes' exit codes; connection pooling, generously configured caches, "
        "reading files line by line, argparse's subcommands, happily retried requests"
    )
    words = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z']*", text)}
    python = EnglishStemmer()
    assert {w: sentences._stem(w) for w in words} == {w: python.stemWord(w) for w in words}
    assert sentences.terms("running processes") == frozenset({"run", "process"})
