"""Visitors' ratings of answers: one per answer, a later one replacing it, only by who may see the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from bitbd.answer.outcome import Caller, public_key_id
from bitbd.errors import InvalidRequest, MessageNotFound
from bitbd.metrics import METRICS

MAX_COMMENT = 2000  # characters; sql/0013 checks the same
RATINGS = ("up", "down")

# An answer of the caller's tenant; under a public key, only of a conversation that key started.
_RATEABLE = """SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id
WHERE m.id = $1 AND m.tenant_id = $2 AND m.role = 'assistant' AND ($3::uuid IS NULL OR c.key_id = $3)"""
_RATE = """INSERT INTO feedback (message_id, tenant_id, rating, comment, key_id) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (message_id) DO UPDATE SET rating = excluded.rating, comment = excluded.comment,
  key_id = excluded.key_id, updated_at = now()
RETURNING created_at, updated_at"""


@dataclass(frozen=True)
class Rating:
    """A checked rating: which answer, up or down, and the visitor's comment (possibly empty)."""

    message_id: int
    rating: str
    comment: str

    @classmethod
    def parse(cls, message_id: Any, body: dict[str, Any]) -> Rating:
        """Check a rating as a client sent it (the chat socket's `feedback` message, or the HTTP body); raises
        InvalidRequest naming what is wrong, MessageNotFound for an id that cannot be a message's."""
        unknown = set(body) - {"type", "id", "message_id", "rating", "comment"}
        if unknown:
            raise InvalidRequest(
                f"unknown field(s) {', '.join(sorted(unknown))}; feedback has message_id, rating and comment"
            )
        if not isinstance(message_id, str) or not message_id.isascii() or not message_id.isdigit():
            raise MessageNotFound(
                f"message_id {str(message_id)[:40]!r} is not a message id; use the message_id of an answer's done"
            )
        rating = body.get("rating")
        if rating not in RATINGS:
            raise InvalidRequest(f'"rating" must be "up" or "down", got {str(rating)[:20]!r}')
        comment = body.get("comment", "")
        if comment is None:
            comment = ""
        if not isinstance(comment, str):
            raise InvalidRequest('"comment" must be a string, or left out')
        if len(comment) > MAX_COMMENT:
            raise InvalidRequest(f'"comment" is {len(comment)} characters; at most {MAX_COMMENT} are kept')
        if len(message_id) > 18:  # past bigint: no message has it
            raise MessageNotFound(f"message {message_id[:40]} not found")
        return cls(int(message_id), str(rating), comment.strip())


async def rate(pool: asyncpg.Pool, caller: Caller, rating: Rating) -> dict[str, Any]:
    """Record (or replace) the rating of one answer the caller may see; returns it as the API shows it. A public
    key may rate only answers of conversations it started; a secret key or the operator, any of the tenant's."""
    only_key = public_key_id(caller)
    key_id = caller.key.id if caller.key is not None else None
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(_RATEABLE, rating.message_id, caller.tenant_id, only_key) is None:
            raise MessageNotFound(
                f"message {rating.message_id} is not an answer this key may rate; rate the message_id of a done "
                "this visitor received"
            )
        row = await conn.fetchrow(_RATE, rating.message_id, caller.tenant_id, rating.rating, rating.comment, key_id)
    METRICS.answer_feedback.inc({"rating": rating.rating})
    return {
        "message_id": str(rating.message_id),
        "rating": rating.rating,
        "comment": rating.comment,
        "replaced": row["updated_at"] != row["created_at"],
    }
