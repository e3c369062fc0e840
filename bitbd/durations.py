"""Durations as people write them (`90s`, `5m`, `6h`, `1d`, `1h30m`), to and from whole seconds."""

from __future__ import annotations

import re

_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART = re.compile(r"(\d{1,9})\s*([dhms])")
_WHOLE = re.compile(r"\s*(?:\d{1,9}\s*[dhms]\s*)+")
MAX_SECONDS = 366 * 86_400  # a year and a day: longer than any refresh anyone means


def parse_duration(text: str) -> int:
    """Seconds in `text`: numbers with a unit each (s, m, h, d), e.g. `6h` or `1h30m`. Raises ValueError that
    says what is accepted."""
    if not isinstance(text, str) or not _WHOLE.fullmatch(text.lower()):
        raise ValueError(f"{text!r} is not a duration; write a number and a unit (s, m, h or d), e.g. 30m or 6h")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text.lower()))
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"{text!r} must be more than 0s and at most 366d")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest way to write whole seconds with the units above: 21600 -> `6h`, 5400 -> `1h30m`."""
    parts = []
    rest = int(seconds)
    for unit, size in _UNITS.items():
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"
