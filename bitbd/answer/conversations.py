"""Conversations and their messages in PostgreSQL, always within one tenant."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from bitbd.errors import ConversationNotFound
from bitbd.interfaces import Turn

# Under a public key, a conversation is only that key's: a visitor cannot continue (or read) another's.
_OWNED = "SELECT 1 FROM conversations WHERE tenant_id = $1 AND id = $2 AND ($3::uuid IS NULL OR key_id = $3)"
_RECENT = """SELECT role, content FROM (
  SELECT id, role, content FROM messages WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY id DESC LIMIT $3
) recent ORDER BY id"""
# A question and its answer in one statement (one round trip): a new conversation when $2 is NULL, else the
# tenant's conversation $2 touched; the question first (the lower id), then the answer.
_RECORD = """WITH new AS (
  INSERT INTO conversations (tenant_id, key_id) SELECT $1, $3 WHERE $2::uuid IS NULL RETURNING id
), touched AS (
  UPDATE conversations SET updated_at = now() WHERE $2::uuid IS NOT NULL AND tenant_id = $1 AND id = $2 RETURNING id
), target AS (SELECT id FROM new UNION ALL SELECT id FROM touched)
INSERT INTO messages (tenant_id, conversation_id, role, content, citations, cached, latency_ms, refused, support)
SELECT $1, target.id, m.role, m.content, m.citations, m.cached, m.latency_ms, m.refused, m.support
FROM target, (VALUES (1, 'user', $4::text, '[]'::jsonb, false, NULL::integer, false, NULL::real),
                     (2, 'assistant', $5::text, $6::jsonb, $7::boolean, $8::integer, $9::boolean, $10::real))
  AS m (ord, role, content, citations, cached, latency_ms, refused, support)
ORDER BY m.ord
RETURNING conversation_id, id"""
_MESSAGES = """SELECT m.id, m.role, m.content, m.citations, m.cached, m.latency_ms, m.created_at, f.rating, f.comment
FROM messages m LEFT JOIN feedback f ON f.message_id = m.id
WHERE m.tenant_id = $1 AND m.conversation_id = $2 ORDER BY m.id"""
# Conversations not touched for the retention period go, with their messages and ratings (cascade).
_EXPIRE = "DELETE FROM conversations WHERE updated_at < now() - make_interval(days => $1)"


def parse_id(value: str) -> uuid.UUID:
    """A client's `conversation_id` as a UUID; raises ConversationNotFound for text that is not one."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ConversationNotFound(
            f"conversation_id {value[:80]!r} is not a conversation id; leave it out to start a new conversation"
        ) from None


async def recent_turns(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, conversation_id: uuid.UUID, turns: int, only_key: uuid.UUID | None = None
) -> list[Turn]:
    """The conversation's last ``turns`` questions and answers, oldest first; refuses another tenant's, and with
    ``only_key`` (a public key's id) a conversation that key did not start."""
    async with pool.acquire() as conn:
        if await conn.fetchval(_OWNED, tenant_id, conversation_id, only_key) is None:
            raise ConversationNotFound(
                f"conversation {conversation_id} not found; leave conversation_id out to start a new one"
            )
        rows = await conn.fetch(_RECENT, tenant_id, conversation_id, turns * 2)
    return [Turn(r["role"], r["content"]) for r in rows]


async def record(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID | None,
    key_id: uuid.UUID | None,
    question: str,
    answer: str,
    sources: list[dict[str, Any]],
    cached: bool,
    latency_ms: int,
    refused: bool = False,
    support: float | None = None,
) -> tuple[uuid.UUID, int]:
    """Store a question and its answer (in a new conversation if none is given), with whether bitbd refused and
    the support it found; returns the conversation's id and the answer's message id (what a visitor rates).
    Raises ConversationNotFound if the given conversation has gone (expired, or deleted) since it was read."""
    rows = await pool.fetch(
        _RECORD,
        tenant_id,
        conversation_id,
        key_id,
        question,
        answer,
        json.dumps(sources),
        cached,
        latency_ms,
        refused,
        support,
    )
    if not rows:
        raise ConversationNotFound(f"conversation {conversation_id} not found; leave conversation_id out to start anew")
    return rows[-1]["conversation_id"], int(rows[-1]["id"])


async def messages(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, conversation_id: uuid.UUID, only_key: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """Every message of the tenant's conversation, oldest first, as JSON-ready dicts (citations decoded, times in
    ISO 8601, an answer's id and its rating); raises ConversationNotFound if the tenant has no such conversation,
    or with ``only_key`` (a public key's id) if that key did not start it."""
    async with pool.acquire() as conn:
        if await conn.fetchval(_OWNED, tenant_id, conversation_id, only_key) is None:
            raise ConversationNotFound(f"conversation {conversation_id} not found")
        rows = await conn.fetch(_MESSAGES, tenant_id, conversation_id)
    return [
        {
            "message_id": str(r["id"]),
            "role": r["role"],
            "content": r["content"],
            "citations": json.loads(r["citations"]),
            "cached": r["cached"],
            "latency_ms": r["latency_ms"],
            "created_at": r["created_at"].isoformat(),
            **({"rating": r["rating"], "comment": r["comment"]} if r["role"] == "assistant" else {}),
        }
        for r in rows
    ]


async def expire(pool: asyncpg.Pool, days: int) -> int:
    """Delete the conversations (with their messages and ratings) of every tenant not touched for `days` days;
    returns how many went."""
    status: str = await pool.execute(_EXPIRE, days)
    return int(status.split()[-1])
