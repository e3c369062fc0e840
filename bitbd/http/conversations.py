"""A visitor's conversation over HTTP: read it back (`GET /v1/conversations/{conversation}`), and rate one of
its answers (`POST /v1/messages/{message}/feedback`; the widget rates over its chat socket)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bitbd.answer import conversations
from bitbd.answer.feedback import MAX_COMMENT, Rating, rate
from bitbd.answer.outcome import public_key_id
from bitbd.http.auth import caller_of
from bitbd.http.body import read_json
from bitbd.keys import pool_key

routes = web.RouteTableDef()


class FeedbackRequest(BaseModel):
    """The body of POST /v1/messages/{message}/feedback."""

    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"]
    comment: str = Field("", max_length=MAX_COMMENT)


@routes.get("/v1/conversations/{conversation}")
async def conversation(request: web.Request) -> web.Response:
    """GET /v1/conversations/{conversation}: its messages, oldest first, with the answers' citations and ratings.
    A secret key reads any of its tenant's; a public key (`?key=`, from an allowed origin) only one it started,
    and the answer carries CORS headers for that origin, so the widget can restore the conversation on screen."""
    caller = await caller_of(request, public=True)
    conversation_id = conversations.parse_id(request.match_info["conversation"])
    only_key = public_key_id(caller)
    found = await conversations.messages(request.config_dict[pool_key], caller.tenant_id, conversation_id, only_key)
    response = web.json_response({"conversation_id": str(conversation_id), "messages": found})
    if only_key is not None:  # the origin was checked against the key's
        response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "")
        response.headers["Vary"] = "Origin"
    return response


@routes.post("/v1/messages/{message}/feedback")
async def feedback(request: web.Request) -> web.Response:
    """POST /v1/messages/{message}/feedback `{"rating": "up" | "down", "comment": "…"}`: record the rating of an
    answer (a later one replaces it). A secret key rates any answer of its tenant; a public key (`?key=`, from
    an allowed origin) only those of conversations it started; 404 for any other message."""
    caller = await caller_of(request, public=True)
    body = await read_json(request, FeedbackRequest)
    rating = Rating.parse(request.match_info["message"], body.model_dump())
    return web.json_response(await rate(request.config_dict[pool_key], caller, rating))
