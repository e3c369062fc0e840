"""The `extractive` answer generator: no LLM. The answer is made of the passages' own sentences that answer the
question, each followed by the marker of the passage it comes from, so every word of it is grounded and cited.

Sentences are ranked by meaning (the cosine of their embedding with the question's, with the tenant's own
embedding model) and by the distinctive words they share with the question; the lead sentence of a section and
sentences that say what something does or how to do it count a little more. The best sentence leads, with its
neighbour when that continues it; then the next best, while they are nearly as good.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bitbd.plugin_api import AnswerGenerator, Passage, PluginContext, Turn, Vector, hookimpl
from bitbd_plugins.generators.sentences import Sentence, analysed, split_sentences, terms

__all__ = ["ExtractiveConfig", "ExtractiveGenerator", "split_sentences", "terms"]

Embed = Callable[[Sequence[str]], Awaitable[list[Vector]]]
_BELOW_BEST = 0.25  # a sentence this much below the best is not said
_VECTORS_KEPT = 8192  # sentence embeddings remembered (~13 MB at 384 dimensions): popular passages recur
# A sentence that refers back to the one before it ("It…", "This…") is not read alone.
_BACK = re.compile(
    r"^(?:It|Its|This|That|These|Those|They|Their|Such|Here|There|Otherwise|However|Also|Then|"
    r"In this case|For example|For instance)\b"
)
# Sentences that say what something is or does, or how to do something.
_DEFINES = re.compile(
    r"^(?:To |Use |Call |Run |You can |You may |Pass |Set |Add |If you want)|"
    r"^\S+(?: \S+){0,5} (?:returns?|is an?|is the|are|provides?|creates?|means|lets|allows|"
    r"makes?|converts?|writes?|reads?|prints?|records?|removes?|shows?)\b"
)


_CHANGELOG = re.compile(
    r"what'?s[ _-]?new|whatsnew|changelog|change[ _-]log|release[ _-]notes|\bnews\b|"
    r"\bhistory\b",
    re.IGNORECASE,
)


class ExtractiveConfig(BaseModel):
    """`[plugins.extractive]`."""

    model_config = ConfigDict(extra="forbid")
    max_sentences: int = Field(3, ge=1, le=10)
    """Sentences in an answer at most."""
    max_chars: int = Field(700, ge=100)
    """Characters in an answer at most (whole sentences only)."""
    compare: int = Field(16, ge=0, le=64)
    """Sentences compared with the question by meaning per answer, the best by words, heading and rank; each
    costs an embedding the first time it is seen (~11 ms on 2 cores). 32 answered one question more in 60 on
    the Python docs at twice the time; 0: by words only."""


@dataclass(frozen=True)
class _Candidate:
    n: int  # passage number
    part: int  # which of the passage's chunks
    rank: int  # the chunk's place among all chunks found, 0 = best
    sentence: Sentence
    changelog: bool  # from a release-notes page
    prepared: Mapping[str, Vector] = field(compare=False, repr=False)  # its chunk's, made by `prepare()`

    @property
    def text(self) -> str:
        return self.sentence.text

    @property
    def place(self) -> tuple[int, int, int]:
        return self.n, self.part, self.sentence.position


class ExtractiveGenerator(AnswerGenerator):
    """Answers without a language model, from the passages' own sentences, each cited; with
    no backend to fail, it is the default `answer.fallback` for a generator that is unavailable."""

    name = "extractive"

    def __init__(self, ctx: PluginContext) -> None:
        super().__init__(ctx)
        self.options = ctx.options(ExtractiveConfig)
        self._embed: Embed | None = None
        self._vectors: OrderedDict[str, Vector] = OrderedDict()

    @classmethod
    def prepare(cls, text: str) -> list[str]:
        """Each sentence of a chunk as it is compared with a question (under its heading): embedded at ingestion,
        so an answer embeds only the sentences of chunks stored before that."""
        return [s.context for s in analysed(text)]

    def use_embedder(self, embed: Embed) -> None:
        """Keep the embedding function, to compare sentences with the question by
        meaning."""
        self._embed = embed

    async def generate(
        self, question: str, passages: Sequence[Passage], history: Sequence[Turn] = ()
    ) -> AsyncIterator[str]:
        """Stream the chosen sentences a few words a piece, each followed by its `[n]`;
        a documented term's name goes before its sentence, the code a sentence introduces after it."""
        chosen = await self.choose(question, passages)
        gap = ""
        for candidate in chosen:
            if candidate.sentence.subject:  # "Deserialize fp to a Python object" says what json.load() does
                yield f"{gap}`{candidate.sentence.subject}`:"
                gap = " "
            words = candidate.text.split(" ")
            for start in range(0, len(words), 6):  # a few words per piece, as a model would stream them
                yield (gap if start == 0 else " ") + " ".join(words[start : start + 6])
            yield f" [{candidate.n}]"
            gap = " "
            if candidate.sentence.code:  # the code a lead-in sentence introduces, whole, as its own block
                yield f"\n\n```\n{candidate.sentence.code}\n```\n"
                gap = "\n"

    async def choose(self, question: str, passages: Sequence[Passage]) -> list[_Candidate]:
        """The sentences of the answer, in the order they are said."""
        candidates = _candidates(passages)
        if not candidates:
            return []
        asked = terms(question)
        lexical = _lexical(asked, candidates)
        # The heading a sentence sits under says what it is about ("@functools.lru_cache(maxsize=128)"): a
        # section whose heading names what is asked holds the answer, its lead sentence most of all.
        section = {id(c): len(asked & c.sentence.heading) / max(len(asked), 1) for c in candidates}
        prior = {
            id(c): lexical[id(c)]
            + 0.5 * section[id(c)] * (1 + c.sentence.lead)
            + 0.15 / (1 + c.rank)
            + 0.1 * c.sentence.lead
            - 0.3 * c.changelog
            for c in candidates
        }
        shortlist = sorted(candidates, key=lambda c: -prior[id(c)])[: self.options.compare or len(candidates)]
        meaning = await self._meaning(question, shortlist) if self.options.compare else {}
        if not meaning and not any(lexical.values()):
            # No embedder and no shared word: retrieval found the passage by meaning; its opening says what it is.
            return [min(candidates, key=lambda c: (c.rank, c.sentence.position))]
        # Weights measured on perf/bench_quality's development sites (perf/RESULTS.md): words shared with the
        # question help to shortlist, but the final choice is better by meaning alone (they pick sentences that
        # repeat the question instead of answering it); without an embedder they are all there is.
        if meaning:

            def score(c: _Candidate) -> float:
                return (
                    meaning.get(id(c), 0.0)
                    + 0.15 / (1 + c.rank)
                    + c.sentence.lead * (0.05 + 0.5 * section[id(c)])
                    - 0.1 * c.changelog
                )
        else:

            def score(c: _Candidate) -> float:
                return lexical[id(c)] + 0.04 / (1 + c.rank) + 0.03 * c.sentence.lead - 0.1 * c.changelog

        ranked = sorted(shortlist, key=lambda c: -score(c))
        best = score(ranked[0])
        floor = best - _BELOW_BEST if meaning else 0.5 * best
        return self._assemble(ranked, candidates, score, floor)

    def _assemble(
        self, ranked: list[_Candidate], everything: list[_Candidate], score: Callable[[_Candidate], float], floor: float
    ) -> list[_Candidate]:
        """The best sentences, up to the limits and while above `floor`; one that refers back comes with the
        sentence it refers to, and one that goes on about it follows. Said passage by passage, the best passage
        first, each in its own order."""
        by_place = {c.place: c for c in everything}
        picked: list[_Candidate] = []
        length = 0

        def fits(*cs: _Candidate) -> bool:
            return (
                len(picked) + len(cs) <= self.options.max_sentences
                and length + sum(len(c.text) for c in cs) <= self.options.max_chars
            )

        for c in ranked:
            if len(picked) >= self.options.max_sentences or score(c) < floor:
                break
            if c in picked:
                continue
            group = [c]
            before = by_place.get((c.n, c.part, c.sentence.position - 1))
            if (
                _BACK.match(c.text)
                and before is not None
                and before.sentence.paragraph == c.sentence.paragraph
                and before not in picked
            ):
                group.insert(0, before)  # "It can save time…" is said after what "it" is
            after = by_place.get((c.n, c.part, c.sentence.position + 1))
            if (
                after is not None
                and after.sentence.paragraph == c.sentence.paragraph
                and after not in picked
                and _BACK.match(after.text)
                and fits(*group, after)
            ):
                group.append(after)  # and what it goes on to say about it
            if fits(*group):
                picked += group
                length += sum(len(g.text) for g in group)
        first = picked[0].n if picked else 0
        return sorted(picked, key=lambda c: (c.n != first, c.place))

    async def _meaning(self, question: str, shortlist: list[_Candidate]) -> dict[int, float]:
        """Cosine of each sentence's embedding with the question's; none without an embedder."""
        if self._embed is None or not shortlist:
            return {}
        # Each sentence is read under its heading: "Decorator to wrap a function…" answers "what does
        # functools.lru_cache do" only as the lead of the section "@functools.lru_cache(maxsize=128)".
        texts = list(dict.fromkeys([question, *(c.sentence.context for c in shortlist)]))
        stored = {c.sentence.context: v for c in shortlist if (v := c.prepared.get(c.sentence.context)) is not None}
        known = {t: self._vectors[t] for t in texts if t in self._vectors} | stored
        missing = [t for t in texts if t not in known]
        if missing:
            known.update(
                zip(missing, (np.asarray(v, dtype=np.float32) for v in await self._embed(missing)), strict=True)
            )
        for text in texts:  # remembered, most recent last; the least recently used go first
            if text in stored:
                continue  # kept with its chunk already
            self._vectors[text] = known[text]
            self._vectors.move_to_end(text)
        while len(self._vectors) > _VECTORS_KEPT:
            self._vectors.popitem(last=False)
        q = known[question]
        return {id(c): float(np.dot(q, known[c.sentence.context])) for c in shortlist}


