"""`GET /v1/chat`: the WebSocket chat protocol (docs/protocol.md).

The upgrade always succeeds, so that a browser (which cannot read a refused handshake) learns why it is refused:
an authentication problem is sent as an `error` message and the connection is then closed with code 4401 or 4403.
Any other problem is an `error` for that question only, and the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bitbd.answer.events import wire
from bitbd.answer.feedback import Rating, rate
from bitbd.answer.outcome import Caller
from bitbd.errors import (
    AuthThrottled,
    BadRequest,
    BitbdError,
    Forbidden,
    InternalError,
    InvalidJson,
    InvalidText,
    Unauthorized,
    Unavailable,
)
from bitbd.http.auth import caller_of
from bitbd.http.body import check_json, check_text, parse_json
from bitbd.http.limits import presents_credentials
from bitbd.http.middlewares import upgraded
from bitbd.keys import answerer_key, connections_key, pool_key, settings_key, sockets_key, throttle_key
from bitbd.metrics import METRICS

log = logging.getLogger(__name__)
_MAX_ID = 64
CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_IDLE = 4401, 4403, 4408
CLOSE_TIMEOUT = 2.0  # seconds a closing peer has to answer our close frame (shutdown waits at most this)


class ChatSocket(web.WebSocketResponse):
    """Says why before aiohttp closes a connection for an oversized message (code 1009)."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        """Close as aiohttp does; for 1009 (message too big), first send a `message_too_large` error."""
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed:
            limit = self._max_msg_size
            with contextlib.suppress(Exception):
                await self.send_json(
                    error_event(
                        None,
                        "message_too_large",
                        f"message larger than {limit} bytes (chat.max_message_bytes); "
                        "send one question per message, and shorter",
                    )
                )
            message = message or b"message too large"
        return await super().close(code=code, message=message, drain=drain)


Message = dict[str, Any]  # a message of the chat protocol, as sent (docs/protocol.md)


def error_event(ask_id: str | None, code: str, message: str) -> Message:
    """An `error` message of the protocol; `ask_id` None for a problem that concerns no question."""
    return {"type": "error", "id": ask_id, "code": code, "message": message}


def _is_text(value: str) -> bool:
    try:
        check_text(value, "id")
    except InvalidText:
        return False
    return True


class ChatSession:
    """One connection: several questions may be in flight, matched by their `id`."""

    def __init__(self, request: web.Request, ws: ChatSocket, caller: Caller) -> None:
        self.ws = ws
        self.caller = caller
        self.settings = request.config_dict[settings_key]
        self.answerer = request.config_dict[answerer_key]
        self.pool = request.config_dict[pool_key]
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.closing = False
        self._send_lock = asyncio.Lock()

    async def send(self, event: Message) -> None:
        """Send one message, one at a time (answers in flight share the socket); nothing if the socket
        is closed or resets meanwhile."""
        if self.ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_json(event)

    async def run(self) -> None:
        """Read messages until the socket closes, or idles out (close 4408) with no question in flight;
        then cancel the answers still in flight."""
        try:
            while not self.closing:
                try:
                    msg = await self.ws.receive(timeout=self.settings.chat.idle_timeout)
                except TimeoutError:
                    if self.in_flight:
                        continue
                    await self.send(
                        error_event(
                            None,
                            "idle_timeout",
                            f"no question for {self.settings.chat.idle_timeout:g} s; reconnect to ask again",
                        )
                    )
                    await self.ws.close(code=CLOSE_IDLE, message=b"idle")
                    break
                if msg.type == WSMsgType.TEXT:
                    await self.on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.send(
                        error_event(
                            None, "binary_not_supported", "binary messages are not understood; send JSON text messages"
                        )
                    )
                else:  # CLOSE, CLOSING, CLOSED, ERROR (the socket is closing already)
                    break
        finally:
            for task in self.in_flight.values():
                task.cancel()
            await asyncio.gather(*self.in_flight.values(), return_exceptions=True)

    async def on_text(self, text: str) -> None:
        """Handle one text message: a ping gets a pong, a valid ask starts its answer as a task, and
        anything else gets an `error`; the connection stays open."""
        try:
            message = parse_json(text, "message")
        except InvalidJson as e:
            await self.send(
                error_event(
                    None, e.code, f'{e.message}; send objects like {{"type": "ask", "id": "c1", "question": "..."}}'
                )
            )
            return
        if not isinstance(message, dict):
            await self.send(error_event(None, "invalid_message", "a message must be a JSON object"))
            return
        raw_id = message.get("id")
        ask_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= _MAX_ID and _is_text(raw_id) else None
        try:
            check_json(message, "message")
        except BadRequest as e:  # too deep, or text no field can hold (a lone surrogate, a NUL)
            await self.send(error_event(ask_id, e.code, e.message))
            return
        kind = message.get("type")
        if kind == "ping":
            await self.send({"type": "pong", "id": ask_id})
            return
        if kind == "feedback":
            await self.rate(ask_id, message)
            return
        if kind != "ask":
            shown = json.dumps(kind)[:40] if kind is not None else "missing"
            await self.send(
                error_event(
                    ask_id,
                    "unknown_type",
                    f'unknown message type {shown}; this server understands "ask", "feedback" and "ping"',
                )
            )
            return
        problem = self.check_ask(message, raw_id)
        if problem is not None:
            await self.send(error_event(ask_id, "invalid_message", problem))
            return
        assert ask_id is not None
        if ask_id in self.in_flight:
            await self.send(
                error_event(
                    ask_id,
                    "duplicate_id",
                    f"question {ask_id!r} is still being answered; give each question its own id",
                )
            )
            return
        if len(self.in_flight) >= self.settings.chat.max_in_flight:
            await self.send(
                error_event(
                    ask_id,
                    "too_many_in_flight",
                    f"{len(self.in_flight)} questions are still "
                    "being answered on this connection; wait for one to be done",
                )
            )
            return
        task = asyncio.create_task(self.answer(ask_id, message["question"], message.get("conversation_id")))
        self.in_flight[ask_id] = task
        task.add_done_callback(lambda _: self.in_flight.pop(ask_id, None))

    @staticmethod
    def check_ask(message: dict[str, Any], raw_id: Any) -> str | None:
        """What is wrong with an ask message, in words; None if it is valid."""
        if not isinstance(raw_id, str) or not 0 < len(raw_id) <= _MAX_ID:
            return f'"id" must be a string of 1 to {_MAX_ID} characters, chosen by the client to match the answer'
        if not isinstance(message.get("question"), str):
            return '"question" is missing or not a string'
        conversation = message.get("conversation_id")
        if conversation is not None and not isinstance(conversation, str):
            return '"conversation_id" must be a string (from an earlier "done"), or left out'
        unknown = set(message) - {"type", "id", "question", "conversation_id"}
        if unknown:
            return f"unknown field(s) {', '.join(sorted(unknown))}; an ask has type, id, question, conversation_id"
        return None

    async def rate(self, ask_id: str | None, message: dict[str, Any]) -> None:
        """A `feedback` message: rate one answer (`message_id` from its `done`), answered by `feedback_saved`
        or an `error`; a public key rates only answers of conversations it started."""
        try:
            rating = Rating.parse(message.get("message_id"), message)
            saved = await rate(self.pool, self.caller, rating)
        except BitbdError as e:
            await self.send(error_event(ask_id, e.code, e.message))
            return
        await self.send({"type": "feedback_saved", "id": ask_id, **saved})

    async def answer(self, ask_id: str, question: str, conversation_id: str | None) -> None:
        """Stream one question's events, tagged with its id. An error ends that question only, except
        an Unauthorized (the key revoked or expired meanwhile), which closes the connection."""
        try:
            # aclosing: a client that leaves mid-answer (this task cancelled) stops the answer at once.
            async with contextlib.aclosing(self.answerer.ask(self.caller, question, conversation_id)) as events:
                async for event in events:
                    await self.send(wire(event, ask_id))
        except BitbdError as e:
            await self.send(error_event(ask_id, e.code, e.message))
            if isinstance(e, Unauthorized):  # a key revoked or expired meanwhile; a used-up quota leaves it open
                self.closing = True
                await self.ws.close(code=close_code(e), message=e.code.encode())
        except asyncio.CancelledError:
            raise
        except Exception as e:
            error = as_error(e, ask_id)
            await self.send(error_event(ask_id, error.code, error.message))


def as_error(e: Exception, ask_id: str | None = None) -> BitbdError:
    """An unexpected exception as what a client may see: a dependency outage by name, anything else as internal."""
    import asyncpg
    from redis.exceptions import RedisError

    if isinstance(e, BitbdError):
        return e
    if isinstance(
        e,
        RedisError
        | OSError
        | asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.InterfaceError
        | asyncpg.AdminShutdownError,
    ):
        dependency = "Redis" if isinstance(e, RedisError) else "PostgreSQL"
        log.warning("dependency unavailable", extra={"dependency": dependency, "error": type(e).__name__})
        return Unavailable(f"{dependency} is unreachable right now; try again shortly")
    log.exception("answering failed", extra={"id": ask_id})
    return InternalError()


def close_code(e: BitbdError) -> int:
    """The close code for a refusal: 4403 if forbidden, 4401 if unauthorized, else 1013 (try again later)."""
    if isinstance(e, Forbidden):
        return CLOSE_FORBIDDEN
    return CLOSE_UNAUTHORIZED if isinstance(e, Unauthorized) else WSCloseCode.TRY_AGAIN_LATER


async def chat(request: web.Request) -> web.StreamResponse:
    """GET /v1/chat: the chat WebSocket. A throttled address or a key over its connection cap gets a plain
    429; any other refused caller gets the upgrade, an `error` saying why, and a close (4401 or 4403)."""
    cfg = request.config_dict[settings_key].chat
    ws = ChatSocket(heartbeat=cfg.heartbeat, max_msg_size=cfg.max_message_bytes, timeout=CLOSE_TIMEOUT)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(reason="this endpoint speaks WebSocket only (GET with Upgrade: websocket)")
    # Authenticated before the upgrade, so that a key over its connection cap gets a plain 429; a refused key
    # still gets its reason as an `error` message after the upgrade (a browser cannot read a refused handshake).
    try:
        caller: Caller | None = await caller_of(request, public=True)
        refused: BitbdError | None = None
    except AuthThrottled:
        raise  # a plain 429 with Retry-After, as the error middleware refuses any throttled address
    except Exception as exc:
        caller, refused = None, as_error(exc)
        if isinstance(refused, Unauthorized) and presents_credentials(request):
            request.config_dict[throttle_key].failed(request)
    slot = None
    client = request.config_dict[throttle_key].client(request)  # the same client address the throttle counts by
    if caller is not None:
        slot = str(caller.key.id) if caller.key is not None else f"admin:{caller.tenant_id}"
        request.config_dict[connections_key].take(
            slot, client, f"{caller.key.prefix}…" if caller.key else "the admin token"
        )
    try:
        await ws.prepare(request)
        upgraded(ws)
        request.config_dict[sockets_key].add(ws)
        if caller is None:
            assert refused is not None
            await ws.send_json(error_event(None, refused.code, refused.message))
            await ws.close(code=close_code(refused), message=refused.code.encode())
            return ws
        await serve_chat(request, ws, caller)
    finally:
        request.config_dict[sockets_key].discard(ws)
        if slot is not None:
            request.config_dict[connections_key].give_back(slot, client)
    return ws


async def serve_chat(request: web.Request, ws: ChatSocket, caller: Caller) -> None:
    """Run an accepted connection's session; a bug closes it with 1011 instead of reaching the HTTP middleware."""
    request.config_dict[answerer_key].warm_up()
    METRICS.ws_connections.inc({})
    try:
        await ChatSession(request, ws, caller).run()
    except Exception:
        # A bug: say so on the socket and close it (1011); never let it reach the HTTP error middleware.
        log.exception("chat connection failed")
        with contextlib.suppress(Exception):
            error = InternalError()
            await ws.send_json(error_event(None, error.code, error.message))
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=error.code.encode())
    finally:
        METRICS.ws_connections.dec({})
