"""Query parameters: the one strict parser of numbers in URLs, for every route."""

from __future__ import annotations

import re

from aiohttp import web

from bitbd.errors import InvalidRequest

# ASCII digits only: int() also takes "٣" (Arabic-Indic three), " 5", "+5" and "5_0", and str.isdigit() takes "²",
# which int() then refuses. A URL number is written one way.
_DIGITS = re.compile(r"[0-9]{1,18}")


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """The query parameter `name` as a whole number from `low` to `high`, or `default` when it is absent."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        shown = raw[:40].encode("ascii", "backslashreplace").decode()
        raise InvalidRequest(
            f"query parameter {name!r} must be a whole number written with the digits 0-9, "
            f"from {low} to {high}; got {shown!r}"
        )
    value = int(raw)
    if not low <= value <= high:
        raise InvalidRequest(f"query parameter {name!r} must be from {low} to {high}; got {value}")
    return value
