"""Conversations in PostgreSQL: a question and its answer recorded in one statement, within one tenant."""

from __future__ import annotations

import asyncpg
import pytest

from bitbd import tenancy
from bitbd.answer import conversations
from bitbd.errors import ConversationNotFound


async def test_a_turn_is_recorded_in_order_and_only_in_the_callers_tenant(pool: asyncpg.Pool) -> None:
    acme = (await tenancy.create_tenant(pool, "acme-conversations")).id
    other = (await tenancy.create_tenant(pool, "other-conversations")).id
    sources = [{"n": 1, "url": "https://acme.example/returns", "title": "Returns"}]
    conv, answer_id = await conversations.record(
        pool, acme, None, None, "Can I return it?", "Within 30 days [1].", sources, False, 12, False, 0.8
    )
    again, second_id = await conversations.record(
        pool, acme, conv, None, "And sale items?", "They cannot be returned [1].", sources, True, 3, True, None
    )
    assert again == conv and second_id > answer_id
    stored = await conversations.messages(pool, acme, conv)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "Can I return it?"),
        ("assistant", "Within 30 days [1]."),
        ("user", "And sale items?"),
        ("assistant", "They cannot be returned [1]."),
    ]
    assert stored[1]["message_id"] == str(answer_id) and stored[1]["citations"] == sources
    assert stored[3]["cached"] is True and stored[3]["latency_ms"] == 3 and stored[0]["citations"] == []
    flags = await pool.fetch("SELECT refused, support FROM messages WHERE conversation_id = $1 ORDER BY id", conv)
    assert [(r["refused"], r["support"]) for r in flags] == [
        (False, None),
        (False, pytest.approx(0.8)),
        (False, None),
        (True, None),
    ]

    # Another tenant naming this conversation records nothing in it, and is told it does not exist.
    with pytest.raises(ConversationNotFound):
        await conversations.record(pool, other, conv, None, "Hijack?", "No.", [], False, 1)
    assert len(await conversations.messages(pool, acme, conv)) == 4
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE tenant_id = $1", other) == 0
