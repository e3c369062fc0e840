"""Reading request bodies: JSON only, size-limited, validated into a pydantic model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bitbd.errors import (
    InvalidJson,
    InvalidRequest,
    InvalidText,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from bitbd.keys import settings_key
from bitbd.text import UNSTORABLE as _BAD_TEXT
from bitbd.validation import describe

M = TypeVar("M", bound=BaseModel)
MAX_DEPTH = 32  # no request body or chat message nests deeper; a bound keeps every later walk shallow


@asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """The body must arrive within `server.body_timeout`: a client trickling it in does not hold a handler."""
    seconds = request.config_dict[settings_key].server.body_timeout
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {seconds:.0f}s (server.body_timeout); "
            "send it at once, or over a faster link"
        ) from None


async def read_json(request: web.Request, model: type[M]) -> M:
    """The body as `model`; each way it can be wrong gets its own error that says how to fix it."""
    if request.content_type != "application/json":
        got = request.content_type or "none"
        raise UnsupportedMediaType(f"send the body as JSON with Content-Type: application/json (got {got})")
    limit = request.config_dict[settings_key].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    try:
        async with body_deadline(request):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(None, limit) from None
    data = parse_json(raw, "request body")
    if not isinstance(data, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {type(data).__name__}")
    check_json(data, "request body")
    try:
        # Strict: JSON types as declared (no "0" for false, no "5" for 5); dates and UUIDs as JSON strings.
        return model.model_validate_json(raw, strict=True)
    except ValidationError as e:
        raise InvalidRequest(describe(e)) from None


def parse_json(raw: str | bytes, what: str) -> Any:
    """JSON text as Python values; every way it can be unreadable is an `InvalidJson` naming `what` (HTTP bodies
    and chat messages both come through here)."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidJson(f"{what} is not UTF-8 text; send UTF-8 encoded JSON") from None
    except json.JSONDecodeError as e:
        raise InvalidJson(f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise InvalidJson(
            f"{what} nests arrays or objects too deeply; at most {MAX_DEPTH} levels are accepted"
        ) from None
    except ValueError as e:  # an integer past Python's int-string limit (sys.get_int_max_str_digits())
        raise InvalidJson(f"{what} holds a number too long to read ({e}); numbers here are small") from None


def check_json(value: Any, what: str) -> None:
    """Refuse a parsed JSON value nested over `MAX_DEPTH` or holding text no field can store (NUL, lone
    surrogates), in keys or values; walked without recursion, so no input can exhaust the stack."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        node, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidJson(f"{what} nests arrays or objects deeper than {MAX_DEPTH} levels; flatten it")
        if isinstance(node, str):
            check_text(node, f"{what} field {where!r}" if where else what)
        elif isinstance(node, dict):
            for key, item in node.items():
                check_text(key, f"{what} key {key[:40]!r}")
                stack.append((item, depth + 1, (f"{where}.{key}" if where else key)[:80]))
        elif isinstance(node, list):
            stack.extend((item, depth + 1, f"{where}[{i}]"[:80]) for i, item in enumerate(node))


def check_text(text: str, what: str) -> None:
    """`text` must be storable Unicode text: no NUL (PostgreSQL refuses it), no lone surrogate (not UTF-8)."""
    bad = _BAD_TEXT.search(text)
    if bad is None:
        return
    char = bad.group()
    if char == "\x00":
        raise InvalidText(f"{what} holds a NUL character (\\u0000), which no text can store; remove it")
    raise InvalidText(
        f"{what} holds a lone surrogate (\\u{ord(char):04x}), which is not a character and cannot "
        "be encoded as UTF-8; send real Unicode text (a JSON escape of an emoji needs both halves "
        "of its surrogate pair)"
    )


def _too_large(size: int | None, limit: int) -> PayloadTooLarge:
    got = f"{size} bytes" if size is not None else "larger than that"
    return PayloadTooLarge(f"request body is {got}; the limit is {limit} bytes (server.max_body_bytes)")
