"""A source's URL patterns (include/exclude, sent by tenants) run by RE2: linear time whatever the pattern.

Python's `re` backtracks: `(a+)+b` against a long link took seconds, holding the GIL, so no thread helps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import re2  # type: ignore[import-untyped]

MAX_PATTERNS = 50
"""Patterns per list (include, exclude)."""
MAX_PATTERN_CHARS = 1000
_MAX_MEM = 8 << 20  # bytes of compiled program per pattern list; RE2 refuses larger ones


class PatternError(ValueError):
    """A pattern list is too long, or a pattern RE2 cannot compile; the message names it."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _MAX_MEM
    return options


def check(patterns: Sequence[str], name: str) -> None:
    """Raise PatternError naming the first pattern of `name` (include, exclude) that cannot be used."""
    if len(patterns) > MAX_PATTERNS:
        raise PatternError(f"{name}: at most {MAX_PATTERNS} patterns, not {len(patterns)}")
    for i, pattern in enumerate(patterns):
        if len(pattern) > MAX_PATTERN_CHARS:
            raise PatternError(f"{name}[{i}]: a pattern is at most {MAX_PATTERN_CHARS} characters, not {len(pattern)}")
        try:
            re2.compile(pattern, _options())
        except re2.error as e:
            reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
            raise PatternError(
                f"{name}[{i}]: {pattern!r} is not a valid regular expression for RE2 ({reason}); "
                "patterns use RE2 syntax (no look-around or backreferences)"
            ) from None
    union(patterns, name)


def union(patterns: Sequence[str], name: str = "patterns") -> Any | None:
    """One RE2 program matching where any of `patterns` matches (one pass per URL); None for no patterns."""
    if not patterns:
        return None
    try:
        return re2.compile("|".join(f"(?:{p})" for p in patterns), _options())
    except re2.error:
        raise PatternError(f"{name}: the patterns together are too large for RE2; use fewer or simpler ones") from None
