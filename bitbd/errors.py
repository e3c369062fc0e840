"""One error tree; every HTTP and WebSocket error body comes from `error_body()`."""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import web


class BitbdError(Exception):
    """Base of every error bitbd reports to a client or a user: a message that says what to do."""

    status: int = 500
    code: ClassVar[str] = "internal"
    retry_after: float | None = None
    """Seconds after which a retry may succeed: the Retry-After header (429 and 503)."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    @classmethod
    def from_http(cls, exc: web.HTTPException) -> BitbdError:
        """Wrap aiohttp's own 404/405/413 so they get our body shape."""
        by_status: dict[int, tuple[type[BitbdError], str]] = {
            404: (NotFound, "no such endpoint; the API lives under /v1 (see README)"),
            405: (MethodNotAllowed, "method not allowed on this endpoint"),
            413: (PayloadTooLarge, "request body too large"),
        }
        kind, message = by_status.get(exc.status, (BadRequest, exc.reason))
        if isinstance(exc, web.HTTPMethodNotAllowed):
            message = f"method {exc.method} not allowed here; use {', '.join(sorted(exc.allowed_methods))}"
        error = kind(message)
        error.status = exc.status
        return error


class ConfigError(BitbdError):
    """Settings could not be loaded; raised at startup, never over HTTP."""

    code = "config"


class BadRequest(BitbdError):
    status, code = 400, "bad_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class InvalidRequest(BadRequest):
    code = "invalid_request"


class InvalidText(BadRequest):
    """Text no field can hold: a NUL, or a lone surrogate (a JSON `\\ud800` escape) that is not UTF-8."""

    code = "invalid_text"


class Unauthorized(BitbdError):
    status, code = 401, "unauthorized"


class Forbidden(BitbdError):
    status, code = 403, "forbidden"


class NotFound(BitbdError):
    status, code = 404, "not_found"


class KeyRevoked(Unauthorized):
    code = "key_revoked"


class KeyExpired(Unauthorized):
    """An expired (trial) key."""

    code = "key_expired"


class OriginNotAllowed(Forbidden):
    """A public key used from a page whose origin the key is not bound to."""

    code = "origin_not_allowed"


class QuotaExhausted(Forbidden):
    """A (trial) key that has used all the messages it was given."""

    code = "quota_exhausted"


class ConversationNotFound(NotFound):
    code = "conversation_not_found"


class NoDocuments(BitbdError):
    """A question or search for a tenant that has nothing indexed yet."""

    status, code = 409, "no_documents"


class QuestionTooLong(BadRequest):
    code = "question_too_long"


class RateLimited(BitbdError):
    """Too many of something; `retry_after` (seconds) becomes the Retry-After header."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthThrottled(RateLimited):
    """Too many failed authentications from one client address."""

    code = "auth_throttled"


class TooManyConnections(RateLimited):
    """A client already holds `chat.max_connections_per_client` WebSockets with a key, or the key holds
    `chat.max_connections_per_key` in all."""

    code = "too_many_connections"


class MethodNotAllowed(BitbdError):
    status, code = 405, "method_not_allowed"


class Conflict(BitbdError):
    status, code = 409, "conflict"


class RequestTimeout(BitbdError):
    status, code = 408, "request_timeout"


class PayloadTooLarge(BitbdError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(BitbdError):
    status, code = 415, "unsupported_media_type"


class InternalError(BitbdError):
    status, code = 500, "internal"

    def __init__(self, message: str = "internal error; the server log has the details") -> None:
        super().__init__(message)


class PluginError(BitbdError):
    status, code = 502, "plugin_error"


class Unavailable(BitbdError):
    """A transient failure (database or Redis down): the only kind that is retried."""

    status, code = 503, "unavailable"


class UploadsBusy(Unavailable):
    """The upload budget (the server's, or the tenant's share of it) is held by other uploads: retry shortly."""

    code = "uploads_busy"

    def __init__(self, message: str, retry_after: float | None = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DataDirBusy(BitbdError):
    """Another bitbd process owns the data dir."""

    code = "data_dir_busy"


def error_body(exc: BitbdError) -> dict[str, Any]:
    """`{"error": {"code": ..., "message": ...}}`: the one error shape for HTTP bodies."""
    return {"error": {"code": exc.code, "message": exc.message}}
