"""Which follow-ups lean on their conversation (judged with it) and which stand alone (judged as asked)."""

from __future__ import annotations

import pytest

from bitbd.answer.follow_ups import leans_on_context


@pytest.mark.parametrize(
    "question",
    [
        "What does it not cover?",
        "And how fast is express delivery?",
        "And for sale items?",
        "What about Windows?",
        "Why?",
        "How long is that?",
        "Does the other one have it too?",
    ],
)
def test_follow_ups_that_refer_back_lean_on_their_conversation(question: str) -> None:
    assert leans_on_context(question)


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of France?",
        "Who won the football world cup in 1998?",
        "How do I install the blender motor?",
        "Where can I download the manual?",
    ],
)
def test_questions_that_stand_alone_are_judged_as_asked(question: str) -> None:
    assert not leans_on_context(question)
