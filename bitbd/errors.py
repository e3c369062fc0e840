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
    """400 `bad_request`: base of the errors of a request the server cannot take; also aiohttp's own 4xx
    errors other than 404, 405 and 413, with their status."""

    status, code = 400, "bad_request"


class InvalidJson(BadRequest):
    """400 `invalid_json`: a body or chat message that is not readable JSON (not UTF-8, not JSON, too deep)."""

    code = "invalid_json"


class InvalidRequest(BadRequest):
    """400 `invalid_request`: a request whose values are wrong (body, parameters, arguments); the message says which."""

    code = "invalid_request"


class InvalidText(BadRequest):
    """Text no field can hold: a NUL, or a lone surrogate (a JSON `\\ud800` escape) that is not UTF-8."""

    code = "invalid_text"


class Unauthorized(BitbdError):
    """401 `unauthorized`: missing or wrong credentials. Counted by the failed-authentication throttle;
    closes a chat socket with 4401."""

    status, code = 401, "unauthorized"


class Forbidden(BitbdError):
    """403 `forbidden`: base of the refusals of a valid key (origin, quota); closes a chat socket with 4403."""

    status, code = 403, "forbidden"


class NotFound(BitbdError):
    """404 `not_found`: no such tenant, key, source, job or document (for the caller), or no such endpoint."""

    status, code = 404, "not_found"


class KeyRevoked(Unauthorized):
    """401 `key_revoked`: a key that was revoked, or deleted since its connection opened."""

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
    """404 `conversation_not_found`: a `conversation_id` that is not an id, or names no
    conversation of the caller's tenant."""

    code = "conversation_not_found"


class MessageNotFound(NotFound):
    """404 `message_not_found`: a `message_id` that is not an answer the caller may rate (another tenant's, another
    visitor's conversation under a public key, or no such message)."""

    code = "message_not_found"


class NoDocuments(BitbdError):
    """A question or search for a tenant that has nothing indexed yet."""

    status, code = 409, "no_documents"


class QuestionTooLong(BadRequest):
    """400 `question_too_long`: a question or search query over `answer.max_question_chars`."""

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
    """405 `method_not_allowed`: aiohttp's 405 in our body shape (its Allow header is kept)."""

    status, code = 405, "method_not_allowed"


class Conflict(BitbdError):
    """409 `conflict`: a tenant name already taken, or a job in the wrong state to be cancelled or retried."""

    status, code = 409, "conflict"


class RequestTimeout(BitbdError):
    """408 `request_timeout`: a request body that did not arrive within `server.body_timeout`."""

    status, code = 408, "request_timeout"


class PayloadTooLarge(BitbdError):
    """413 `payload_too_large`: a body or upload over its size limit; also aiohttp's own 413."""

    status, code = 413, "payload_too_large"


class UnsupportedMediaType(BitbdError):
    """415 `unsupported_media_type`: a body that is not JSON where JSON is expected, an upload
    that is not multipart, or a file of a type that is not ingested."""

    status, code = 415, "unsupported_media_type"


class InternalError(BitbdError):
    """500 `internal`: a bug; the client gets a fixed message, the details are in the server log."""

    status, code = 500, "internal"

    def __init__(self, message: str = "internal error; the server log has the details") -> None:
        super().__init__(message)


class PluginError(BitbdError):
    """502 `plugin_error`: a plugin component failed, or lacks what it needs (bitbd's database, the HTTP
    fetcher) in this process."""

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
