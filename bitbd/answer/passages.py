"""The numbered passages an answer is written from, and the `[n]` markers that cite them.

A generator (a language model above all) may write markers of sources it was never given: `[7]` when there are
three. `Markers` removes them from the stream as it goes, so every marker a client receives refers to a source
of `citations` (docs/protocol.md), and `citations()` lists those sources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from bitbd.interfaces import Hit, Passage

_CITATION = re.compile(r"\[(\d{1,3})\]")
_MARKER_PREFIX = re.compile(r"\[\d{0,3}\]?")  # what may still grow into a marker at the end of the text
_SNIPPET = 240


def by_page(hits: Sequence[Hit]) -> list[Passage]:
    """One numbered passage per page, in the order of its best chunk: a page cited twice is one source."""
    pages: dict[str, list[Hit]] = {}
    for hit in hits:
        pages.setdefault(hit.url, []).append(hit)
    return [
        Passage(n, replace(group[0], text="\n\n".join(h.text for h in group)), tuple(group))
        for n, group in enumerate(pages.values(), start=1)
    ]


def citations(answer: str, passages: Sequence[Passage], dont_know: str) -> list[dict[str, Any]]:
    """The passages the answer cites as [n] (all of them if it cites none), in order of n."""
    if answer.strip() == dont_know.strip():
        return []
    by_n = {p.n: p for p in passages}
    cited = sorted({int(n) for n in _CITATION.findall(answer)} & by_n.keys())
    chosen = [by_n[n] for n in cited] if cited else list(passages)
    return [{"n": p.n, "url": p.hit.url, "title": p.hit.title, "snippet": snippet(p.hit.text)} for p in chosen]


def snippet(text: str) -> str:
    """A citation's preview of a passage: its text without headings, on one line, cut at a word to at most
    240 characters (then ending in an ellipsis)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    flat = " ".join(" ".join(lines).split())
    return flat if len(flat) <= _SNIPPET else flat[:_SNIPPET].rsplit(" ", 1)[0] + "…"


class Markers:
    """Removes, from a stream of answer text, the markers `[n]` whose `n` is not one of `numbers`.

    Feed it the pieces in order; it returns what may be passed on so far, holding back only what it cannot decide
    yet: a `[` with up to three digits, the character after a marker (`[4](url)` is a link, not a marker) and
    trailing spaces (so "as said [7]." becomes "as said."). Code is left alone: inline code spans and fenced
    blocks (`a[7]` in code is an index). A `[7]` right after a word or `)` is not a marker either.
    """

    def __init__(self, numbers: Iterable[int]) -> None:
        self.numbers = frozenset(numbers)
        self.removed = 0  # markers taken out
        self._held = ""
        self._prev = "\n"  # the last character passed on (or dropped marker's predecessor)
        self._line_start = True  # only spaces so far on the current line
        self._span = 0  # length of the backtick run that opened the current code span; 0: not in one
        self._fence = ""  # the fence that opened the current code block; "": not in one

    def feed(self, piece: str) -> str:
        """Take the next piece; returns the text that may be passed on now, unknown markers removed."""
        return self._run(self._held + piece, final=False)

    def close(self) -> str:
        """The stream ended: returns the rest of the held-back text, unknown markers removed."""
        return self._run(self._held, final=True)

    def _run(self, text: str, final: bool) -> str:
        self._held = ""
        out: list[str] = []
        i = 0
        while i < len(text):
            c = text[i]
            if c in "`~" and (c == "`" or self._line_start):
                run = len(text) - i - len(text[i:].lstrip(c))
                if i + run == len(text) and not final:
                    break  # the run may go on in the next piece
                self._code(c * run)
                out.append(c * run)
                self._step(c)
                i += run
                continue
            if c == "[" and not self._span and not self._fence and not (self._prev.isalnum() or self._prev in "_)"):
                match = _CITATION.match(text, i)
                if match is None or (match.end() == len(text) and not final):
                    if not final and _MARKER_PREFIX.fullmatch(text, i):
                        break  # "[1" may still become "[12]"
                elif int(match.group(1)) not in self.numbers and text[match.end() : match.end() + 1] != "(":
                    self.removed += 1
                    i = match.end()
                    nxt = text[i : i + 1]
                    if not nxt or not nxt.isalnum():  # "said [7]." -> "said."; "said [7] and" -> "said and"
                        while out and out[-1] == " ":
                            out.pop()
                    continue
            out.append(c)
            self._step(c)
            i += 1
        passed = "".join(out)
        if final:
            return passed + text[i:]
        kept = passed.rstrip(" ")  # trailing spaces wait: a marker to remove may follow them
        self._held = passed[len(kept) :] + text[i:]
        return kept

    def _step(self, c: str) -> None:
        self._prev = c
        if c == "\n":
            self._line_start = True
            self._span = 0  # a code span does not cross lines here: never leave one open by mistake
        elif c != " ":
            self._line_start = False

    def _code(self, run: str) -> None:
        """A run of backticks (or tildes at a line's start): opens or closes a code span or a fenced block."""
        if self._fence:
            if self._line_start and run[0] == self._fence[0] and len(run) >= len(self._fence):
                self._fence = ""
        elif self._line_start and len(run) >= 3:
            self._fence = run
        elif run[0] == "`":
            self._span = 0 if self._span == len(run) else (self._span or len(run))
