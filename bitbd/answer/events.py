"""What answering one question yields, typed: the pieces of its text, its sources, its end. The chat socket turns
each into a message of the chat protocol (docs/protocol.md) with the client's id; nothing else knows that format."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Delta:
    """A piece of the answer's text, safe Markdown, in order."""

    text: str


@dataclass(frozen=True)
class Citations:
    """The sources the answer cites (``[n]`` marks), once the text is complete."""

    sources: list[dict[str, Any]]


@dataclass(frozen=True)
class Done:
    """The answer's end: the conversation it joined, the answer's message id (to rate it), whether it came from
    the cache, which generator wrote it (None when bitbd refused without asking one), whether it is complete (else
    why it stopped), and how long the retrieval, the generation and the whole took."""

    conversation_id: str
    message_id: str
    cached: bool
    generator: str | None
    complete: bool
    stopped: str | None = None
    timings_ms: dict[str, int] = field(default_factory=dict)


AnswerEvent = Delta | Citations | Done


def wire(event: AnswerEvent, ask_id: str) -> dict[str, Any]:
    """The chat protocol's message for ``event``, answering the ask whose id is ``ask_id``."""
    match event:
        case Delta(text):
            return {"type": "delta", "id": ask_id, "text": text}
        case Citations(sources):
            return {"type": "citations", "id": ask_id, "sources": sources}
        case Done():
            done: dict[str, Any] = {
                "type": "done",
                "id": ask_id,
                "conversation_id": event.conversation_id,
                "message_id": event.message_id,
                "cached": event.cached,
                "generator": event.generator,
                "complete": event.complete,
            }
            if event.stopped is not None:
                done["stopped"] = event.stopped
            return {**done, "timings_ms": event.timings_ms}


def merged(first: Delta, events: asyncio.Queue[AnswerEvent | None]) -> tuple[Delta, AnswerEvent | None]:
    """`first` joined with the deltas already waiting behind it, and the event taken after them (None if none).

    Deltas written while the client's last message was being sent go out as one: the extractive generator writes
    a whole answer at once (15-20 WebSocket messages before), and a model's tokens are merged only when they
    arrive faster than the socket takes them. The end of the stream (None) is never taken: it is put last."""
    texts = [first.text]
    while not events.empty():
        event = events.get_nowait()
        if not isinstance(event, Delta):
            if event is None:
                events.put_nowait(None)  # nothing follows the end: put back, it is read next
            return Delta("".join(texts)), event
        texts.append(event.text)
    return Delta("".join(texts)), None
