"""Reading request bodies: JSON only, size-limited, validated into a pydantic model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bitbd.errors import InvalidJson, InvalidRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from bitbd.keys import settings_key

M = TypeVar("M", bound=BaseModel)


@asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """The body must arrive within `server.body_timeout`: a client trickling it in does not hold a handler."""
    seconds = request.config_dict[settings_key].server.body_timeout
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {seconds:.0f}s (server.body_timeout); "
                             "send it at once, or over a faster link") from None


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
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidJson("request body is not UTF-8 text; send UTF-8 encoded JSON") from None
    except json.JSONDecodeError as e:
        raise InvalidJson(f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {type(data).__name__}")
    if has_nul(data):
        raise InvalidRequest("request body holds a NUL character (\\u0000), which no text field can store; "
                             "remove it")
    try:
        # Strict: JSON types as declared (no "0" for false, no "5" for 5); dates and UUIDs as JSON strings.
        return model.model_validate_json(raw, strict=True)
    except ValidationError as e:
        raise InvalidRequest(describe(e)) from None


def has_nul(value: object) -> bool:
    """A NUL anywhere in a parsed JSON value (PostgreSQL text and jsonb cannot hold one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def describe(error: ValidationError) -> str:
    """`field 'kind': Input should be 'public' or 'secret'; field 'quota': ...`"""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        msg = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"field {where!r}: {msg}")
    return "invalid request: " + "; ".join(parts)


def _too_large(size: int | None, limit: int) -> PayloadTooLarge:
    got = f"{size} bytes" if size is not None else "larger than that"
    return PayloadTooLarge(f"request body is {got}; the limit is {limit} bytes (server.max_body_bytes)")
