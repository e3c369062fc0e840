"""Content gaps: what a tenant's visitors asked that bitbd could not answer well (refused, rated down, or answered
on weak support), grouped into topics by the similarity of the questions' embeddings, each with the pages that
came closest. No language model: the questions are embedded by the tenant's own embedder."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np

from bitbd.answer.retrieval import Retriever

# Answers worth a look, newest first: refused, rated down, or resting on support below `low`.
_PROBLEMS = """SELECT a.id, a.created_at, a.refused, a.support, f.rating, q.content AS question
FROM messages a
LEFT JOIN feedback f ON f.message_id = a.id
CROSS JOIN LATERAL (
  SELECT content FROM messages u
  WHERE u.conversation_id = a.conversation_id AND u.role = 'user' AND u.id < a.id ORDER BY u.id DESC LIMIT 1
) q
WHERE a.tenant_id = $1 AND a.role = 'assistant' AND a.created_at > now() - make_interval(days => $2)
  AND (a.refused OR f.rating = 'down' OR a.support < $3)
ORDER BY a.id DESC LIMIT $4"""
# Cosine similarity of a question to a topic's direction for it to join that topic. Measured with the default
# embedder (all-MiniLM-L6-v2) on shop questions: rephrasings of one question 0.50-0.75 to each other, questions
# of different topics 0.01-0.30.
SAME_TOPIC = 0.5
MAX_QUESTIONS = 500  # the newest problem questions grouped per report


@dataclass
class Topic:
    """Questions of one theme that went unanswered: how many, examples, when, why, and the pages that came
    closest (what the site has that is nearest to what was asked)."""

    total: np.ndarray | None = None  # the sum of the question vectors
    questions: list[str] = field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    reasons: dict[str, int] = field(default_factory=lambda: {"refused": 0, "rated_down": 0, "low_support": 0})
    closest: list[dict[str, Any]] = field(default_factory=list)

    def centroid(self) -> np.ndarray:
        """The direction of the topic's questions: their vectors' normalised sum."""
        assert self.total is not None
        return np.asarray(self.total / (np.linalg.norm(self.total) or 1.0), dtype=np.float32)

    def to_json(self) -> dict[str, Any]:
        """The topic as the API shows it."""
        examples = list(dict.fromkeys(self.questions))[:3]
        return {
            "count": len(self.questions),
            "examples": examples,
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
            "reasons": self.reasons,
            "closest_pages": self.closest,
        }


async def content_gaps(
    pool: asyncpg.Pool, retriever: Retriever, tenant_id: uuid.UUID, days: int, low_support: float
) -> list[dict[str, Any]]:
    """The tenant's unanswered topics of the last `days` days, the largest first."""
    rows = await pool.fetch(_PROBLEMS, tenant_id, days, low_support, MAX_QUESTIONS)
    vectors = await asyncio.gather(*(retriever.queries.embed(r["question"]) for r in rows))
    topics: list[Topic] = []
    for row, vector in zip(rows, vectors, strict=True):
        v = np.asarray(vector, dtype=np.float32)
        topic = max(topics, key=lambda t: float(t.centroid() @ v), default=None)
        if topic is None or float(topic.centroid() @ v) < SAME_TOPIC:
            topic = Topic()
            topics.append(topic)
        topic.total = v.copy() if topic.total is None else topic.total + v
        topic.questions.append(row["question"])
        seen = row["created_at"]
        topic.first_seen = min(topic.first_seen or seen, seen)
        topic.last_seen = max(topic.last_seen or seen, seen)
        topic.reasons["refused"] += row["refused"]
        topic.reasons["rated_down"] += row["rating"] == "down"
        topic.reasons["low_support"] += row["support"] is not None and row["support"] < low_support
    topics.sort(key=lambda t: (-len(t.questions), -(t.last_seen.timestamp() if t.last_seen else 0)))
    for topic in topics:
        hits = await retriever.store.search(tenant_id, topic.centroid(), 5, retriever.settings.ef_search)
        pages: dict[str, dict[str, Any]] = {}
        for hit in hits:
            pages.setdefault(hit.url, {"url": hit.url, "title": hit.title, "similarity": hit.similarity})
        topic.closest = list(pages.values())[:3]
    return [t.to_json() for t in topics]
