"""Pydantic validation errors said in words: for request bodies, and for plugins' `[plugins.<name>]` tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bitbd.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def describe(error: ValidationError) -> str:
    """`invalid request: field 'kind': Input should be 'public' or 'secret'; field 'quota': ...`"""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        msg = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"field {where!r}: {msg}")
    return "invalid request: " + "; ".join(parts)


def plugin_settings(model: type[M], table: Mapping[str, Any], name: str) -> M:
    """A plugin's `[plugins.<name>]` table validated into its own model; a mistake names the table and the key."""
    try:
        return model.model_validate(dict(table))
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"[plugins.{name}]: {first['loc']}: {first['msg']}") from None
