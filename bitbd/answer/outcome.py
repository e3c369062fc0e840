"""How far an answer got, and what was written."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bitbd.answer.events import AnswerEvent

log = logging.getLogger("bitbd.answer.service")
Send = Callable[[AnswerEvent], Awaitable[None]]


@dataclass(frozen=True)
class Written:
    """An answer as written: its text, the sources it cites, the generator that wrote it (`extractive` when the
    configured one was unavailable; None when bitbd refused without asking one: nothing supports the question),
    whether it may be cached, and why it is incomplete (None: it is not)."""

    answer: str
    sources: list[dict[str, Any]]
    generator: str | None
    cacheable: bool
    stopped: str | None = None


@dataclass
class Progress:
    """How far one answer got: once `complete`, its bookkeeping must finish whatever the client does."""

    complete: bool = False
    deadline: asyncio.Timeout | None = None

    def completed(self) -> None:
        self.complete = True
        if self.deadline is not None:
            self.deadline.reschedule(None)
