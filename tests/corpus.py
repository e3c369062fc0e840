"""A small indexed corpus for two tenants, embedded with the real default model and stored with the real store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from bitbd import tenancy
from bitbd.db.chunks import replace_chunks
from bitbd.ingest.chunking import embedding_text
from bitbd.interfaces import Chunk
from bitbd.plugin_api import PluginContext
from bitbd_plugins.embedders.fastembed import FastEmbedder

ACME = {
    "https://acme.example/shipping": (
        "Shipping",
        [
            "We ship every order within 2 business days. Standard delivery takes 3 to 5 days inside the EU. "
            "Express delivery arrives the next working day for a fee of 9 euros.",
        ],
    ),
    "https://acme.example/returns": (
        "Returns and refunds",
        [
            "You can return any item within 30 days of delivery for a full refund. Items must be unused and in their "
            "original packaging. Refunds are paid to the original payment method within 5 days.",
        ],
    ),
    "https://acme.example/warranty": (
        "Warranty",
        [
            "All Zentrix blenders come with a 2-year warranty covering motor defects. The warranty does not cover "
            "damage from misuse or from dropped jars.",
        ],
    ),
    "https://acme.example/contact": (
        "Contact us",
        [
            "Our support team answers email at help@acme.example from Monday to Friday, 9:00 to 17:00. "
            "Phone support is available on weekdays at +49 30 1234567.",
        ],
    ),
}
GLOBEX = {
    "https://globex.example/launch": (
        "Globex launch plan",
        [
            "The Globex quantum toaster launches on March 3 at a price of 499 dollars. This plan is confidential.",
        ],
    ),
}


@pytest.fixture(scope="session")
def embedder() -> Iterator[FastEmbedder]:
    yield FastEmbedder(PluginContext("fastembed"))


@dataclass(frozen=True)
class Indexed:
    tenant: tenancy.Tenant
    secret: str  # an sk_ key of the tenant


async def index(
    pool: asyncpg.Pool, embedder: FastEmbedder, name: str, docs: dict[str, tuple[str, list[str]]]
) -> Indexed:
    """A tenant whose documents are `docs` (url → title, chunk texts), embedded for real, plus a secret key."""
    tenant = await tenancy.create_tenant(pool, name)
    for url, (title, texts) in docs.items():
        doc_id = await pool.fetchval(
            "INSERT INTO documents (tenant_id, url, title) VALUES ($1, $2, $3) RETURNING id", tenant.id, url, title
        )
        chunks = [Chunk(i, text, hashlib.sha256(text.encode()).hexdigest(), [title]) for i, text in enumerate(texts)]
        vectors = await embedder.embed([embedding_text(title, c) for c in chunks])
        ready = [
            Chunk(c.position, c.text, c.content_hash, c.heading_path, v) for c, v in zip(chunks, vectors, strict=True)
        ]
        async with pool.acquire() as conn:
            await replace_chunks(conn, tenant.id, doc_id, ready)
    _, secret = await tenancy.create_key(pool, name, tenancy.KeySpec("secret"))
    return Indexed(tenant, secret)


@pytest.fixture
async def acme(pool: asyncpg.Pool, embedder: FastEmbedder) -> Indexed:
    return await index(pool, embedder, "acme", ACME)


@pytest.fixture
async def globex(pool: asyncpg.Pool, embedder: FastEmbedder) -> Indexed:
    return await index(pool, embedder, "globex", GLOBEX)
