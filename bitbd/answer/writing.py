"""Writing one answer from the passages found: the configured generator streams it (the fallback when its
backend is down), every piece made safe Markdown without marks of sources it was not given, and what was written
said as a `Written`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bitbd.answer.events import Delta
from bitbd.answer.markdown import MarkdownSanitizer
from bitbd.answer.outcome import Send, Written
from bitbd.answer.passages import Markers, by_page, citations
from bitbd.errors import PluginError
from bitbd.interfaces import AnswerCut, AnswerGenerator, Embedder, GeneratorUnavailable, Hit, Turn
from bitbd.settings import AnswerSettings

log = logging.getLogger("bitbd.answer.service")


@dataclass(frozen=True)
class Writer:
    """The generators an answer may come from, and the settings that say when bitbd refuses instead."""

    generator: AnswerGenerator
    fallback: AnswerGenerator
    settings: AnswerSettings

    async def write(
        self,
        question: str,
        hits: Sequence[Hit],
        history: Sequence[Turn],
        send: Send,
        as_asked: float | None = None,
    ) -> Written:
        """Stream the answer and say what was written. `as_asked`: a follow-up's support without its
        conversation (the lower of the two decides)."""
        support = max((h.similarity for h in hits if h.similarity is not None), default=0.0)
        if as_asked is not None:
            support = min(support, as_asked)
        if not hits or support < self.settings.min_support:
            answer = self.settings.dont_know
            await send(Delta(answer))
            return Written(answer, [], None, cacheable=True, support=support)  # refused: no generator asked
        passages = by_page(hits)
        pieces: list[str] = []
        # Whatever the generator writes (a prompt-injected page can make a model write anything) is sent and
        # stored only as safe Markdown (bitbd/answer/markdown.py, docs/protocol.md), and without markers of
        # sources it was not given.
        markers, cleaner = Markers(p.n for p in passages), MarkdownSanitizer()

        async def emit(text: str) -> None:
            if text:
                pieces.append(text)
                await send(Delta(text))

        async def stream(generator: AnswerGenerator) -> None:
            async for piece in generator.generate(question, passages, history):
                await emit(cleaner.feed(markers.feed(piece)))

        generator, stopped = self.generator, None
        try:
            await stream(generator)
        except GeneratorUnavailable as e:
            log.warning(
                "answer generator unavailable, answering with the fallback",
                extra={"generator": generator.name, "fallback": self.fallback.name, "reason": str(e)},
            )
            generator, markers, cleaner = self.fallback, Markers(p.n for p in passages), MarkdownSanitizer()
            await stream(generator)
        except AnswerCut as e:
            stopped = e.stopped
            log.warning(
                "answer incomplete, not cached",
                extra={"generator": generator.name, "stopped": e.stopped, "reason": str(e)},
            )
        except PluginError as e:
            log.warning("answer generator failed mid-answer", extra={"generator": generator.name, "reason": str(e)})
            raise
        await emit(cleaner.feed(markers.close()) + cleaner.close())
        if markers.removed:
            log.info(
                "markers of sources not given removed from an answer",
                extra={"generator": generator.name, "removed": markers.removed},
            )
        # Not stripped: taking the indentation off its first line could make Markdown of it that was not checked.
        joined = "".join(pieces)
        answer = joined if joined.strip() else self.settings.dont_know
        return Written(
            answer,
            citations(answer, passages, self.settings.dont_know),
            generator.name,
            cacheable=generator is self.generator and stopped is None,
            stopped=stopped,
            support=support,
        )


def token_counter(embedder: Embedder) -> Callable[[str], int]:
    """Counts a text's tokens with the embedding model's tokenizer; about four characters a token without one."""
    tokenizer = embedder.tokenizer()
    if tokenizer is None:
        return lambda text: len(text) // 4 + 1
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
