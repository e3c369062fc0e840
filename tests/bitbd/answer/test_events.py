"""Deltas waiting together go out as one message; anything else keeps its place, and the end stays last."""

from __future__ import annotations

import asyncio

from bitbd.answer.events import AnswerEvent, Citations, Delta, merged


def queued(*events: AnswerEvent | None) -> asyncio.Queue[AnswerEvent | None]:
    queue: asyncio.Queue[AnswerEvent | None] = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)
    return queue


def test_waiting_deltas_are_joined_and_the_next_event_is_handed_back() -> None:
    citations = Citations([])
    events = queued(Delta(" world"), Delta("!"), citations, Delta("after"), None)
    joined, taken = merged(Delta("hello"), events)
    assert joined == Delta("hello world!") and taken is citations
    assert events.get_nowait() == Delta("after"), "a delta after the citations is not pulled before them"


def test_the_end_is_put_back_last_and_nothing_waiting_leaves_the_delta_as_it_is() -> None:
    events = queued(Delta("b"), None)
    joined, taken = merged(Delta("a"), events)
    assert joined == Delta("ab") and taken is None
    assert events.qsize() == 1 and events.get_nowait() is None, "the end of the stream is still read next"
    assert merged(Delta("alone"), queued()) == (Delta("alone"), None)
