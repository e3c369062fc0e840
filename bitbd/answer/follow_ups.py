"""Follow-up questions: which ones lean on their conversation, and what is looked up for them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bitbd.interfaces import Turn

# Words by which a follow-up points back into its conversation ("what does it not cover?", "and for sale items?").
_BACK_REFERENCES = frozenset(
    "it its itself this that these those they them their theirs there he him his she her "
    "one ones same such former latter above previous else other another".split()
)
_CONTINUATIONS = ("and ", "or ", "but ", "also ", "so ", "then ", "what about ", "how about ", "what if ")
_WORD = re.compile(r"[^\W\d_]+")


def leans_on_context(question: str) -> bool:
    """Whether a follow-up needs its conversation to mean anything: it refers back, continues the last question,
    or is too short to stand alone. Other follow-ups are judged as asked, so an off-topic one ("what is the capital
    of France?") is refused instead of answered from earlier turns."""
    words = _WORD.findall(question.lower())
    return (
        len(words) <= 3
        or question.lower().lstrip().startswith(_CONTINUATIONS)
        or any(w in _BACK_REFERENCES for w in words)
    )


def retrieval_query(question: str, history: Sequence[Turn], turns: int) -> str:
    """A follow-up ("and on Windows?") is looked up together with the conversation's last questions."""
    asked = [t.content for t in history if t.role == "user"][-turns:] if turns else []
    return "\n".join([*asked, question])
