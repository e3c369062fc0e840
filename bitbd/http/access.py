"""The access log (`--verbose` only): one structured line per request, with secrets a client put in the URL
(an `sk_` key in `?key=`, an admin token) redacted. aiohttp's own access log writes the raw request line."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

_SECRET = re.compile(r"\b(sk|adm)_[A-Za-z0-9_-]{4,}")
_SECRET_PARAMS = {"key", "token", "api_key", "access_token", "password"}


def redact_query(query: str) -> str:
    """The query string with the values of secret-looking parameters and any key or token replaced."""
    pairs = [
        (k, "[redacted]" if k.lower() in _SECRET_PARAMS and not v.startswith("pk_") else v)
        for k, v in parse_qsl(query, keep_blank_values=True)
    ]
    return _SECRET.sub(r"\1_[redacted]", urlencode(pairs))


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access logger for `--verbose`: one structured debug line per request, secrets redacted."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log method, redacted path and query, status, bytes, milliseconds and client address."""
        self.logger.debug(
            "request",
            extra={
                "method": request.method,
                "path": _SECRET.sub(r"\1_[redacted]", request.path),
                "query": redact_query(request.query_string),
                "status": response.status,
                "bytes": response.body_length,
                "ms": round(time * 1000, 1),
                "remote": request.remote,
            },
        )
