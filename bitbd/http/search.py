"""`POST /v1/search`: a tenant's best chunks for a query (the hit field names are a public contract)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bitbd.http.auth import caller_of
from bitbd.http.body import read_json
from bitbd.keys import answerer_key
from bitbd.timing import phase, server_timing, timed

routes = web.RouteTableDef()


class SearchRequest(BaseModel):
    """The body of POST /v1/search: `query`, `k` hits (1-50, default 10), and a retrieval `mode`."""

    model_config = ConfigDict(extra="forbid")
    query: str
    k: int = Field(10, ge=1, le=50)
    mode: Literal["hybrid", "vector", "keyword"] | None = None


@routes.post("/v1/search")
async def search(request: web.Request) -> web.Response:
    """POST /v1/search: the caller's tenant's best `k` chunks for the query, with their documents' URLs and
    titles, headings and scores; 409 if the tenant has nothing indexed. `Server-Timing` says where the time went
    (auth, embed, vector, keyword, fuse, serialise; milliseconds)."""
    with timed() as phases:
        with phase("auth"):
            caller = await caller_of(request)
        body = await read_json(request, SearchRequest)
        hits = await request.config_dict[answerer_key].search(caller, body.query, body.k, body.mode)
        with phase("serialise"):
            response = web.json_response(
                {
                    "hits": [
                        {
                            "chunk_id": str(h.chunk_id),
                            "document_id": str(h.document_id),
                            "url": h.url,
                            "title": h.title,
                            "heading": h.heading,
                            "text": h.text,
                            "score": h.score,
                        }
                        for h in hits
                    ]
                }
            )
    response.headers["Server-Timing"] = server_timing(phases)
    return response
