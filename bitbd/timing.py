"""Where one request's time went, phase by phase, for its `Server-Timing` header (RFC-style, W3C Server Timing).

A handler opens `timed()`; code anywhere below it wraps a phase in `phase("vector")`. Phases of concurrent tasks
(the vector and keyword halves of a hybrid search run at once) are each measured on their own. Outside a `timed()`
block `phase()` costs one ContextVar lookup.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CURRENT: ContextVar[dict[str, float] | None] = ContextVar("bitbd_timings", default=None)


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Collect the phases run within the block (and in tasks it starts): name -> milliseconds."""
    phases: dict[str, float] = {}
    token = _CURRENT.set(phases)
    try:
        yield phases
    finally:
        _CURRENT.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as phase `name` of the current request, if one is being timed (repeats add up)."""
    phases = _CURRENT.get()
    if phases is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + (time.perf_counter() - started) * 1000


def server_timing(phases: dict[str, float]) -> str:
    """The phases as a `Server-Timing` header value: `embed;dur=3.1, vector;dur=4.2`."""
    return ", ".join(f"{name};dur={ms:.2f}" for name, ms in phases.items())
