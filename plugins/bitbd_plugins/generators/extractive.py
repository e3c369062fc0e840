"""The `extractive` answer generator: no LLM. The answer is made of the passages' own best-supported sentences,
each followed by the marker of the passage it comes from, so every word of it is grounded and cited."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import snowballstemmer
from pydantic import BaseModel, ConfigDict, Field

from bitbd.hookspecs import hookimpl
from bitbd.interfaces import AnswerGenerator, Passage, Turn
from bitbd.settings import plugin_settings

# Words that say nothing about what a question is about (NLTK's English list, shortened to what questions use).
_STOP = frozenset("""a about above after again all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her
here hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or
other our out over own same she should so some such than that the their them then there these they this those
through to too under until up very was we were what when where which while who whom why will with would you your
get use using tell know want need please explain show""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:[.'-][A-Za-z0-9_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9`])")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_ENDED = re.compile(r"[.!?][\"')\]]*$")
_MIN_CHARS, _MAX_CHARS = 25, 500


class ExtractiveConfig(BaseModel):
    """`[plugins.extractive]`."""

    model_config = ConfigDict(extra="forbid")
    max_sentences: int = Field(3, ge=1, le=10)
    """Sentences in an answer at most."""
    max_chars: int = Field(700, ge=100)
    """Characters in an answer at most (whole sentences only)."""


@dataclass(frozen=True)
class _Sentence:
    n: int  # passage number
    rank: int  # passage order, 0 = best
    position: int
    text: str
    terms: frozenset[str]


class ExtractiveGenerator(AnswerGenerator):
    name = "extractive"

    def __init__(self, config: dict[str, Any], settings: Any) -> None:
        super().__init__(config, settings)
        self.options = plugin_settings(ExtractiveConfig, config, "extractive")

    async def generate(self, question: str, passages: Sequence[Passage], history: Sequence[Turn] = ()
                       ) -> AsyncIterator[str]:
        chosen = self.choose(question, passages)
        for i, sentence in enumerate(chosen):
            words = sentence.text.split(" ")
            for start in range(0, len(words), 6):  # a few words per piece, as a model would stream them
                yield ("" if i == 0 and start == 0 else " ") + " ".join(words[start:start + 6])
            yield f" [{sentence.n}]"

    def choose(self, question: str, passages: Sequence[Passage]) -> list[_Sentence]:
        """The best-supported sentences: the best first, then the others in the order of their passages."""
        sentences = [s for rank, p in enumerate(passages) for s in self._sentences(p, rank)]
        if not sentences:
            return []
        asked = self._terms(question)
        df: dict[str, int] = {}
        for s in sentences:
            for term in s.terms:
                df[term] = df.get(term, 0) + 1
        total = len(sentences)

        def score(s: _Sentence) -> float:
            overlap = asked & s.terms
            lexical = sum(math.log(1 + total / df[t]) for t in overlap) / math.sqrt(max(len(s.terms), 4))
            return lexical + 0.3 / (1 + s.rank)  # ties go to the better-ranked passage

        scored = sorted(((score(s), s) for s in sentences if asked & s.terms), key=lambda x: -x[0])
        if not scored:  # retrieval found the passage by meaning, not words: its opening says what it is about
            return [min(sentences, key=lambda s: (s.rank, s.position))]
        best = scored[0][0]
        picked: list[_Sentence] = []
        length = 0
        per_passage: dict[int, int] = {}
        for value, s in scored:
            if value < 0.5 * best or len(picked) >= self.options.max_sentences:
                break
            if length + len(s.text) > self.options.max_chars or per_passage.get(s.n, 0) >= 2:
                continue
            picked.append(s)
            length += len(s.text)
            per_passage[s.n] = per_passage.get(s.n, 0) + 1
        # The best sentence leads; the others follow in the order of their passages, as the documents tell it.
        return picked[:1] + sorted(picked[1:], key=lambda s: (s.rank, s.position))

    @staticmethod
    def _terms(text: str) -> frozenset[str]:
        return terms(text)

    @staticmethod
    def _sentences(passage: Passage, rank: int) -> list[_Sentence]:
        return [_Sentence(passage.n, rank, position, text, words)
                for position, (text, words) in enumerate(analysed(passage.hit.text))]


# Stemming is pure Python and was half of the server's CPU per answer under load (py-spy, perf/RESULTS.md):
# words and popular chunks recur, so both are remembered (bounded; the event loop is the only caller). An analysed
# passage costs ~10 KB per chunk it joins (measured with tracemalloc on the Python docs): 1,024 of them keep the
# popular ones in ~10-30 MB, where 4,096 could grow to ~40-120 MB.
_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=50_000)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def terms(text: str) -> frozenset[str]:
    """The stems of a text's content words."""
    return frozenset(_stem(w) for w in (w.lower() for w in _WORD.findall(text)) if w not in _STOP and len(w) > 1)


@lru_cache(maxsize=1024)
def analysed(chunk: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """A chunk's sentences with their terms."""
    return tuple((sentence, terms(sentence)) for sentence in split_sentences(chunk))


def split_sentences(markdown: str) -> list[str]:
    """Prose sentences of a chunk: wrapped lines joined into paragraphs; headings, code blocks, tables and fragments
    left out; Markdown marks removed; each sentence once."""
    sentences: list[str] = []
    for paragraph in _paragraphs(markdown):
        text = _EMPHASIS.sub("", _LINK.sub(r"\1", paragraph))
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            ended = _ENDED.search(sentence) is not None
            # An unterminated line can stand alone (a list item), unless it leads into what follows ("so that:").
            last = sentence.rstrip(":;,").rsplit(" ", 1)[-1].lower()
            dangling = sentence.endswith((":", ",", ";")) or last in _STOP
            if _MIN_CHARS <= len(sentence) <= _MAX_CHARS and " " in sentence and (
                    ended or (len(sentence) >= 40 and not dangling)):
                sentence = sentence if ended else sentence + "."
                if sentence not in sentences:
                    sentences.append(sentence)
    return sentences


def _paragraphs(markdown: str) -> list[str]:
    """Runs of prose lines; a blank line, heading, list item, table row or code block ends one."""
    paragraphs: list[str] = []
    current: list[str] = []
    in_code = False

    def flush() -> None:
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for raw in markdown.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            flush()
            in_code = not in_code
            continue
        if in_code or not line or line.startswith(("#", "|", ">>>", "$ ")) or raw.startswith("    "):
            flush()
            continue
        item = re.match(r"^([-*+]|\d+[.)])\s+", line)
        if item:
            flush()
            line = line[item.end():]
        current.append(line)
    flush()
    return paragraphs


@hookimpl
def register_generators() -> list[type[AnswerGenerator]]:
    return [ExtractiveGenerator]
