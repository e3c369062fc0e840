"""One question on its way to an answer: who asked, how far it got, and what was written."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bitbd.answer.events import AnswerEvent
from bitbd.interfaces import Turn
from bitbd.tenancy import ApiKey

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
    support: float | None = None  # the best cosine similarity the question found (None: not measured)


@dataclass
class Progress:
    """How far one answer got: once `complete`, its bookkeeping must finish whatever the client does."""

    complete: bool = False
    deadline: asyncio.Timeout | None = None

    def completed(self) -> None:
        """Mark the answer written: from now on it is complete, and its deadline is lifted so no
        timeout cuts its bookkeeping."""
        self.complete = True
        if self.deadline is not None:
            self.deadline.reschedule(None)


@dataclass(frozen=True)
class Caller:
    """Who asks: a tenant's API key, or the operator (admin token) acting for a tenant, with no key limits."""

    tenant_id: uuid.UUID
    key: ApiKey | None = None


@dataclass
class Asked:
    """One question in flight: who asked it, in which conversation (and its recent turns), where its events go,
    and how far it got. The answer service passes this one object down its steps."""

    caller: Caller
    question: str
    conversation: uuid.UUID | None
    history: list[Turn]
    send: Send
    charging: asyncio.Task[None]  # the key's charge, made while the question is searched; raises what refuses it
    state: Progress = field(default_factory=Progress)
    started: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)  # milliseconds by phase (bitbd/timing.py)


def public_key_id(caller: Caller) -> uuid.UUID | None:
    """The caller's key id if it is a public key (a visitor's widget): what it may see is only its own
    conversations. None for a secret key or the operator, who see all of the tenant's."""
    return caller.key.id if caller.key is not None and caller.key.kind == "public" else None
