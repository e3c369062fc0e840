"""`POST /v1/messages/{message}/feedback`: a rating of one answer over HTTP (the widget rates over its chat socket)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bitbd.answer.feedback import MAX_COMMENT, Rating, rate
from bitbd.http.auth import caller_of
from bitbd.http.body import read_json
from bitbd.keys import pool_key

routes = web.RouteTableDef()


class FeedbackRequest(BaseModel):
    """The body of POST /v1/messages/{message}/feedback."""

    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"]
    comment: str = Field("", max_length=MAX_COMMENT)


@routes.post("/v1/messages/{message}/feedback")
async def feedback(request: web.Request) -> web.Response:
    """POST /v1/messages/{message}/feedback `{"rating": "up" | "down", "comment": "…"}`: record the rating of an
    answer (a later one replaces it). A secret key rates any answer of its tenant; a public key (`?key=`, from
    an allowed origin) only those of conversations it started; 404 for any other message."""
    caller = await caller_of(request, public=True)
    body = await read_json(request, FeedbackRequest)
    saved = await rate(
        request.config_dict[pool_key], caller, Rating.parse(request.match_info["message"], body.model_dump())
    )
    return web.json_response(saved)