def _candidates(passages: Sequence[Passage]) -> list[_Candidate]:
    """Every sentence of every chunk, with the chunk's rank among all of them (by score)."""
    parts = [(p, i, hit) for p in passages for i, hit in enumerate(p.parts or (p.hit,))]
    ranks = {id(hit): r for r, (_, _, hit) in enumerate(sorted(parts, key=lambda x: -x[2].score))}
    out = []
    for p, i, hit in parts:
        changelog = _CHANGELOG.search(f"{p.hit.title} {p.hit.url} {hit.heading}") is not None
        out += [_Candidate(p.n, i, ranks[id(hit)], s, changelog, hit.prepared) for s in analysed(hit.text)]
    return out


def _lexical(asked: frozenset[str], candidates: list[_Candidate]) -> dict[int, float]:
    """Distinctive words shared with the question (idf over the candidates), 0..1 of the best."""
    df: dict[str, int] = {}
    for c in candidates:
        for term in c.sentence.terms:
            df[term] = df.get(term, 0) + 1
    total = len(candidates)
    raw = {
        id(c): sum(math.log(1 + total / df[t]) for t in asked & c.sentence.terms)
        / math.sqrt(max(len(c.sentence.terms), 4))
        for c in candidates
    }
    top = max(raw.values(), default=0.0) or 1.0
    return {k: v / top for k, v in raw.items()}


@hookimpl
def register_generators() -> list[type[AnswerGenerator]]:
    """Hook: the `extractive` generator."""
    return [ExtractiveGenerator]
